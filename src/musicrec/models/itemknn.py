"""Item-based k-nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004).

Items are similar when the same listeners play them. The similarity matrix is kept sparse
(``neighbors`` per item), so HetRec's 17,632 artists fit in seconds and in little memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from musicrec.features.interactions import Histories, Interactions, csr_row_product, csr_rows
from musicrec.features.weighting import SCHEMES, weight
from musicrec.models.base import Recommender


@dataclass(frozen=True)
class ItemKNNConfig:
    neighbors: int = 100       # most similar items kept per item
    shrink: float = 10.0       # added to the cosine denominator: damps pairs seen by few users
    weighting: str = "binary"  # play-count weighting (features.weighting.SCHEMES)


def top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of ``m`` (ties -> lower column), CSR."""
    m = m.tocsr()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = order[rank < k]
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float32)


def cosine_similarity(x: sp.csr_matrix, shrink: float) -> sp.csr_matrix:
    """Shrunk cosine between the columns of ``x`` (U, I) -> (I, I) sparse, zero diagonal.

    ``sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink)``.
    """
    xt = x.T.tocsr()
    dots = (xt @ xt.T).tocoo()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    off = dots.row != dots.col
    r, c = dots.row[off], dots.col[off]
    vals = dots.data[off] / (norms[r] * norms[c] + shrink)
    return sp.csr_matrix((vals.astype(np.float32), (r, c)), shape=dots.shape)


class ItemKNN(Recommender):
    """Score ``s = h @ S``: the weighted history ``h`` (B, I) times the item-item similarity S.

    Column ``j`` of S holds item ``j``'s ``neighbors`` most similar items, so a candidate
    is scored by how much of the history lies among its nearest neighbours.

    Parameters
    ----------
    neighbors : int > 0
        Similar items kept per item.
    shrink : float >= 0
        Shrinkage of the cosine denominator.
    weighting : str
        Play-count weighting of the user x item matrix and of the histories.
    """

    name = "itemknn"

    config = ItemKNNConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data)."""
        return {
            "neighbors": trial.suggest_int("neighbors", 20, 1000, log=True),
            "shrink": trial.suggest_float("shrink", 0.0, 200.0),
        }

    def _fit(self, train: Interactions) -> None:
        self._validate()
        sim = cosine_similarity(weight(train.matrix, self.weighting), float(self.shrink))
        # row j of the symmetric similarity = column j of S: j's nearest neighbours
        self._set_neighbors(top_per_row(sim, int(self.neighbors)))

    def _set_neighbors(self, neighbors: sp.csr_matrix) -> None:
        self.knn_ = neighbors                        # (I, I) row j: neighbours of item j
        self.similarity_ = neighbors.T.tocsr()       # S (I, I), used as h @ S

    def score(self, histories: Histories) -> np.ndarray:
        """Scores (B, I) = weighted histories (B, I) @ S (I, I)."""
        self._check_fitted()
        h = weight(histories.matrix, self.weighting, reference=self.train_.matrix)
        if len(histories) == 1:     # a served history
            return csr_row_product(h.indices, h.data, self.similarity_)[None, :].astype(np.float32)
        return np.asarray((h @ self.similarity_).todense(), dtype=np.float32)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Columns of S for ``items``: similarity of every item to each, shape (B, I)."""
        return csr_rows(self.knn_, items).toarray()      # scipy's row indexing costs more than a request

    def _state(self) -> dict[str, np.ndarray]:
        n = self.knn_
        return {"data": n.data, "indices": n.indices, "indptr": n.indptr}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; the CSR arrays checked (ranges, row pointer) before use
        n_items = self.train_.n_items
        self._set_neighbors(arrays.csr("data", "indices", "indptr", (n_items, n_items)))

    def _validate(self) -> None:
        """Hyperparameter checks, run by ``_fit`` and on a loaded folder's parameters."""
        self._check_int("neighbors", 1)
        self._check_number("shrink", low=0)
        self._check_choice("weighting", SCHEMES)
