"""The training data every model consumes: a user x item matrix plus ordered sequences.

Built once from split events (``schema.SPLIT_EVENTS``); models never see store ids, only
indices, and the ``IdMap``s translate back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec import fsio
from musicrec.features.vocab import IdMap


def csr_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows]`` (R, C) for a CSR matrix, gathered directly from its arrays: scipy's fancy
    indexing costs ~0.3 ms even for one row, which is most of a served request's budget."""
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if len(rows) and (rows.min() < 0 or rows.max() >= matrix.shape[0]):
        raise IndexError(f"row index out of range 0..{matrix.shape[0] - 1}")
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    indptr = np.zeros(len(rows) + 1, dtype=matrix.indptr.dtype)
    np.cumsum(lengths, out=indptr[1:])
    take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
    return sp.csr_matrix((matrix.data[take], matrix.indices[take], indptr), shape=(len(rows), matrix.shape[1]))


_ROW_LOOP_MAX = 12      # entries up to which adding rows beats scipy's product (measured: 16 break even)


def csr_row_product(columns: np.ndarray, values: np.ndarray, matrix: sp.csr_matrix) -> np.ndarray:
    """Dense (C,) product of one sparse row (``columns``, ``values``: its entries in stored order)
    with CSR ``matrix`` (R, C), the very numbers of ``(row @ matrix)``: for a short row the rows of
    ``matrix`` are added one by one in that order, in the dtype scipy's product computes in (its
    bookkeeping costs ~0.1 ms for one row, a served request's whole budget); else scipy's product."""
    columns, values = np.asarray(columns), np.asarray(values)
    if len(columns) > _ROW_LOOP_MAX:
        row = sp.csr_matrix((values, columns, np.array([0, len(columns)])), shape=(1, matrix.shape[0]))
        return (row @ matrix).toarray()[0]
    dtype = np.result_type(values.dtype, matrix.dtype)
    out = np.zeros(matrix.shape[1], dtype)
    for j, v in zip(columns.tolist(), values.astype(dtype).tolist()):
        lo, hi = matrix.indptr[j], matrix.indptr[j + 1]
        out[matrix.indices[lo:hi]] += dtype.type(v) * matrix.data[lo:hi].astype(dtype, copy=False)
    return out


@dataclass
class Histories:
    """A batch of listening histories to score, in item *indices*.

    Attributes
    ----------
    matrix : csr_matrix, shape (B, I), float32
        Summed raw play counts per item (before any weighting).
    sequences : list of ndarray
        Per row, item indices in listening order (most recent last), repeats kept.
        For data without timestamps the order is arbitrary.
    users : ndarray, shape (B,), int64
        Training-user index of each row, or -1 for a new listener / a session.
    """

    matrix: sp.csr_matrix
    sequences: list
    users: np.ndarray

    def __len__(self) -> int:
        return self.matrix.shape[0]

    @classmethod
    def from_sequences(cls, sequences, n_items: int, users=None, counts=None) -> "Histories":
        """Histories of ordered item-index arrays; ``counts`` (same shapes) default to 1 per play."""
        sequences = [np.asarray(s, dtype=np.int64) for s in sequences]
        rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
        cols = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        vals = (np.concatenate([np.asarray(c, dtype=np.float32) for c in counts])
                if counts is not None and len(sequences) else np.ones(len(cols), dtype=np.float32))
        if len(cols) and (cols.min() < 0 or cols.max() >= n_items):
            raise ValueError(f"item index out of range 0..{n_items - 1}")
        # duplicates summed by one np.unique over (row, item) keys: scipy's COO route costs
        # ~0.2 ms even for a one-row served session
        keys, inverse = np.unique(rows * max(n_items, 1) + cols, return_inverse=True)
        data = np.bincount(inverse, weights=vals, minlength=len(keys)).astype(np.float32)
        indptr = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // max(n_items, 1), minlength=len(sequences)), out=indptr[1:])
        m = sp.csr_matrix((data, keys % max(n_items, 1), indptr), shape=(len(sequences), n_items))
        users = np.full(len(sequences), -1, dtype=np.int64) if users is None else np.asarray(users, np.int64)
        return cls(m, sequences, users)


