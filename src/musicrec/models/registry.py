"""The explicit model registry: name -> class. Add new models here."""

from __future__ import annotations

import os

from musicrec import MusicrecError, fsio
from musicrec.models.als import ALS
from musicrec.models.base import Recommender, read_config
from musicrec.models.bpr import BPR
from musicrec.models.caser import Caser
from musicrec.models.ease import EASE
from musicrec.models.gru4rec import GRU4Rec
from musicrec.models.itemknn import ItemKNN
from musicrec.models.most_popular import MostPopular
from musicrec.models.multvae import MultVAE
from musicrec.models.nextitnet import NextItNet
from musicrec.models.recently_played import RecentlyPlayed
from musicrec.models.sasrec import SASRec
from musicrec.models.sknn import SKNN
from musicrec.models.sr import SequentialRules
from musicrec.models.two_tower import TwoTower

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (MostPopular, RecentlyPlayed, ItemKNN, EASE, ALS, BPR, SKNN, SequentialRules,
                SASRec, NextItNet, Caser, GRU4Rec, MultVAE, TwoTower)
}


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
