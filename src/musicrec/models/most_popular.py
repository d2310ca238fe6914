"""Most popular items: the same ranking for everyone, the baseline every model must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicrec.features.interactions import Histories, Interactions
from musicrec.models.base import Recommender

BY = ("users", "plays")


@dataclass(frozen=True)
class MostPopularConfig:
    # "users": distinct training listeners per item (robust to one fan's 10,000 plays);
    # "plays": summed play counts
    by: str = "users"


class MostPopular(Recommender):
    """Scores every item by its training popularity, ignoring the history.

    Parameters
    ----------
    by : {"users", "plays"}
        Count distinct listeners per item, or total plays.
    """

    name = "most-popular"

    config = MostPopularConfig

    def _fit(self, train: Interactions) -> None:
        self._validate()
        m = train.matrix.tocsc()
        if self.by == "users":
            pop = np.diff(m.indptr).astype(np.float32)
        else:
            pop = np.ravel(m.sum(axis=0)).astype(np.float32)
        self.popularity_ = pop

    def score(self, histories: Histories) -> np.ndarray:
        """Popularity of every item repeated for each history, shape (B, I)."""
        self._check_fitted()
        return np.broadcast_to(self.popularity_, (len(histories), len(self.popularity_))).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; one score per item of interactions.npz
        self.popularity_ = arrays.array("popularity", "if", shape=(self.train_.n_items,))

    def _validate(self) -> None:
        """Hyperparameter check, run by ``_fit`` and on a loaded folder's parameters."""
        self._check_choice("by", BY)
