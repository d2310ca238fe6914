"""The interface every recommender shares (after ``implicit``'s RecommenderBase).

A model scores *histories* (``features.interactions.Histories``): a known user's training
history, a new listener's seed artists, or a session prefix all go through ``score``, so
evaluation and serving use one code path. Hyperparameters are ``__init__`` keywords stored
unchanged; ``fit`` validates, learns state into attributes ending in ``_`` and returns self.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import sys
from typing import Callable, ClassVar

import numpy as np
import scipy.sparse as sp

from musicrec import MusicrecError, __version__, fsio
from musicrec.features.interactions import Histories, Interactions


def check_k(k) -> None:
    """MusicrecError unless ``k`` (a list length asked for by a user) is an integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise MusicrecError(f"k must be an integer >= 1, got {k!r}")


def _torch():
    """torch when this process has already imported it (a deep model is loaded), else None:
    ``topk`` never imports it, so classic models are evaluated and served without torch."""
    return sys.modules.get("torch")


def similarity_block(model, items: np.ndarray, columns: np.ndarray, block: bool | None = None) -> np.ndarray:
    """``model.item_similarity(items)[:, columns]`` (B, C), computing only that block where the
    model can (``block``, default ``takes_columns(model)``: EASE, SKNN, the ranker)."""
    if takes_columns(model) if block is None else block:
        return np.asarray(model.item_similarity(items, columns=columns))
    return np.asarray(model.item_similarity(items))[:, columns]


def takes_columns(model) -> bool:
    """Whether ``model.item_similarity`` computes a block of ``columns`` (not whole rows only)."""
    return _takes_columns(type(model))


@functools.cache
def _takes_columns(cls: type) -> bool:
    return "columns" in inspect.signature(cls.item_similarity).parameters


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row of ``scores`` (B, I) -> indices (B, k), scores (B, k), best first.

    Entries equal to ``-inf`` are excluded items; they may fill the tail when fewer than
    ``k`` items remain. Ties break towards the lower index (deterministic), also at the k-th place.
    """
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), scores.dtype)
    torch = _torch()
    if torch is None or scores.shape[0] < 32:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]      # NaN sorts last: never best
        if not np.isnan(kth).any():     # a few rows (a served request): every item above the k-th
            part = np.empty((scores.shape[0], k), np.int64)     # value, then the first equal ones
            for r in range(scores.shape[0]):
                part[r] = _first_k(scores[r], kth[r], k)
            return _best_first(scores, part)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        # torch.topk is 1.2-4x faster than np.argpartition on (512, 14k) blocks (k 100-20,
        # measured): the evaluation hot spot
        part = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1, sorted=False).indices.numpy()
    vals = np.take_along_axis(scores, part, axis=1)
    # rows where the k-th value is tied with an item left out: redo those exactly: every item
    # above the k-th value, then the lowest-index items equal to it (sorting the row, or only its
    # tied items, cost more than the rest of a served request)
    kth = vals.min(axis=1, keepdims=True)
    tied = np.flatnonzero((scores >= kth).sum(axis=1) > k)
    for r in tied:
        part[r] = _first_k(scores[r], kth[r, 0], k)
    return _best_first(scores, part)


def _first_k(row: np.ndarray, kth, k: int) -> np.ndarray:
    """The ``k`` best of ``row`` (I,) given its k-th best value ``kth``: every item above it, then
    the lowest-index items equal to it, (k,) in index order within each group."""
    above = np.flatnonzero(row > kth)
    return np.concatenate([above, np.flatnonzero(row == kth)[:k - len(above)]])


def _best_first(scores: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns ``part`` (B, k) of ``scores`` (B, I) in order: score descending, then index."""
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


