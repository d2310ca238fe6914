"""Play-count weighting of a user x item count matrix."""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp

from musicrec import MusicrecError

SCHEMES = ("raw", "binary", "log1p", "bm25")


def weight(matrix: sp.csr_matrix, scheme: str = "log1p", k1: float = 1.2, b: float = 0.75,
           reference: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """Reweight play counts, shape (U, I) -> (U, I), float32.

    ``binary``: 1 per played item; ``log1p``: log(1 + count), damping heavy repeat
    listening; ``bm25``: Okapi BM25 over users' rows with item IDF (as in ``implicit``);
    ``raw``: counts unchanged. ``reference`` (U', I) is the matrix whose item document
    frequencies and mean row length BM25 uses (default ``matrix`` itself); pass the training
    matrix when weighting a few new histories, whose own statistics would be meaningless.
    """
    if scheme not in SCHEMES:
        raise MusicrecError(f"unknown weighting {scheme!r}; choose one of {', '.join(SCHEMES)}")
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if scheme == "binary":
        m.data[:] = 1.0
    elif scheme == "log1p":
        m.data = np.log1p(m.data)
    elif scheme == "bm25":
        idf, avg = _bm25_reference(m if reference is None else reference, m.shape[1], cache=reference is not None)
        row_sums = np.ravel(m.sum(axis=1))
        length_norm = (1.0 - b) + b * row_sums / max(avg, 1e-12)
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        m.data = (m.data * (k1 + 1.0) / (k1 * length_norm[rows] + m.data) * idf[m.indices]).astype(np.float32)
    return m


# statistics of reference (training) matrices, by object: a served model weights one new
# history per request against the same training matrix, and its item counts cost O(nnz)
_REFERENCE_CACHE: dict[int, tuple] = {}


def _bm25_reference(ref, n_items: int, cache: bool) -> tuple[np.ndarray, float]:
    """(item IDF (I,), mean row sum) of ``ref`` (U', I) for BM25; kept per reference object."""
    hit = _REFERENCE_CACHE.get(id(ref)) if cache else None
    if hit is not None and hit[0]() is ref and hit[1] == (ref.shape, ref.nnz):
        return hit[2], hit[3]
    m = sp.csr_matrix(ref)
    df = np.bincount(m.indices, minlength=n_items)
    idf = np.log(max(m.shape[0], 1)) - np.log1p(df)
    sums = np.ravel(m.sum(axis=1))
    avg = float(sums.mean()) if len(sums) else 1.0
    if cache:
        try:
            entry = (weakref.ref(ref), (ref.shape, ref.nnz), idf, avg)
        except TypeError:   # not weak-referenceable: no caching
            return idf, avg
        if len(_REFERENCE_CACHE) >= 8:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        _REFERENCE_CACHE[id(ref)] = entry
    return idf, avg
