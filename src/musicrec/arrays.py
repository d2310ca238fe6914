"""Arrays read from disk, checked before anything is built from them.

A saved file is data from disk: a damaged or hand-edited ``.npz`` must give a one-line
:class:`~musicrec.MusicrecError` naming the file and the problem, never a native crash (scipy's
sparse kernels trust their index arrays) or a traceback. Used by every layer that loads arrays
(``features.interactions``, the models' ``_set_state``), so it sits below them all.
"""

from __future__ import annotations

import math

import numpy as np

from musicrec import MusicrecError


class StateArrays(dict):
    """The arrays of one ``.npz`` file, remembering the file: a missing key is a MusicrecError
    naming the file and the key (``arrays["x"]``), so ``_set_state`` code needs no try/except."""

    def __init__(self, file: str, arrays: dict):
        super().__init__(arrays)
        self.file = file

    def __missing__(self, key):
        raise MusicrecError(f"{self.file}: no array {key!r}")

    def fail(self, problem: str) -> MusicrecError:
        return MusicrecError(f"{self.file}: {problem}")

    def array(self, key: str, kind: str, ndim: int | None = 1, shape: tuple | None = None,
              finite: bool = True) -> np.ndarray:
        """``self[key]`` checked: dtype kind in ``kind`` ("i" integer, "f" float, "if" either; bool
        never counts), ``ndim`` dimensions, ``shape`` (None entries: any size), finite values."""
        a = self[key]
        if not isinstance(a, np.ndarray):
            raise self.fail(f"{key} is not an array")
        kinds = {"i": "iu", "f": "f", "if": "iuf"}[kind]
        if a.dtype.kind not in kinds:
            want = {"i": "integer", "f": "floating-point", "if": "numeric"}[kind]
            raise self.fail(f"{key} has dtype {a.dtype}, expected {want}")
        if shape is not None:
            ndim = len(shape)
        if ndim is not None and a.ndim != ndim:
            raise self.fail(f"{key} has {a.ndim} dimensions {tuple(a.shape)}, expected {ndim}")
        if shape is not None and (any(w is not None and s != w for s, w in zip(a.shape, shape))):
            want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "") + ")"
            raise self.fail(f"{key} has shape {tuple(a.shape)}, expected {want}")
        if finite and a.dtype.kind == "f" and a.size and not all_finite(a):
            raise self.fail(f"{key} holds NaN or infinite values")
        return a

    def indices(self, key: str, n: int, length: int | None = None, low: int = 0) -> np.ndarray:
        """An integer 1-D array (of ``length`` when given) with every value in ``low..n - 1``."""
        a = self.array(key, "i", shape=(length,))
        if a.size and (a.min() < low or a.max() >= n):
            raise self.fail(f"{key} holds values outside {low}..{n - 1} "
                            f"(found {a.min()}..{a.max()})")
        return a

    def indptr(self, key: str, n_rows: int | None, n_entries: int) -> np.ndarray:
        """A CSR row pointer: integer, ``n_rows + 1`` long, starts at 0, never decreases, ends at
        ``n_entries``."""
        a = self.array(key, "i", shape=(None if n_rows is None else n_rows + 1,))
        if len(a) == 0:
            raise self.fail(f"{key} is empty (a row pointer holds at least one 0)")
        if a[0] != 0 or a[-1] != n_entries:
            raise self.fail(f"{key} runs from {a[0]} to {a[-1]}, expected 0 to {n_entries} (the entries)")
        if len(a) > 1 and np.any(np.diff(a) < 0):
            raise self.fail(f"{key} decreases")
        return a

    def csr(self, data: str, indices: str, indptr: str, shape: tuple[int, int] | None,
            square: bool = False):
        """A scipy CSR matrix built from three checked arrays. ``shape`` None takes the rows from
        the row pointer; ``square`` makes the columns equal the rows."""
        import scipy.sparse as sp

        d = self.array(data, "if")
        n_rows = None if shape is None else shape[0]
        ptr = self.indptr(indptr, n_rows, len(d))
        n_rows = len(ptr) - 1
        n_cols = n_rows if square or shape is None else shape[1]
        idx = self.indices(indices, n_cols, length=len(d))
        return sp.csr_matrix((d, idx, ptr), shape=(n_rows, n_cols))


def all_finite(a: np.ndarray) -> bool:
    """Whether a float array holds no NaN or infinity (a float64 sum: no boolean copy of a big array)."""
    return math.isfinite(float(np.sum(a, dtype=np.float64)))
