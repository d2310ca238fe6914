"""EASE: Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

A dense item x item weight matrix B with a zero diagonal, learned in closed form:
``P = (X^T X + l2 I)^-1``, ``B = I - P diag(1 / diag(P))``. The inverse costs O(I^3) time
and I^2 float32 memory (17,632 HetRec artists: 1.2 GB), so ``min_item_users`` can restrict
B to items played by at least that many training users; the other items rank last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.features.weighting import SCHEMES, weight
from musicrec.models.base import Recommender
from musicrec.models.recently_played import popularity_fallback


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 100.0            # ridge penalty lambda on B; larger = smoother, more popular
    weighting: str = "binary"    # play-count weighting of X (features.weighting.SCHEMES), as in the paper
    min_item_users: int = 1      # items with fewer training users are left out of B


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from the Gram matrix ``X^T X`` (A, A), float32; overwrites ``gram``.

    Inverts with a Cholesky factorisation (the regularised Gram matrix is symmetric
    positive definite), half the work of a general inverse.
    """
    p = gram
    p[np.diag_indices_from(p)] += l2
    c, info = scipy.linalg.lapack.spotrf(p, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise MusicrecError(f"ease: Cholesky factorisation failed (info={info}); increase l2")
    p, info = scipy.linalg.lapack.spotri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise MusicrecError(f"ease: matrix inversion failed (info={info}); increase l2")
    # spotri fills the upper triangle only (the lower one is zero after clean=1)
    p += p.T
    p[np.diag_indices_from(p)] /= 2.0
    p /= -np.diag(p).copy()[None, :]  # B_ij = -P_ij / P_jj
    p[np.diag_indices_from(p)] = 0.0
    return p


class EASE(Recommender):
    """Scores ``s = x @ B`` for a weighted history ``x``; B (A, A) over the active items.

    Parameters
    ----------
    l2 : float > 0
        Ridge penalty.
    weighting : str
        Play-count weighting of the training matrix and of the histories.
    min_item_users : int >= 1
        Items played by fewer training users are not modelled and score below all others.
    """

    name = "ease"

    def __init__(self, l2: float = EASEConfig.l2, weighting: str = EASEConfig.weighting,
                 min_item_users: int = EASEConfig.min_item_users):
        self.l2 = l2
        self.weighting = weighting
        self.min_item_users = min_item_users

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data)."""
        return {"l2": trial.suggest_float("l2", 10.0, 5000.0, log=True)}

    def _fit(self, train: Interactions) -> None:
        self._check_number("l2", low=0, low_open=True)
        self._check_choice("weighting", SCHEMES)
        self._check_int("min_item_users", 1)
        x = weight(train.matrix, self.weighting).tocsc()
        active = np.flatnonzero(np.diff(x.indptr) >= self.min_item_users)
        if len(active) == 0:
            raise MusicrecError(f"{self.name}: no item has >= {self.min_item_users} training users")
        xa = x[:, active]
        gram = np.asarray((xa.T @ xa).todense(), dtype=np.float32)
        self.active_ = active.astype(np.int64)
        self.weights_ = ease_weights(gram, float(self.l2))
        self.fallback_ = popularity_fallback(train)

    def score(self, histories: Histories) -> np.ndarray:
        """Scores (B, I); items outside the active set rank below every active item."""
        self._check_fitted()
        x = weight(histories.matrix, self.weighting, reference=self.train_.matrix).tocsc()[:, self.active_]
        active_scores = np.asarray(x.tocsr() @ self.weights_, dtype=np.float32)
        n_items = len(self.fallback_)
        if len(self.active_) == n_items:
            return active_scores
        # below the row's lowest active score, ordered by popularity (fallback is in [-1, 0))
        floor = active_scores.min(axis=1, keepdims=True)
        out = np.broadcast_to(floor + self.fallback_[None, :], (active_scores.shape[0], n_items)).astype(np.float32)
        out[:, self.active_] = active_scores
        return out

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Column ``j`` of B for each item: weight of every item in predicting ``j``, (B, I)."""
        items = np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self.active_, items)
        pos = np.clip(pos, 0, len(self.active_) - 1)
        found = self.active_[pos] == items
        out = np.zeros((len(items), len(self.fallback_)), dtype=np.float32)
        out[np.ix_(found, self.active_)] = self.weights_[:, pos[found]].T
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {"active": self.active_, "weights": self.weights_, "fallback": self.fallback_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.active_ = arrays["active"]
        self.weights_ = arrays["weights"]
        self.fallback_ = arrays["fallback"]