def init_from_config(config: type):
    """An ``__init__`` taking ``config``'s fields as keyword arguments with its defaults and
    storing each as an attribute (sklearn's convention: no checks in the constructor)."""
    inherited = {f.name for base in config.__mro__[1:] if dataclasses.is_dataclass(base)
                 for f in dataclasses.fields(base)}
    fields = sorted(dataclasses.fields(config), key=lambda f: f.name in inherited)   # stable: new ones first
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
    params += [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                 annotation=f.type) for f in fields]
    signature = inspect.Signature(params)

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    __init__.__doc__ = f"Hyperparameters as in ``{config.__name__}``."
    return __init__


class Recommender:
    """Base class. Subclasses implement ``_fit`` and ``score``; optionally ``item_similarity``."""

    #: registry name, e.g. "ease"
    name: ClassVar[str] = ""
    #: whether the model uses listening order (session models); informs CLI/docs only
    sequential: ClassVar[bool] = False
    #: whether ``fit`` uses item content (``content=``); models without it ignore the argument
    uses_content: ClassVar[bool] = False

    #: the hyperparameters, declared once: a frozen dataclass whose fields (name, default, type)
    #: become ``__init__``'s parameters, the model's own fields first, then those it inherits
    config: ClassVar[type | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("config") is not None and "__init__" not in cls.__dict__:
            cls.__init__ = init_from_config(cls.config)

    # ------------------------------------------------------------ params
    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters to tune, drawn from an Optuna ``trial``; empty = nothing to tune."""
        return {}

    def get_params(self) -> dict:
        """Hyperparameters as given to ``__init__``."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def set_params(self, **params) -> "Recommender":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise MusicrecError(f"{self.name}: unknown parameter {key!r}; valid: {', '.join(sorted(valid)) or 'none'}")
            setattr(self, key, value)
        return self

    # Hyperparameter checks, called from ``fit`` (constructing never validates). Each raises
    # MusicrecError naming the model, the parameter, the rule and the given value.
    def _check_int(self, key: str, low: int) -> None:
        """Require ``self.<key>`` to be an integer (not a bool) >= ``low``."""
        value = getattr(self, key)
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
            raise MusicrecError(f"{self.name}: {key} must be an integer >= {low}, got {value!r}")

    def _check_number(self, key: str, low: float | None = None, high: float | None = None,
                      low_open: bool = False) -> None:
        """Require ``self.<key>`` to be a finite int or float (not a bool) within the bounds.

        ``low`` is inclusive unless ``low_open``; ``high`` is inclusive; ``None`` means unbounded.
        """
        value = getattr(self, key)
        # plain int/float only (np.float64 is a float): params are saved to config.json
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)
              and (low is None or (value > low if low_open else value >= low))
              and (high is None or value <= high))
        if not ok:
            if low is not None and high is not None:
                rule = f"in {'(' if low_open else '['}{low}, {high}]"
            elif low is not None:
                rule = f"{'>' if low_open else '>='} {low}"
            elif high is not None:
                rule = f"<= {high}"
            else:
                rule = "that is finite"
            raise MusicrecError(f"{self.name}: {key} must be a number {rule}, got {value!r}")

    def _check_choice(self, key: str, choices) -> None:
        """Require ``self.<key>`` to be one of ``choices`` (any iterable, e.g. a tuple or dict keys)."""
        value = getattr(self, key)
        try:
            ok = value in choices
        except TypeError:   # unhashable value against a dict/set of choices
            ok = False
        if not ok:
            raise MusicrecError(f"{self.name}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ learning
    def fit(self, train: Interactions, *, valid: Callable[["Recommender"], float] | None = None,
            content=None, progress: bool = False,
            on_epoch: Callable[[int, float | None], None] | None = None,
            checkpoint_dir: str | None = None, resume: bool = False) -> "Recommender":
        """Learn from ``train``; returns self. Every model takes these keywords, so callers
        (training, tuning, benchmarks) fit any model the same way.

        Parameters
        ----------
        train : Interactions
        valid : callable(model) -> float, optional
            Higher-is-better validation metric. Deep models early-stop on it (the best epoch's
            weights are kept); the others learn in one pass and do not call it.
        content : (I, F) sparse or dense matrix, optional
            Item content over ``train``'s catalogue (tag vectors). Models with
            ``uses_content`` learn from it; the others ignore it.
        progress : bool
            Progress bar on stderr (deep models).
        on_epoch : callable(epoch, value), optional
            Called by deep models after every epoch with the validation value (None without
            ``valid``), e.g. to report to Optuna; an exception it raises propagates.
        checkpoint_dir, resume
            Deep models: write a resumable checkpoint there after every epoch, and continue
            from it (see ``models.trainer``).
        """
        if train.n_items == 0 or train.matrix.nnz == 0:
            raise MusicrecError(f"{self.name}: cannot fit on empty training data")
        if content is not None and self.uses_content:
            if content.shape[0] != train.n_items:
                raise MusicrecError(f"{self.name}: item content has {content.shape[0]} rows, "
                                    f"the catalogue {train.n_items} items")
            self.set_item_content(content)
        self.train_ = train
        self._fit(train)
        return self

    def set_item_content(self, matrix) -> "Recommender":
        """Item content vectors, shape (I, F) over the catalogue ``fit`` will get (sparse or dense);
        ``fit(content=...)`` calls it. Kept as ``content_`` (CSR, float32)."""
        m = sp.csr_matrix(matrix, dtype=np.float32)
        if not np.isfinite(m.data).all():
            raise MusicrecError(f"{self.name}: item content has NaN or infinite values")
        self.content_ = m
        return self

    def _fit(self, train: Interactions) -> None:
        raise NotImplementedError

    def score(self, histories: Histories) -> np.ndarray:
        """Scores of every item for each history, shape (B, I), float32; higher is better."""
        raise NotImplementedError

    def item_similarity(self, items: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Similarity of each item in ``items`` (B,) to every item, shape (B, I).

        With ``columns`` (C,), only those items, shape (B, C): equal to the full result's
        ``[:, columns]``. Models that accept ``columns`` compute just that block (EASE);
        callers check the signature, as overrides without it still take ``items`` only.
        """
        raise NotImplementedError(f"{self.name} has no item-item similarity")

    # Dot-product models expose both sides of their score, so serving can retrieve the top
    # items from an index (exact or approximate) instead of scoring the whole catalogue.
    def query_vectors(self, histories: Histories) -> np.ndarray:
        """Query vectors (B, D) float32 with ``score(histories) == query_vectors(histories) @ item_vectors().T``.

        Item biases are folded in: the query then ends in a constant 1 and the item vectors in
        the bias. Raises NotImplementedError for models that do not score by a dot product.
        """
        raise NotImplementedError(f"{self.name} does not score by a dot product")

    def item_vectors(self) -> np.ndarray:
        """Item vectors (I, D) float32, the other side of ``query_vectors``."""
        raise NotImplementedError(f"{self.name} does not score by a dot product")

    # ------------------------------------------------------------ using
    def _check_fitted(self) -> None:
        if not hasattr(self, "train_"):
            raise MusicrecError(f"{self.name}: call fit() before using the model")

    def recommend(self, histories: Histories, k: int = 10, exclude_seen: bool = True,
                  exclude: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item indices and scores per history, shapes (B, k).

        ``exclude_seen`` drops items in each history; ``exclude`` is an optional list of
        extra item-index arrays, one per row.
        """
        check_k(k)
        self._check_fitted()
        scores = np.array(self.score(histories), dtype=np.float32, copy=True)
        if exclude_seen:
            m = histories.matrix.tocsr()
            rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
            scores[rows, m.indices] = -np.inf
        if exclude is not None:
            for r, items in enumerate(exclude):
                scores[r, np.asarray(items, dtype=np.int64)] = -np.inf
        return topk(scores, k)

    def recommend_users(self, users, k: int = 10, exclude_seen: bool = True):
        """``recommend`` for training-user indices (B,)."""
        self._check_fitted()
        return self.recommend(self.train_.histories(users), k=k, exclude_seen=exclude_seen)

    def similar_items(self, items, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Most similar items to each of ``items`` (B,), excluding the item itself: (B, k) each."""
        check_k(k)
        self._check_fitted()
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        sims = np.array(self.item_similarity(items), dtype=np.float32, copy=True)
        sims[np.arange(len(items)), items] = -np.inf
        return topk(sims, k)

    def explain(self, history: np.ndarray, item: int, n: int = 2) -> list[tuple[int, float]]:
        """History items that most support recommending ``item``: [(item_index, weight)], best first.

        Uses ``item_similarity``; empty for models without one (e.g. popularity).
        """
        try:
            sim = np.asarray(self.item_similarity(np.array([item])))[0]
        except NotImplementedError:
            return []
        hist = np.unique(np.asarray(history, dtype=np.int64))
        hist = hist[hist != item]
        if len(hist) == 0:
            return []
        contrib = sim[hist]
        order = np.argsort(-contrib, kind="stable")[:n]
        return [(int(hist[o]), float(contrib[o])) for o in order if contrib[o] > 0]

    # ------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (names -> ndarray); ``train_`` is saved separately."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def save(self, path: str) -> None:
        """Write config.json, state.npz and interactions.npz into directory ``path`` (a local
        path or fsspec URL); each file is written atomically, config.json last."""
        self._check_fitted()
        fsio.makedirs(path)
        self.train_.save(path)
        fsio.atomic_savez(fsio.join(path, "state.npz"), self._state())
        fsio.atomic_write_json(fsio.join(path, "config.json"),
                               {"model": self.name, "musicrec_version": __version__,
                                # numpy scalars (e.g. from a search space) are stored as plain JSON numbers
                                "params": {k: v.item() if isinstance(v, np.generic) else v
                                           for k, v in self.get_params().items()}})

    def _validate(self) -> None:
        """Check hyperparameters (raise MusicrecError); run by ``load_from`` before any state is built."""

    @classmethod
    def load_from(cls, path: str, params: dict) -> "Recommender":
        """A model of this class with ``params`` and the state saved in ``path`` (local path or
        fsspec URL). The parameters, interactions.npz and state.npz are checked before use
        (:mod:`musicrec.models.validate`): a missing, unreadable or inconsistent file is a
        one-line MusicrecError naming it."""
        from musicrec.arrays import StateArrays
        from musicrec.models.validate import check_config_params, check_params

        config = fsio.join(os.fspath(path), "config.json")
        model = cls(**check_config_params(cls.name, params, cls().get_params(), config))
        check_params(model, config)
        model.train_ = Interactions.load(path)
        file = fsio.join(path, "state.npz")
        arrays = StateArrays(file, fsio.load_arrays(file))
        try:
            model._set_state(arrays)
        except MusicrecError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, RuntimeError, np.linalg.LinAlgError) as exc:
            # a check the model's _set_state lacks: still one line naming the file
            raise MusicrecError(f"{file}: does not fit this {cls.name} model ({fsio.first_line(exc)})") from None
        return model

def read_config(path: str) -> dict:
    """The ``config.json`` of model directory ``path`` (local path or fsspec URL)."""
    cfg = fsio.join(os.fspath(path), "config.json")
    try:
        present = fsio.isfile(cfg)
        config = fsio.read_json(cfg) if present else None
    except (OSError, ValueError, RecursionError) as exc:
        raise MusicrecError(f"{cfg}: unreadable model config ({fsio.first_line(exc)})") from None
    if not present:
        raise MusicrecError(f"{path}: not a model directory (no config.json)")
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise MusicrecError(f"{cfg}: does not name a model (a JSON object with a \"model\" string)")
    return config