@dataclass
class Interactions:
    """Training interactions.

    Attributes
    ----------
    users, items : IdMap
        Store ids of the U users and I items.
    matrix : csr_matrix, shape (U, I), float32
        Summed raw play counts (weights) per user and item.
    user_sequences : list of ndarray
        Per user, item indices ordered by time (repeats kept); arbitrary order without timestamps.
    session_indptr : ndarray, shape (S + 1,), int64
        Sessions in CSR layout over ``session_items`` (ordered by time within a session).
    session_items : ndarray, shape (N,), int64
    session_time : ndarray, shape (S,), float64
        Unix seconds of each session's last event (0 when unknown).
    session_user : ndarray, shape (S,), int64
        User index of each session.
    """

    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    user_sequences: list
    session_indptr: np.ndarray
    session_items: np.ndarray
    session_time: np.ndarray
    session_user: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_sessions(self) -> int:
        return len(self.session_indptr) - 1

    def session(self, s: int) -> np.ndarray:
        return self.session_items[self.session_indptr[s]:self.session_indptr[s + 1]]

    # ---------------------------------------------------------------- build
    @classmethod
    def from_frame(cls, events: pl.DataFrame, items: IdMap | None = None) -> "Interactions":
        """Build from split events (columns of ``schema.SPLIT_EVENTS``).

        Rows whose item is not in ``items`` (when given) are dropped. Without ``session_id``
        each user's history is one session.
        """
        df = events
        users = IdMap.fit(df["user_id"].to_numpy())
        items = items or IdMap.fit(df["item_id"].to_numpy())
        df = df.with_columns(
            pl.Series("u", users.index(df["user_id"].to_numpy())),
            pl.Series("i", items.index(df["item_id"].to_numpy())),
            pl.col("timestamp").dt.epoch("us").fill_null(0).alias("t"),
            pl.col("weight").fill_null(1.0),
            pl.col("session_id").fill_null(-1),
        ).filter(pl.col("i") >= 0)
        df = df.with_row_index("_row").sort(["u", "t", "_row"])
        u = df["u"].to_numpy()
        i = df["i"].to_numpy()
        w = df["weight"].to_numpy().astype(np.float32)
        matrix = sp.csr_matrix((w, (u, i)), shape=(len(users), len(items)), dtype=np.float32)
        matrix.sum_duplicates()
        bounds = np.searchsorted(u, np.arange(len(users) + 1))
        user_sequences = [i[bounds[k]:bounds[k + 1]].astype(np.int64) for k in range(len(users))]

        sess = df.with_columns(
            pl.when(pl.col("session_id") >= 0).then(pl.col("session_id")).otherwise(-1 - pl.col("u")).alias("s")
        ).sort(["s", "t", "_row"])
        s = sess["s"].to_numpy()
        change = np.flatnonzero(np.diff(s)) + 1 if len(s) else np.zeros(0, dtype=np.int64)
        indptr = np.concatenate([[0], change, [len(s)]]).astype(np.int64) if len(s) else np.zeros(1, np.int64)
        t_sec = sess["t"].to_numpy() / 1e6
        last = indptr[1:] - 1
        return cls(
            users=users,
            items=items,
            matrix=matrix,
            user_sequences=user_sequences,
            session_indptr=indptr,
            session_items=sess["i"].to_numpy().astype(np.int64),
            session_time=t_sec[last] if len(last) else np.zeros(0),
            session_user=sess["u"].to_numpy()[last].astype(np.int64) if len(last) else np.zeros(0, np.int64),
        )

    def histories(self, users) -> Histories:
        """Training histories of the given user indices."""
        users = np.asarray(users, dtype=np.int64)
        return Histories(csr_rows(self.matrix, users), [self.user_sequences[u] for u in users], users)

    # ---------------------------------------------------------------- persist
    def save(self, path: str) -> None:
        """Write ``interactions.npz`` into directory ``path`` (no pickles)."""
        lengths = np.array([len(s) for s in self.user_sequences], dtype=np.int64)
        seq = np.concatenate(self.user_sequences) if self.user_sequences else np.zeros(0, np.int64)
        m = self.matrix.tocsr()
        arrays = dict(
            users=self.users.ids, items=self.items.ids,
            m_data=m.data, m_indices=m.indices, m_indptr=m.indptr,
            seq=seq, seq_len=lengths,
            session_indptr=self.session_indptr, session_items=self.session_items,
            session_time=self.session_time, session_user=self.session_user,
        )
        fsio.atomic_savez(fsio.join(path, "interactions.npz"), arrays)

    @classmethod
    def load(cls, path: str) -> "Interactions":
        """Read ``interactions.npz`` from directory ``path`` (local path or fsspec URL).

        Every array is checked (keys, dtypes, lengths, index ranges, row pointers) before anything
        is built from it: a damaged file is a one-line MusicrecError naming it, never a crash in
        scipy's kernels, which trust their indices.
        """
        from musicrec.arrays import StateArrays

        file = fsio.join(path, "interactions.npz")
        a = StateArrays(file, fsio.load_arrays(file))
        users = IdMap(a.array("users", "i"))
        items = IdMap(a.array("items", "i"))
        for key, ids in (("users", users.ids), ("items", items.ids)):
            if len(ids) > 1 and len(np.unique(ids)) != len(ids):
                raise a.fail(f"{key} holds repeated ids")
        n_users, n_items = len(users), len(items)
        matrix = a.csr("m_data", "m_indices", "m_indptr", (n_users, n_items))
        seq = a.indices("seq", n_items)
        seq_len = a.array("seq_len", "i", shape=(n_users,))
        if seq_len.size and seq_len.min() < 0:
            raise a.fail("seq_len holds negative lengths")
        if int(seq_len.sum()) != len(seq):
            raise a.fail(f"seq_len sums to {int(seq_len.sum())}, but seq holds {len(seq)} items")
        session_items = a.indices("session_items", n_items)
        session_indptr = a.indptr("session_indptr", None, len(session_items))
        n_sessions = len(session_indptr) - 1
        session_time = a.array("session_time", "if", shape=(n_sessions,))
        session_user = a.indices("session_user", n_users, length=n_sessions)
        bounds = np.concatenate([[0], np.cumsum(seq_len)])
        seqs = [seq[bounds[k]:bounds[k + 1]].astype(np.int64, copy=False) for k in range(n_users)]
        return cls(users, items, matrix, seqs, session_indptr.astype(np.int64, copy=False),
                   session_items.astype(np.int64, copy=False), session_time.astype(np.float64, copy=False),
                   session_user.astype(np.int64, copy=False))
