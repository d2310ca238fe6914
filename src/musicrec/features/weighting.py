"""Play-count weighting of a user x item count matrix."""

from __future__ import annotations

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
        ref = m if reference is None else sp.csr_matrix(reference)
        n_users = max(ref.shape[0], 1)
        df = np.bincount(ref.indices, minlength=m.shape[1])
        idf = np.log(n_users) - np.log1p(df)
        ref_sums = np.ravel(ref.sum(axis=1))
        avg = ref_sums.mean() if len(ref_sums) else 1.0
        row_sums = np.ravel(m.sum(axis=1))
        length_norm = (1.0 - b) + b * row_sums / max(avg, 1e-12)
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        m.data = (m.data * (k1 + 1.0) / (k1 * length_norm[rows] + m.data) * idf[m.indices]).astype(np.float32)
    return m
