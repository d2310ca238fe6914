"""Id vocabularies: external (store) int64 ids <-> contiguous 0-based indices."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdMap:
    """Maps external ids ``ids[i]`` to index ``i``.

    Attributes
    ----------
    ids : ndarray, shape (N,), int64
        External id of each index, in index order.
    """

    ids: np.ndarray

    @classmethod
    def fit(cls, values) -> "IdMap":
        """Vocabulary of the distinct values, sorted (deterministic)."""
        return cls(np.unique(np.asarray(values, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, values, missing: int = -1) -> np.ndarray:
        """Indices of ``values`` (shape kept); ids not in the vocabulary become ``missing``."""
        values = np.asarray(values, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(values.shape, missing, dtype=np.int64)
        order, sorted_ids = self._sorted
        pos = np.searchsorted(sorted_ids, values)
        pos = np.clip(pos, 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == values
        return np.where(found, order[pos], missing).astype(np.int64)

    @functools.cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, ids[order]), sorted once: ids from fit() are sorted, others may not be."""
        order = np.argsort(self.ids, kind="stable")
        return order, self.ids[order]

    def __contains__(self, value) -> bool:
        return bool(self.index([value])[0] >= 0)
