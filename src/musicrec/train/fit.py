"""Fit a registry model on a split's training data."""

from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np
import polars as pl

from musicrec import MusicrecError
from musicrec.features.interactions import Interactions
from musicrec.features.vocab import IdMap
from musicrec.models.base import Recommender
from musicrec.models.registry import create
from musicrec.preprocess.splitset import Split


def training_events(split: Split, include_valid: bool) -> pl.DataFrame:
    """Training rows; with ``include_valid`` the validation rows too (final refit after tuning)."""
    if include_valid and split.valid is not None and split.valid.height:
        return pl.concat([split.train, split.valid])
    return split.train


def catalogue(split: Split, events: pl.DataFrame) -> IdMap:
    """Item vocabulary of a model fitted on ``events``: their items, plus every cold item of an
    item-coldstart split (no plays; a content-aware model places them from their tags)."""
    ids = events["item_id"].to_numpy()
    if split.meta.get("candidates") == "cold":
        cold = split.meta.get("cold_items", {})
        ids = np.concatenate([ids, *(np.asarray(cold.get(p, []), dtype=np.int64) for p in ("test", "valid"))])
    return IdMap.fit(ids)


def item_content(split: Split, items: IdMap):
    """TF-IDF tag vectors of ``items`` from the split's item tags: csr (I, T) float32 with unit
    rows (zero rows for untagged items), or None when the split has no usable tags."""
    from musicrec.features.tags import item_tag_vectors

    found = item_tag_vectors(split.item_tags, items.ids)
    return None if found is None else found[1].matrix


def default_metric(split: Split) -> str:
    """The metric models are tuned and early-stopped on: MRR@20 for sessions, NDCG@10 for users."""
    return "mrr@20" if split.evaluation == "session" else "ndcg@10"


def validation_fn(split: Split, metric: str) -> Callable[[Recommender], float]:
    """``fn(model) -> float``: ``metric`` on the split's validation part (full ranking)."""
    from musicrec.evaluate.protocols import evaluate

    k = int(metric.split("@")[1])
    return lambda model: float(evaluate(model, split, ks=(k,), on="valid").metrics[metric])


def fit_model(name: str, split: Split, params: dict | None = None, include_valid: bool = False,
              metric: str | None = None, on_epoch=None, checkpoint_dir: str | None = None,
              resume: bool = False, progress: bool = False) -> tuple[Recommender, float]:
    """Create ``name`` with ``params``, fit it on the split; returns (model, fit seconds).

    Every model gets the same ``fit`` call: deep models trained on train only early-stop on
    ``metric`` over the validation part (with ``include_valid`` they train for exactly
    ``epochs``: set it to the best epoch found by tuning); models with ``uses_content`` get the
    items' tag vectors (:func:`item_content`).
    """
    events = training_events(split, include_valid)
    if events.height == 0:
        raise MusicrecError("the split has no training rows")
    train = Interactions.from_frame(events, items=catalogue(split, events))
    model = create(name, **(params or {}))
    start = time.perf_counter()
    content = item_content(split, train.items) if model.uses_content else None
    has_valid = split.valid is not None and split.valid.height > 0
    valid = validation_fn(split, metric or default_metric(split)) if has_valid and not include_valid else None
    model.fit(train, valid=valid, content=content, checkpoint_dir=checkpoint_dir, resume=resume,
              progress=progress, on_epoch=on_epoch)
    return model, time.perf_counter() - start


def parse_param(text: str) -> tuple[str, object]:
    """``"factors=64"`` -> ("factors", 64); values are read as JSON when they parse, else kept as text."""
    if "=" not in text:
        raise MusicrecError(f"--param expects name=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except ValueError:
        value = {"True": True, "False": False, "None": None}.get(raw, raw)
    return key.strip().replace("-", "_"), value


def read_tuned_params(path: str) -> tuple[str | None, dict]:
    """(model name, params) from a ``best.json`` written by ``musicrec tune --out`` (a local path
    or fsspec URL)."""
    from musicrec import fsio

    try:
        with fsio.open_file(path, "r", encoding="utf-8") as fh:
            cfg = json.load(fh)
    except FileNotFoundError:
        raise MusicrecError(f"{path}: no such config file") from None
    except ValueError as exc:
        raise MusicrecError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise MusicrecError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("params", {}), dict):
        raise MusicrecError(f"{path}: expected {{\"model\": ..., \"params\": {{...}}}}")
    return cfg.get("model"), cfg.get("params", {})
