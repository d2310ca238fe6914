"""Recently played: recommend again what this listener or session played most recently.

Music is re-listened far more than most catalogues are re-bought, so "play it again" is a
strong baseline for next-item prediction within sessions. It recommends *seen* items by
design: session evaluation does not exclude them; under user protocols (seen items
excluded) it degenerates to its popularity fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicrec.features.interactions import Histories, Interactions
from musicrec.models.base import Recommender


@dataclass(frozen=True)
class RecentlyPlayedConfig:
    # weight of a play k steps before the end of the history is decay**k; 1.0 = plain counts
    decay: float = 0.8


def popularity_fallback(train: Interactions) -> np.ndarray:
    """Scores in [-1, 0) by distinct listeners, shape (I,): below any positive score.

    Items a model cannot score get these, so the ranking stays total and falls back to
    popularity instead of to item-index order.
    """
    pop = np.diff(train.matrix.tocsc().indptr).astype(np.float64)
    return (pop / (pop.max(initial=0.0) + 1.0) - 1.0).astype(np.float32)


class RecentlyPlayed(Recommender):
    """Score of an item = sum over its plays in the history of ``decay ** steps_from_end``.

    The last play counts 1, the one before ``decay``, and so on. Items never played score
    below every played item, ordered by popularity.

    Parameters
    ----------
    decay : float in (0, 1]
        Per-step decay of older plays.
    """

    name = "recently-played"
    sequential = True

    config = RecentlyPlayedConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data)."""
        return {"decay": trial.suggest_float("decay", 0.3, 1.0)}

    def _fit(self, train: Interactions) -> None:
        self._validate()
        self.fallback_ = popularity_fallback(train)

    def score(self, histories: Histories) -> np.ndarray:
        """Recency-decayed play counts, shape (B, I); unplayed items get the popularity fallback."""
        self._check_fitted()
        seqs = histories.sequences
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        rows = np.repeat(np.arange(len(seqs)), lengths)
        cols = np.concatenate(seqs).astype(np.int64) if len(seqs) else np.zeros(0, np.int64)
        # steps from the end of each sequence: L-1, ..., 1, 0
        ends = np.repeat(np.cumsum(lengths), lengths)
        steps = ends - 1 - np.arange(len(cols))
        vals = np.power(float(self.decay), steps.astype(np.float64))
        recency = np.zeros((len(seqs), len(self.fallback_)))
        np.add.at(recency, (rows, cols), vals)      # an item's plays summed oldest first
        return np.where(recency > 0, recency, self.fallback_).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"fallback": self.fallback_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; one score per item of interactions.npz
        self.fallback_ = arrays.array("fallback", "f", shape=(self.train_.n_items,))

    def _validate(self) -> None:
        """Hyperparameter check, run by ``_fit`` and on a loaded folder's parameters."""
        self._check_number("decay", low=0, high=1, low_open=True)
