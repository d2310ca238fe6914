"""EASE: Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

An item x item weight matrix B with a zero diagonal, learned in closed form from the weighted
training matrix X (U, A) over the A modelled items:

    P = (X^T X + l2 I)^-1,        B = I - P diag(1 / diag(P)),

so a history x (1, A) scores ``x B = x - (x P) * (1 / diag(P))``. B itself is never formed or
stored: the model keeps what gives ``x P`` cheaply, solving in whichever space is smaller.

* Users (U < A; HetRec: 1,892 listeners, 14,160 artists). By the Woodbury identity

      P = (I - X^T K X) / l2,        K = (l2 I_U + X X^T)^-1,

  a U x U inverse instead of an A x A one. Then ``diag(P)_j = (1 - sum_u X_uj (K X)_uj) / l2``
  and ``x P = (x - ((x X^T) K) X) / l2`` costs O(nnz(X) + U^2) per history. Stored: K (U, U)
  float32; X is the training matrix the model folder keeps anyway.
* Items (U >= A): P itself (A, A), C-ordered so that a sparse history times P reads it in place.

Departure from the paper: none in the model; the user-space solve is an exact rewrite (checked
against the item-space form in tests/models/test_ease.py). ``min_item_users`` leaves rare items
out of A (they rank below every modelled item, by popularity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.features.weighting import SCHEMES, weight
from musicrec.models.base import Recommender
from musicrec.models.recently_played import popularity_fallback


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 100.0            # ridge penalty lambda on B; larger = smoother, more popular
    weighting: str = "binary"    # play-count weighting of X (features.weighting.SCHEMES), as in the paper
    # items with fewer training users are left out of B (rank last, by popularity). Not for
    # speed (the user-space solve does not grow with items); on HetRec, dropping single-listener
    # artists is a hair better: validation ndcg@10 0.1633 against 0.1627 with 1 (l2=78)
    min_item_users: int = 2


# histories scored at once up to which ``x P`` avoids BLAS (see ``EASE._times_p``)
SMALL_BATCH = 16
# user-space similarity blocks read a factor of K while it holds at most this many floats (128 MB)
FACTOR_FLOATS = 32_000_000
# solves up to this size use one BLAS thread (see ``EASE._fit``)
SMALL_SOLVE = 4096


def spd_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of the symmetric positive definite ``m`` (N, N), C-ordered, same dtype; overwrites ``m``.

    Cholesky factorisation and inverse (LAPACK potrf/potri): half the work of a general inverse.
    """
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (m,))
    # m is symmetric, so its transpose is the same matrix in Fortran order: LAPACK works in place
    c, info = potrf(m.T, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise MusicrecError(f"ease: Cholesky factorisation failed (info={info}); increase l2")
    p, info = potri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise MusicrecError(f"ease: matrix inversion failed (info={info}); increase l2")
    # potri fills the upper triangle only (the lower one is zero after clean=1)
    p += p.T
    p[np.diag_indices_from(p)] /= 2.0
    return np.ascontiguousarray(p.T)   # symmetric: the transpose of a Fortran array is the C one


def woodbury_diagonal(xt: sp.csr_matrix, kernel: np.ndarray, block: int = 4096) -> np.ndarray:
    """``diag(X^T K X)`` (A,) float64 from ``xt`` = X^T (A, U) and ``kernel`` = K (U, U), symmetric.

    Blocks of items keep the dense (K X) slice small (``block`` x U float64).
    """
    out = np.empty(xt.shape[0])
    for start in range(0, xt.shape[0], block):
        rows = xt[start:start + block]
        out[start:start + block] = np.ravel(rows.multiply(rows @ kernel).sum(axis=1))
    return out


class EASE(Recommender):
    """Scores ``s = x B`` for a weighted history ``x`` over the active items (see the module doc).

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

    config = EASEConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data); on HetRec a trial (one U x U solve) takes seconds."""
        return {"l2": trial.suggest_float("l2", 10.0, 5000.0, log=True)}

    def _fit(self, train: Interactions) -> None:
        from threadpoolctl import threadpool_limits  # 60 ms to import: only when fitting

        self._validate()
        users_per_item = np.diff(train.matrix.tocsc().indptr)
        active = np.flatnonzero(users_per_item >= self.min_item_users)
        if len(active) == 0:
            raise MusicrecError(f"{self.name}: no item has >= {self.min_item_users} training users")
        self.active_ = active.astype(np.int64)
        xa = self._active_matrix()
        # One BLAS thread solves up to SMALL_SOLVE rows in about a second (HetRec: 0.5 s). More
        # threads save little on an idle machine and, on a busy one, wait on each other at every
        # step: 3-6 s instead of 0.5 s on 2 cores shared with other jobs.
        with threadpool_limits(1 if min(xa.shape) <= SMALL_SOLVE else None, "blas"):
            self._solve(xa, float(self.l2))
        self.fallback_ = popularity_fallback(train)

    def _solve(self, xa: sp.csr_matrix, l2: float) -> None:
        """``inverse_`` and ``inv_diag_`` from the weighted active matrix ``xa`` (U', A)."""
        if xa.shape[0] < xa.shape[1]:   # user space: K = (l2 I + X X^T)^-1, (U, U)
            x64 = xa.astype(np.float64)
            gram = (x64 @ x64.T).toarray()
            gram[np.diag_indices_from(gram)] += l2
            kernel = spd_inverse(gram)
            diag_p = (1.0 - woodbury_diagonal(self._xt, kernel)) / l2
            self.inverse_ = kernel.astype(np.float32)
        else:                           # item space: P = (X^T X + l2 I)^-1, (A, A)
            gram = np.asarray((xa.T @ xa).toarray(), dtype=np.float32)   # no copy: A x A can be large
            gram[np.diag_indices_from(gram)] += l2
            self.inverse_ = spd_inverse(gram)
            diag_p = np.diag(self.inverse_).astype(np.float64)
        self.inv_diag_ = (1.0 / diag_p).astype(np.float32)

    def _active_matrix(self) -> sp.csr_matrix:
        """Weighted training matrix X (U', A) over the active items, users with none dropped.

        Derived from ``train_`` and ``active_`` (at fit and at load, not saved); also keeps the
        active column of every item (-1: inactive), X and X^T (A, U') in CSR for ``_times_p``,
        and each training user's row of X.
        """
        self._column = np.full(self.train_.n_items, -1, dtype=np.int64)
        self._column[self.active_] = np.arange(len(self.active_))
        x = self._active_columns(weight(self.train_.matrix, self.weighting))
        nonempty = np.diff(x.indptr) > 0
        x = x[nonempty]
        self._x, self._xt = x, x.T.tocsr()
        self._factor_cache = None
        # training user index -> their row of X and of K (-1: no active item)
        self._kernel_row = np.where(nonempty, np.cumsum(nonempty) - 1, -1).astype(np.int64)
        return x

    def _active_columns(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """The active items' columns of ``x`` (B, I) -> (B, A), CSR."""
        if len(self.active_) == x.shape[1]:
            return x
        col = self._column[x.indices]
        keep = col >= 0
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[keep]
        return sp.csr_matrix((x.data[keep], (rows, col[keep])), shape=(x.shape[0], len(self.active_)))

    def _user_space(self) -> bool:
        """Whether ``inverse_`` is K (U', U') rather than P (A, A); the fit solves for users only when U' < A."""
        return self.inverse_.shape[0] != len(self.active_)

    def _training_rows(self, x: sp.csr_matrix, users) -> np.ndarray | None:
        """Each history's row of X when every one is a training user's own history (B,), else None."""
        users = np.asarray(users, dtype=np.int64)
        if len(users) != x.shape[0] or not len(users) or (users < 0).any():
            return None
        rows = self._kernel_row[users]
        if (rows < 0).any():
            return None
        for b, r in enumerate(rows):       # the history must be the one the model was fitted on
            got = slice(x.indptr[b], x.indptr[b + 1])
            own = slice(self._x.indptr[r], self._x.indptr[r + 1])
            if not (np.array_equal(x.indices[got], self._x.indices[own])
                    and np.array_equal(x.data[got], self._x.data[own])):
                return None
        return rows

    def _times_p(self, x: sp.csr_matrix, users=None) -> np.ndarray:
        """``x P`` for histories ``x`` (B, A) -> (B, A) float32, C-ordered; never copies the stored inverse.

        ``users`` (B,): training user indices; when every row is that user's training history,
        ``x X^T = G_r`` and ``G K = I - l2 K`` turn ``x P`` into ``K_r X``, one pass over X with
        no U x U product (a served listener: 0.1 ms instead of 1.5 ms).
        """
        if not self._user_space():
            return np.asarray(x @ self.inverse_, dtype=np.float32)
        rows = self._training_rows(x, users) if users is not None else None
        if rows is not None:
            return np.ascontiguousarray((self._xt @ self.inverse_[rows].T).T, dtype=np.float32)
        xxt = x @ self._xt                                    # (B, U) = x X^T, sparse
        # A few rows (a served request, the items of `similar`): sparse x dense, one thread. A
        # multi-threaded BLAS call on a product this small costs more in thread wake-ups than it
        # computes (20 ms instead of 0.7 ms on a busy 2-core machine). Batches: dense BLAS.
        kernel_rows = xxt @ self.inverse_ if x.shape[0] <= SMALL_BATCH else xxt.toarray() @ self.inverse_
        xp = np.ascontiguousarray((self._xt @ kernel_rows.T).T)    # (B, A) = x X^T K X
        # x P = (x - x X^T K X) / l2, in place; x is sparse, so only its nonzeros are added
        xp *= np.float32(-1.0 / self.l2)
        nz = x.tocoo()
        xp[nz.row, nz.col] += nz.data / np.float32(self.l2)
        return xp

    def score(self, histories: Histories) -> np.ndarray:
        """Scores (B, I); items outside the active set rank below every active item."""
        self._check_fitted()
        x = weight(histories.matrix, self.weighting, reference=self.train_.matrix)
        n_items = len(self.fallback_)
        x = self._active_columns(x)
        active_scores = self._times_p(x, histories.users)     # x B = x - (x P) / diag(P), in place
        active_scores *= -self.inv_diag_[None, :]
        nz = x.tocoo()
        active_scores[nz.row, nz.col] += nz.data
        if len(self.active_) == n_items:
            return active_scores
        # below the row's lowest active score, ordered by popularity (fallback is in [-1, 0))
        floor = active_scores.min(axis=1, keepdims=True)
        out = np.broadcast_to(floor + self.fallback_[None, :], (active_scores.shape[0], n_items)).astype(np.float32)
        out[:, self.active_] = active_scores
        return out

    def item_similarity(self, items: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Column ``j`` of B for each item: weight of every item in predicting ``j``, (B, I).

        ``B[:, j] = e_j - P[:, j] / P_jj``, and P is symmetric, so it is row ``j`` of
        ``e_j P``, computed on demand; 0 on the diagonal and for inactive items. With
        ``columns`` (C,), only those entries, (B, C): ``out[r, s] = B[columns[s], items[r]]``
        (see ``_similarity_block``).
        """
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        if columns is not None:
            return self._similarity_block(items, np.asarray(columns, dtype=np.int64))
        found = np.flatnonzero(self._column[items] >= 0)
        out = np.zeros((len(items), len(self.fallback_)), dtype=np.float32)
        if len(found):
            cols = self._column[items[found]]
            unit = sp.csr_matrix((np.ones(len(cols), np.float32), (np.arange(len(cols)), cols)),
                                 shape=(len(cols), len(self.active_)))
            sims = self._times_p(unit)
            sims *= -self.inv_diag_[cols, None]
            sims[np.arange(len(cols)), cols] = 0.0
            if len(self.active_) == out.shape[1]:
                out[found] = sims
            elif len(found) == len(items):
                out[:, self.active_] = sims
            else:
                out[np.ix_(found, self.active_)] = sims
        return out

    def _similarity_block(self, items: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``B[columns, items]`` transposed, (B, C) float32, without forming whole rows of P.

        Off the diagonal ``B[c, j] = -P[c, j] / P_jj``. In user space
        ``P[c, j] = (delta_cj - X[:, c]^T K X[:, j]) / l2``: rows of the factor Z (``_factor``)
        when it is kept, else only the X columns of the requested items and columns are read,
        O(min(nnz(X_items), nnz(X_columns)) U) instead of O(nnz(X)) per item. In item space it
        is a gather from P.
        """
        out = np.zeros((len(items), len(columns)), dtype=np.float32)
        rows = np.flatnonzero(self._column[items] >= 0)
        cols = np.flatnonzero(self._column[columns] >= 0)
        if not len(rows) or not len(cols):
            return out
        a_rows, a_cols = self._column[items[rows]], self._column[columns[cols]]
        factor = self._factor() if self._user_space() else None
        if factor is not None:
            p_block = factor[a_rows] @ factor[a_cols].T                   # (B', C') = Z_items^T Z_columns
            p_block *= np.float32(-1.0 / self.l2)
        elif self._user_space():
            x_rows, x_cols = self._xt[a_rows], self._xt[a_cols]
            # K is symmetric: multiply it by whichever side has fewer listeners, O(nnz U)
            if x_rows.nnz <= x_cols.nnz:
                p_block = np.asarray(x_cols @ (x_rows @ self.inverse_).T).T   # (B', C') = X_items^T K X_columns
            else:
                p_block = np.asarray(x_rows @ (x_cols @ self.inverse_).T)
            p_block *= np.float32(-1.0 / self.l2)                         # off-diagonal entries of P
        else:
            p_block = self.inverse_[np.ix_(a_rows, a_cols)]
        block = -p_block * self.inv_diag_[a_rows, None]
        block[a_rows[:, None] == a_cols[None, :]] = 0.0                   # B has a zero diagonal
        out[np.ix_(rows, cols)] = block
        return out

    def _factor(self) -> np.ndarray | None:
        """Z^T (A, U') float32 with ``Z = L^T X`` and ``K = L L^T``, so ``X^T K X = Z^T Z``: a block
        of P is then a (B, U') x (U', C) product instead of O(nnz U) work (HetRec reasons: 0.1 ms
        instead of 1.4 ms). Built on first use and kept, only while it holds at most
        ``FACTOR_FLOATS`` numbers (HetRec: 14,160 x 1,892, 107 MB); None above that."""
        if getattr(self, "_factor_cache", None) is None:
            if len(self.active_) * self._x.shape[0] > FACTOR_FLOATS:
                self._factor_cache = False
            else:
                lower = np.linalg.cholesky(self.inverse_.astype(np.float64))
                self._factor_cache = np.ascontiguousarray(self._xt @ lower, dtype=np.float32)
        return self._factor_cache if self._factor_cache is not False else None

    def _state(self) -> dict[str, np.ndarray]:
        return {"active": self.active_, "inverse": self.inverse_, "inv_diag": self.inv_diag_,
                "fallback": self.fallback_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        if "inverse" not in arrays:     # folders written before the user-space solve kept B itself
            raise MusicrecError(f"{self.name}: this model folder holds the older dense weights; "
                                "train it again with `musicrec train ease`")
        # arrays: a validate.StateArrays; shapes checked against interactions.npz
        active = arrays.indices("active", self.train_.n_items).astype(np.int64, copy=False)
        if len(active) == 0 or np.any(np.diff(active) <= 0):
            raise arrays.fail("active must list at least one item index, each once, in increasing order")
        self.active_ = active
        self._active_matrix()   # load_from sets train_ before the state
        n_active, n_users = len(active), self._x.shape[0]
        inverse = arrays.array("inverse", "f", ndim=2)
        if inverse.shape not in ((n_active, n_active), (n_users, n_users)):
            raise arrays.fail(f"inverse has shape {inverse.shape}, expected ({n_active}, {n_active}) for the active "
                              f"items or ({n_users}, {n_users}) for the training users with one")
        self.inverse_ = np.ascontiguousarray(inverse)
        self.inv_diag_ = arrays.array("inv_diag", "f", shape=(n_active,))
        self.fallback_ = arrays.array("fallback", "f", shape=(self.train_.n_items,))

    def _validate(self) -> None:
        """Hyperparameter checks, run by ``_fit`` and on a loaded folder's parameters."""
        self._check_number("l2", low=0, low_open=True)
        self._check_choice("weighting", SCHEMES)
        self._check_int("min_item_users", 1)
