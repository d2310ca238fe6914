"""The explicit model registry: name -> class. Add new models here."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, MutableMapping

from musicrec import MusicrecError, fsio
from musicrec.models.base import Recommender, read_config

# name -> "module:Class", imported on first use: the deep models' modules import torch, which
# classic models, `evaluate` and `serve` on them never need
_WHERE = {
    "most-popular": "most_popular:MostPopular",
    "recently-played": "recently_played:RecentlyPlayed",
    "itemknn": "itemknn:ItemKNN",
    "ease": "ease:EASE",
    "als": "als:ALS",
    "bpr": "bpr:BPR",
    "sknn": "sknn:SKNN",
    "sr": "sr:SequentialRules",
    "sasrec": "sasrec:SASRec",
    "nextitnet": "nextitnet:NextItNet",
    "caser": "caser:Caser",
    "gru4rec": "gru4rec:GRU4Rec",
    "multvae": "multvae:MultVAE",
    "two-tower": "two_tower:TwoTower",
    "ranker": "ranker:Ranker",
}


class _Registry(MutableMapping):
    """Name -> class; a built-in model's module is imported when the model is first asked for.
    ``MODELS[cls.name] = cls`` registers a model of one's own (a class, imported already)."""

    def __init__(self, where: dict[str, str]):
        self._where: dict[str, str | type[Recommender]] = dict(where)

    def __getitem__(self, name: str) -> type[Recommender]:
        where = self._where[name]
        if not isinstance(where, str):
            return where
        module, cls = where.split(":")
        found = getattr(importlib.import_module(f"musicrec.models.{module}"), cls)
        if found.name != name:
            raise RuntimeError(f"registry: {module}.{cls}.name is {found.name!r}, registered as {name!r}")
        return found

    def __setitem__(self, name: str, cls: type[Recommender]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Recommender)) or cls.name != name:
            raise MusicrecError(f"register a Recommender subclass under its own name, got {name!r} -> {cls!r}")
        self._where[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._where[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


MODELS: MutableMapping[str, type[Recommender]] = _Registry(_WHERE)


def model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise MusicrecError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def create(name: str, **params) -> Recommender:
    """A new unfitted model; unknown parameters give a clear error."""
    cls = model_class(name)
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise MusicrecError(f"{name}: unknown parameter {', '.join(map(repr, unknown))}; "
                            f"valid: {', '.join(valid) or 'none'}")
    return cls(**params)


def load_model(path: str) -> Recommender:
    """Load a model directory written by ``Recommender.save`` (no pickles)."""
    cfg = read_config(path)
    if cfg["model"] not in MODELS:
        raise MusicrecError(f"{fsio.join(os.fspath(path), 'config.json')}: unknown model {cfg['model']!r}; "
                            f"choose one of: {', '.join(MODELS)}")
    return MODELS[cfg["model"]].load_from(path, cfg.get("params", {}))
