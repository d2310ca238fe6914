"""Fit a registry model on a split's training data."""

from __future__ import annotations

import time

import polars as pl

from musicrec import MusicrecError
from musicrec.features.interactions import Interactions
from musicrec.models.base import Recommender
from musicrec.models.registry import create
from musicrec.preprocess.splitset import Split


def training_events(split: Split, include_valid: bool) -> pl.DataFrame:
    """Training rows; with ``include_valid`` the validation rows too (final refit after tuning)."""
    if include_valid and split.valid is not None and split.valid.height:
        return pl.concat([split.train, split.valid])
    return split.train


def fit_model(name: str, split: Split, params: dict | None = None, include_valid: bool = False) -> tuple[Recommender, float]:
    """Create ``name`` with ``params``, fit it on the split; returns (model, fit seconds)."""
    events = training_events(split, include_valid)
    if events.height == 0:
        raise MusicrecError("the split has no training rows")
    train = Interactions.from_frame(events)
    model = create(name, **(params or {}))
    start = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - start


def parse_param(text: str) -> tuple[str, object]:
    """``"factors=64"`` -> ("factors", 64); values are read as JSON when they parse, else kept as text."""
    import json

    if "=" not in text:
        raise MusicrecError(f"--param expects name=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except ValueError:
        value = {"True": True, "False": False, "None": None}.get(raw, raw)
    return key.strip().replace("-", "_"), value
