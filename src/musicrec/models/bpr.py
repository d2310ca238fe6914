"""Bayesian Personalised Ranking (Rendle et al., UAI 2009) matrix factorisation.

Training is ``implicit``'s CPU BPR, which learns from which items a user played (not how
often) and appends an item-bias column to the factors; we keep factors and biases apart.
A new listener's vector is the mean of their items' factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from musicrec.features.interactions import Histories, Interactions
from musicrec.models.als import cosine_rows
from musicrec.models.base import Recommender


@dataclass(frozen=True)
class BPRConfig:
    factors: int = 64               # latent dimensions D (implicit adds one bias column)
    learning_rate: float = 0.01     # SGD step size
    regularization: float = 0.01    # L2 penalty on the factors
    iterations: int = 100           # epochs over the positive pairs
    random_state: int = 0           # seed of initialisation and sampling (one thread: reproducible)


def fold_in(played: sp.csr_matrix, item_factors: np.ndarray) -> np.ndarray:
    """User vectors for new rows of ``played`` (B, I): mean factors of the played items (B, D).

    A BPR user vector points towards the items it ranks first, and the mean of a
    listener's items does the same. On a HetRec holdout it ranks about as well as the
    trained vectors of the same users, is deterministic and does not depend on which other
    rows share the batch (a few SGD steps would). Rows with no plays get zeros.
    """
    p = sp.csr_matrix(played, dtype=np.float32, copy=True).sign()
    counts = np.maximum(np.diff(p.indptr), 1).astype(np.float32)
    return np.asarray(p @ item_factors, dtype=np.float32) / counts[:, None]


class BPR(Recommender):
    """Score ``x_u . y_i + b_i``; x_u from training for known users, folded in for new ones.

    Parameters
    ----------
    factors, learning_rate, regularization, iterations, random_state
        See ``BPRConfig``.
    """

    name = "bpr"

    config = BPRConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data)."""
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
            "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
            "iterations": trial.suggest_categorical("iterations", [50, 100, 200]),
        }

    def _validate(self) -> None:
        self._check_int("factors", 1)
        self._check_int("iterations", 1)
        self._check_number("learning_rate", low=0, low_open=True)
        self._check_number("regularization", low=0)

    def _fit(self, train: Interactions) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self._validate()
        # one thread: implicit's parallel SGD is lock-free, so results would vary run to run
        bpr = BayesianPersonalizedRanking(factors=int(self.factors), learning_rate=float(self.learning_rate),
                                          regularization=float(self.regularization),
                                          iterations=int(self.iterations), num_threads=1,
                                          random_state=self.random_state)
        bpr.fit(train.matrix, show_progress=False)
        # implicit: item_factors = [factors | bias], user_factors = [factors | 1]
        self.user_factors_ = np.asarray(bpr.user_factors[:, :-1], dtype=np.float32)
        self.item_factors_ = np.asarray(bpr.item_factors[:, :-1], dtype=np.float32)
        self.item_bias_ = np.asarray(bpr.item_factors[:, -1], dtype=np.float32)

    def user_vectors(self, histories: Histories) -> np.ndarray:
        """Factors (B, D): trained ones for known users, folded in for the rest."""
        self._check_fitted()
        users = np.asarray(histories.users, dtype=np.int64)
        out = np.zeros((len(users), self.item_factors_.shape[1]), dtype=np.float32)
        known = users >= 0
        out[known] = self.user_factors_[users[known]]
        new = np.flatnonzero(~known)
        if len(new):
            out[new] = fold_in(histories.matrix[new], self.item_factors_)
        return out

    def query_vectors(self, histories: Histories) -> np.ndarray:
        """``[x_u, 1]`` (B, D + 1): user factors and a constant 1 that picks up the item bias."""
        x = self.user_vectors(histories)
        return np.hstack([x, np.ones((len(x), 1), dtype=np.float32)])

    def item_vectors(self) -> np.ndarray:
        """``[y_i, b_i]`` (I, D + 1): item factors and bias."""
        self._check_fitted()
        return np.hstack([self.item_factors_, self.item_bias_[:, None]]).astype(np.float32, copy=False)

    def score(self, histories: Histories) -> np.ndarray:
        """``x_u . y_i + b_i``, shape (B, I)."""
        return self.query_vectors(histories) @ self.item_vectors().T

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of item factors (bias left out), shape (B, I)."""
        return cosine_rows(self.item_factors_, items)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_, "item_bias": self.item_bias_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; shapes checked against interactions.npz and config.json
        self.user_factors_ = arrays.array("user_factors", "f", shape=(self.train_.n_users, self.factors))
        self.item_factors_ = arrays.array("item_factors", "f", shape=(self.train_.n_items, self.factors))
        self.item_bias_ = arrays.array("item_bias", "f", shape=(self.train_.n_items,))
