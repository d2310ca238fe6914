"""Checks of a model folder's files before anything is built from them.

A model folder is data from disk: a damaged or hand-edited ``interactions.npz``, ``state.npz``
or ``config.json`` must give a one-line :class:`~musicrec.MusicrecError` naming the file and
the problem, never a native crash (scipy's sparse kernels trust their index arrays), a
traceback, or a network allocating gigabytes. Every check here raises
``MusicrecError(f"{file}: {problem}")``.
"""

from __future__ import annotations

import numpy as np

from musicrec import MusicrecError
from musicrec.arrays import StateArrays

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


def parse_dilations(value) -> list[int]:
    """``"1,2,4"`` or ``[1, 2, 4]`` -> [1, 2, 4]; raises ValueError unless positive integers."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    out = [int(p) if isinstance(p, str) else p for p in parts]
    if not out or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in out):
        raise ValueError(value)
    return out


_dilations = parse_dilations


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

