"""Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren & Volinsky 2008).

Training is ``implicit``'s CPU ALS. Only the factor arrays are kept, so a saved model needs
no ``implicit`` object. New listeners are folded in with the exact least-squares step
ALS itself uses for users, holding the item factors fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from musicrec.features.interactions import Histories, Interactions
from musicrec.features.weighting import SCHEMES, weight
from musicrec.models.base import Recommender


@dataclass(frozen=True)
class ALSConfig:
    factors: int = 64               # latent dimensions D
    regularization: float = 0.05    # L2 penalty on the factors
    alpha: float = 1.0              # confidence = alpha * weighted plays (implicit's convention)
    iterations: int = 15            # ALS sweeps (users, then items)
    weighting: str = "bm25"         # play-count weighting before alpha (features.weighting.SCHEMES)
    random_state: int = 0           # seed of the initial factors


def fold_in(confidence: sp.csr_matrix, item_factors: np.ndarray, regularization: float,
            gram: np.ndarray | None = None) -> np.ndarray:
    """User factors for new rows of ``confidence`` (B, I) given item factors Y (I, D) -> (B, D).

    Solves ``(Y^T C_u Y + reg I) x = Y^T C_u p_u`` per row, where ``C_u`` is 1 for unplayed
    items and the confidence for played ones and ``p_u`` marks played items; written as
    ``Y^T Y + sum_i (c_i - 1) y_i y_i^T`` so the cost is per played item, as in ``implicit``.
    ``gram`` is ``Y^T Y`` (D, D) float64 when the caller keeps it (it costs I * D^2 to make).
    """
    if gram is None:
        y = item_factors.astype(np.float64)
        gram = y.T @ y
    d = item_factors.shape[1]
    base = gram + regularization * np.eye(d)
    out = np.zeros((confidence.shape[0], d), dtype=np.float32)
    c = confidence.tocsr()
    for r in range(c.shape[0]):
        idx = c.indices[c.indptr[r]:c.indptr[r + 1]]
        if len(idx) == 0:
            continue
        conf = c.data[c.indptr[r]:c.indptr[r + 1]].astype(np.float64)
        yh = item_factors[idx].astype(np.float64)
        # as implicit: a negative confidence means "disliked" (preference 0, weight |c|)
        a = base + (yh * (np.abs(conf) - 1.0)[:, None]).T @ yh
        out[r] = np.linalg.solve(a, yh.T @ np.maximum(conf, 0.0))
    return out


def cosine_rows(vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine between ``vectors[items]`` (B, D) and every row of ``vectors`` (I, D) -> (B, I)."""
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.maximum(norms, 1e-12)[:, None]
    return (unit[np.asarray(items, dtype=np.int64)] @ unit.T).astype(np.float32)


class ALS(Recommender):
    """Score ``x_u . y_i``; x_u from training for known users, folded in for new histories.

    Parameters
    ----------
    factors : int > 0
    regularization : float >= 0
    alpha : float > 0
    iterations : int > 0
    weighting : str
    random_state : int
        See ``ALSConfig``.
    """

    name = "als"

    config = ALSConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data)."""
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128]),
            "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.5, 50.0, log=True),
        }

    def _validate(self) -> None:
        self._check_int("factors", 1)
        self._check_int("iterations", 1)
        self._check_number("regularization", low=0)
        self._check_number("alpha", low=0, low_open=True)
        self._check_choice("weighting", SCHEMES)

    def _fit(self, train: Interactions) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self._validate()
        # implicit runs its own threads; a multithreaded BLAS underneath only oversubscribes
        # (implicit checks, and warns, when the model is created)
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(factors=int(self.factors), regularization=float(self.regularization),
                                          alpha=float(self.alpha), iterations=int(self.iterations),
                                          calculate_training_loss=False, random_state=self.random_state)
            als.fit(weight(train.matrix, self.weighting), show_progress=False)
        self.user_factors_ = np.asarray(als.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(als.item_factors, dtype=np.float32)

    def user_vectors(self, histories: Histories) -> np.ndarray:
        """Factors (B, D): trained ones for known users, folded in for the rest."""
        self._check_fitted()
        users = np.asarray(histories.users, dtype=np.int64)
        out = np.zeros((len(users), self.item_factors_.shape[1]), dtype=np.float32)
        known = users >= 0
        out[known] = self.user_factors_[users[known]]
        new = np.flatnonzero(~known)
        if len(new):
            conf = weight(histories.matrix[new], self.weighting, reference=self.train_.matrix) * float(self.alpha)
            out[new] = fold_in(conf, self.item_factors_, float(self.regularization), gram=self._gram())
        return out

    def _gram(self) -> np.ndarray:
        """``Y^T Y`` (D, D) float64, kept while the item factors stay the same array: serving
        folds in one listener per request, and recomputing it would cost I * D^2 each time."""
        cached = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_:
            y = self.item_factors_.astype(np.float64)
            cached = (self.item_factors_, y.T @ y)
            self._gram_cache = cached
        return cached[1]

    def query_vectors(self, histories: Histories) -> np.ndarray:
        """User factors (B, D); see ``user_vectors``."""
        return self.user_vectors(histories)

    def item_vectors(self) -> np.ndarray:
        """Item factors (I, D): the model's own array (not a copy), so read only."""
        self._check_fitted()
        return self.item_factors_

    def score(self, histories: Histories) -> np.ndarray:
        """Dot products of user and item factors, shape (B, I)."""
        return self.query_vectors(histories) @ self.item_vectors().T

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of item factors, shape (B, I)."""
        return cosine_rows(self.item_factors_, items)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; shapes checked against interactions.npz and config.json
        shape = (self.train_.n_users, self.factors)
        self.user_factors_ = arrays.array("user_factors", "f", shape=shape)
        self.item_factors_ = arrays.array("item_factors", "f", shape=(self.train_.n_items, self.factors))
