"""Dummy models and event builders for the evaluation tests (imported by conftest and tests)."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from musicrec.features.interactions import Interactions
from musicrec.models.base import Recommender

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


class FixedScores(Recommender):
    """Scores every history the same way: ``scores[i]`` for item *store id* ``order`` position i.

    ``order`` lists store item ids best first; unlisted items score lowest. Records what it was asked.
    """

    name = "fixed"

    def __init__(self, order=()):
        self.order = order

    def _fit(self, train):
        self.scores_ = np.zeros(train.n_items, dtype=np.float32)
        idx = train.items.index(np.asarray(self.order, dtype=np.int64))
        self.scores_[idx] = np.arange(len(idx), 0, -1, dtype=np.float32)
        self.calls_ = []

    def score(self, histories):
        self.calls_.append(histories)
        return np.tile(self.scores_, (len(histories), 1))


def events(rows):
    """Split events from (user_id, item_id, minutes after T0, session_id) tuples."""
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "weight": [1.0] * len(rows),
         "timestamp": [T0 + timedelta(minutes=r[2]) for r in rows], "session_id": [r[3] for r in rows]},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "weight": pl.Float64,
                "timestamp": pl.Datetime("us", "UTC"), "session_id": pl.Int64},
    )


def fitted(model, split):
    return model.fit(Interactions.from_frame(split.train))
