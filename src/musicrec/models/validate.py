"""Checks of a model folder's files before anything is built from them.

A model folder is data from disk: a damaged or hand-edited ``interactions.npz``, ``state.npz``
or ``config.json`` must give a one-line :class:`~musicrec.MusicrecError` naming the file and
the problem, never a native crash (scipy's sparse kernels trust their index arrays), a
traceback, or a network allocating gigabytes. Every check here raises
``MusicrecError(f"{file}: {problem}")``.
"""

from __future__ import annotations

import math

import numpy as np

from musicrec import MusicrecError

#: upper bounds of the hyperparameters that size what loading allocates (layers, widths,
#: lengths); a config above them is refused before any network is built
SIZE_CAPS: dict[str, int] = {
    "n_layers": 64, "n_blocks": 64, "n_heads": 64, "kernel_size": 64,
    "embedding_dim": 4096, "hidden_size": 4096, "latent_dim": 4096, "content_hidden": 4096,
    "factors": 4096, "n_h": 4096, "n_v": 4096,
    "max_len": 10_000, "n_targets": 10_000, "neighbors": 100_000, "k": 100_000,
    "sample_size": 10_000_000, "steps": 10_000, "last_n": 10_000, "pruning": 100_000,
    "batch_size": 1_000_000, "n_negatives": 1_000_000,
}
#: bound of each width in a list-valued size (``hidden_dims``, ``dilations``) and of its length
WIDTH_CAP = 4096
LIST_CAP = 64


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


def check_params(model, file: str) -> None:
    """The model's own hyperparameter checks (its ``_validate``) plus :data:`SIZE_CAPS`, as a
    one-line error naming ``file`` (the folder's config.json)."""
    try:
        model._validate()
    except MusicrecError as exc:
        raise MusicrecError(f"{file}: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:   # a check meeting a value of a type it did not expect
        raise MusicrecError(f"{file}: {model.name}: invalid parameters ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    params = model.get_params()
    for key, cap in SIZE_CAPS.items():
        value = params.get(key)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > cap:
            raise MusicrecError(f"{file}: {model.name}: {key} must be at most {cap}, got {value!r}")
    for key, parse in (("hidden_dims", getattr(model, "_hidden", None)), ("dilations", _dilations)):
        if key in params and parse is not None:
            widths = parse() if key == "hidden_dims" else parse(params[key])
            if len(widths) > LIST_CAP or any(w > WIDTH_CAP for w in widths):
                raise MusicrecError(f"{file}: {model.name}: {key} may hold at most {LIST_CAP} values of at most "
                                    f"{WIDTH_CAP}, got {params[key]!r}")


def _dilations(value) -> list[int]:
    from musicrec.models.nextitnet import parse_dilations

    return parse_dilations(value)


def check_config_params(name: str, params, valid: dict, file: str) -> dict:
    """``params`` of config.json as a dict of known parameter names (MusicrecError otherwise)."""
    if not isinstance(params, dict):
        raise MusicrecError(f"{file}: params must be a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise MusicrecError(f"{file}: {name}: unknown parameter {', '.join(map(repr, unknown))}")
    return params


def check_state_shapes(file: str, net, arrays: StateArrays) -> dict:
    """The ``net.*`` arrays of ``arrays`` as tensors for ``net.load_state_dict``, after checking
    they are exactly the network's parameters, with its shapes and floating-point dtypes."""
    import torch

    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    given = {k[4:]: v for k, v in arrays.items() if k.startswith("net.")}
    missing = sorted(set(expected) - set(given))
    if missing:
        raise arrays.fail(f"no weights for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
                          "(the network built from config.json needs them)")
    extra = sorted(set(given) - set(expected))
    if extra:
        raise arrays.fail(f"weights {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''} do not belong to "
                          "the network built from config.json")
    out = {}
    for key, shape in expected.items():
        want_kind = "i" if net.state_dict()[key].dtype in (torch.int64, torch.int32, torch.long) else "f"
        a = arrays.array("net." + key, "if" if want_kind == "i" else "f", ndim=None)
        if tuple(a.shape) != shape:
            raise arrays.fail(f"net.{key} has shape {tuple(a.shape)}, the network built from config.json "
                              f"and interactions.npz needs {shape}")
        out[key] = torch.from_numpy(np.ascontiguousarray(a.astype(np.float32) if a.dtype == np.float16 else a))
    return out

