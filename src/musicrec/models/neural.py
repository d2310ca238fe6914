"""What every PyTorch model shares: training through ``models.trainer``, npz persistence, and
(for sequence models) padded windows, next-item losses and scoring of the last position.

A model file defines a network (``nn.Module``) that only computes hidden states and scores,
and an estimator subclass that names its hyperparameters and builds that network. The loss
(full softmax, sampled softmax with in-batch + popularity negatives, or BPR) is the training
task and lives here, not in the network.

Sequence networks follow one protocol:

* ``forward(seq)``: ``seq`` (B, L) int64 item indices shifted by +1 (0 = padding, left-padded so
  position L-1 is the most recent) -> hidden states (B, L, D), causal (position t sees <= t);
* ``item_embeddings()`` -> (I, D) output embeddings of items 0..I-1;
* optionally ``score_all(hidden (N, D), seq (N, L)) -> (N, I)`` logits when scoring needs the
  session itself (e.g. a repeat/copy head); default ``hidden @ item_embeddings().T``.

Every estimator scores through ``_queries`` (query vectors per batch of histories) and
``_items`` (item vectors): ``score = query @ items.T`` unless the network has a ``score_all``
head, so the vectors that serving puts in an index (``query_vectors``/``item_vectors``) are
the ones that score.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import numpy as np

from musicrec.features.interactions import Histories, Interactions
from musicrec.models.base import Recommender
from musicrec.models.trainer import Trainer, TrainerConfig, TrainingConfig, pick_device, seed_everything

LOSSES = ("ce", "sampled", "bpr")
NORMS = ("layer", "batch", "none")


class NeuralRecommender(Recommender):
    """Base of the PyTorch estimators. Subclasses implement ``_build_net``, ``_training_data``,
    ``_loss`` and ``score``."""

    def fit(self, train: Interactions, *, valid: Callable[["Recommender"], float] | None = None,
            content=None, progress: bool = False,
            on_epoch: Callable[[int, float | None], None] | None = None,
            checkpoint_dir: str | None = None, resume: bool = False,
            distill=None) -> "NeuralRecommender":
        """Learn from ``train``; returns self. The keywords are every model's (see
        ``Recommender.fit``), plus:

        distill : models.compress.Distillation, optional
            Learn from a fitted teacher's soft targets as well as from the next items (knowledge
            distillation; sequence models only). See ``models.compress``.

        ``resume`` needs a checkpoint from the same hyperparameters (``epochs`` and ``patience``
        may differ) and training data.
        """
        if distill is not None:
            distill.check(self, train)
        self._valid, self._on_epoch = valid, on_epoch
        self._checkpoint_dir, self._resume, self._progress = checkpoint_dir, resume, progress
        self._distill = distill
        try:
            return super().fit(train, content=content)
        finally:
            self._valid = self._on_epoch = self._checkpoint_dir = self._distill = None
            self._resume = self._progress = False
            if distill is not None:
                distill.release()

    def _trainer_config(self) -> TrainerConfig:
        # grad_clip / amp are optional hyperparameters a subclass may expose
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingConfig)}
        return TrainerConfig(**shared, grad_clip=getattr(self, "grad_clip", TrainerConfig.grad_clip),
                             amp=getattr(self, "amp", TrainerConfig.amp), progress=getattr(self, "_progress", False),
                             checkpoint_dir=getattr(self, "_checkpoint_dir", None),
                             resume=getattr(self, "_resume", False))

    def _check_training_params(self) -> None:
        self._check_int("epochs", 1)
        self._check_int("batch_size", 1)
        self._check_number("learning_rate", low=0, low_open=True)
        self._check_number("weight_decay", low=0)
        self._check_int("patience", 1)
        self._check_int("seed", 0)
        self._check_choice("device", ("auto", "cpu", "cuda"))

    def _fit(self, train: Interactions) -> None:
        import torch

        self._validate()
        seed_everything(self.seed)
        self.device_ = pick_device(self.device)
        # new weights: an ONNX scorer or fp16 storage of earlier weights no longer applies
        self.__dict__.pop("scorer_", None)
        self.__dict__.pop("fp16_", None)
        self.net_ = self._build_net(train.n_items, train.n_users)
        self._sampler = torch.Generator(device="cpu").manual_seed(self.seed + 1)
        data = self._training_data(train)
        valid = getattr(self, "_valid", None)
        # every generator the loss samples with (``_sampler`` and any a subclass adds) goes into
        # checkpoints, so a resumed run draws the same negatives as an uninterrupted one
        generators = {k: v for k, v in vars(self).items() if isinstance(v, torch.Generator)}
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in self.get_params().items()
                  if k not in ("epochs", "patience", "device")}
        fingerprint = {"model": self.name, "params": params, "n_items": train.n_items, "n_users": train.n_users}
        distill = getattr(self, "_distill", None)
        if distill is not None:
            fingerprint["distill"] = distill.describe()
        loss_fn = self._loss if distill is None else distill.loss_fn(self)
        result = Trainer(self._trainer_config()).fit(
            self.net_, loss_fn, data, validate=(lambda: valid(self)) if valid else None,
            on_epoch=getattr(self, "_on_epoch", None), extra_rng=generators, fingerprint=fingerprint)
        self.net_.to("cpu").eval()
        self.device_ = pick_device("cpu")
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch

    # ------------------------------------------------------------ subclass API
    def _validate(self) -> None:
        """Check hyperparameters (raise MusicrecError)."""
        self._check_training_params()

    def _build_net(self, n_items: int, n_users: int):
        raise NotImplementedError

    def _training_data(self, train: Interactions) -> dict:
        raise NotImplementedError

    def _loss(self, net, batch: dict):
        raise NotImplementedError

    def _queries(self, histories: Histories, batch_size: int, items=None):
        """Yield ``(first row, query (b, D) tensor, context)`` per batch of ``histories``, on the
        model's device; ``context`` is what a ``score_all`` head reads (the padded sessions).
        ``items``: the (I, D) item vectors when the caller has them (a model whose queries are
        built from item vectors then does not compute them again)."""
        raise NotImplementedError

    def _items(self):
        """Item vectors (I, D) tensor, on the model's device."""
        raise NotImplementedError

    # ------------------------------------------------------------ scoring
    def score(self, histories: Histories, batch_size: int = 1024) -> np.ndarray:
        """Scores (B, I): ``query @ items.T``, or the network's ``score_all`` head when it has one."""
        import torch

        self._check_fitted()
        out = np.empty((len(histories), self.train_.n_items), dtype=np.float32)
        score_all = getattr(self.net_, "score_all", None)
        with torch.inference_mode():
            items = self._items()
            for lo, q, context in self._queries(histories, batch_size, items):
                logits = q @ items.T if score_all is None else score_all(q, context)
                out[lo:lo + len(q)] = logits.float().cpu().numpy()
        return out

    def _check_dot_product(self) -> None:
        self._check_fitted()
        if hasattr(self.net_, "score_all"):
            raise NotImplementedError(f"{self.name}: the repeat head does not score by a dot product")

    def query_vectors(self, histories: Histories, batch_size: int = 1024) -> np.ndarray:
        """Query vectors (B, D) float32: ``score(histories) == query_vectors(histories) @ item_vectors().T``."""
        import torch

        self._check_dot_product()
        # no item vectors are built here: serving calls this once per request, and Mult-VAE's
        # (I, H + 1) table or the two-tower item tower cost far more than the query itself; a
        # model whose queries read item vectors builds only the ones it needs
        out = None
        with torch.inference_mode():
            for lo, q, _ in self._queries(histories, batch_size):
                if out is None:
                    out = np.empty((len(histories), q.shape[1]), dtype=np.float32)
                out[lo:lo + len(q)] = q.float().cpu().numpy()
            if out is None:                     # no histories
                out = np.empty((0, self._items().shape[1]), dtype=np.float32)
        return out

    def item_vectors(self) -> np.ndarray:
        """Item vectors (I, D) float32 (a copy: the network's weights stay untouched)."""
        import torch

        self._check_dot_product()
        with torch.inference_mode():
            return np.array(self._items().float().cpu().numpy(), dtype=np.float32, copy=True)

    # ------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        if getattr(self, "fp16_", False):       # compressed storage (models.compress.to_fp16)
            for key in embedding_keys(self.net_):
                state[f"net.{key}"] = state[f"net.{key}"].astype(np.float16)
        state["best_epoch"] = np.array(self.best_epoch_)
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        from musicrec.models.validate import check_state_shapes

        self.device_ = pick_device("cpu")
        # config.json's sizes were checked against caps (validate.check_params) before this build
        self.net_ = self._build_net(self.train_.n_items, self.train_.n_users)
        # arrays: a validate.StateArrays; every weight checked against the built network first;
        # float16 tables (stored compressed) are scored in float32
        self.net_.load_state_dict(check_state_shapes(arrays.file, self.net_, arrays))
        self.net_.eval()
        if any(v.dtype == np.float16 for v in arrays.values()):
            self.fp16_ = True
        best = arrays.array("best_epoch", "i", ndim=0) if "best_epoch" in arrays else np.array(0)
        self.best_epoch_ = int(best)
        self.history_ = []

    @classmethod
    def load_from(cls, path: str, params: dict) -> "NeuralRecommender":
        model = super().load_from(path, params)
        from musicrec import MusicrecError, fsio
        from musicrec.models.onnx_runtime import NETWORK_JSON, attach

        # scores through ONNX Runtime when the folder has an export; a damaged export is a
        # one-line error naming it (ONNX Runtime's own errors, InvalidProtobuf, Fail, ..., derive
        # from Exception only, so nothing narrower catches them)
        file = fsio.join(path, NETWORK_JSON)
        try:
            attach(model, path)
        except MusicrecError:
            raise
        except Exception as exc:  # noqa: BLE001 - see above
            raise MusicrecError(f"{file}: unusable ONNX export ({type(exc).__name__}: {fsio.first_line(exc)}); "
                                "export it again (`musicrec compress export`) or delete it") from None
        scorer = getattr(model, "scorer_", None)
        items = getattr(scorer, "items", None)
        if items is not None and (items.ndim != 2 or items.shape[0] != model.train_.n_items):
            raise MusicrecError(f"{file}: the exported item vectors have shape {tuple(items.shape)}, expected "
                                f"({model.train_.n_items}, *) for interactions.npz")
        return model

    @property
    def scorer(self) -> str:
        """What computes the query vectors: "torch" or "onnxruntime:<file>"."""
        onnx = getattr(self, "scorer_", None)
        return "torch" if onnx is None else f"{onnx.kind}:{onnx.name}"

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net_.parameters())


class SequenceRecommender(NeuralRecommender):
    """Base of next-item sequence models (GRU4Rec, NextItNet, Caser, SASRec).

    Training examples are windows of ``max_len + 1`` consecutive items of each training
    session (or each user's history when ``train_on="users"``), left-padded; every position
    predicts its successor. Subclasses set ``max_len``, ``loss``, ``n_negatives``,
    ``train_on`` and the TrainingConfig fields as attributes in ``__init__``.
    """

    sequential = True
    #: the network's state after a history does not depend on how much left padding precedes
    #: it, so scoring cuts a batch's windows to its longest history (one short session: a few
    #: positions instead of ``max_len``)
    padding_free: ClassVar[bool] = False
    #: the network reads padding, but a window cut to its longest history plus one padding column
    #: gives the same states when told the full length (``net_(seq, full_len)``): ONNX serving cuts so
    counts_padding: ClassVar[bool] = False

    # ------------------------------------------------------------ data
    def _sequences(self, train: Interactions) -> list:
        if self.train_on == "users":
            return train.user_sequences
        return [train.session(s) for s in range(train.n_sessions)]

    def _training_data(self, train: Interactions) -> dict:
        import torch

        windows = make_windows(self._sequences(train), self.max_len + 1)
        counts = np.bincount(train.session_items if self.train_on != "users" else np.concatenate(train.user_sequences),
                             minlength=train.n_items).astype(np.float64)
        # GRU4Rec-style popularity sampling, damped (alpha = 0.75) so the tail gets negatives too
        probs = np.power(counts + 1.0, 0.75)
        self._neg_probs = torch.tensor(probs / probs.sum(), dtype=torch.float32)
        return {"seq": torch.from_numpy(windows)}

    # ------------------------------------------------------------ the task
    def _loss(self, net, batch: dict):
        import torch
        import torch.nn.functional as F

        seq = batch["seq"]
        inputs, targets = seq[:, :-1], seq[:, 1:]
        hidden = net(inputs)                                   # (B, L, D)
        mask = targets > 0
        h = hidden[mask]                                       # (N, D)
        t = targets[mask] - 1                                  # (N,) item indices
        if self.loss == "ce":
            if hasattr(net, "score_all"):
                rows = mask.nonzero()
                # the session as seen at each position: inputs up to and including it
                ctx = _prefix_context(inputs, rows)
                logits = net.score_all(h, ctx)
            else:
                logits = h @ net.item_embeddings().T
            return F.cross_entropy(logits, t)
        emb = net.item_embeddings()
        n_neg = self.n_negatives
        sampled = torch.multinomial(self._neg_probs, n_neg, replacement=True, generator=self._sampler).to(h.device)
        if self.loss == "sampled":
            # candidates: every target in the batch (in-batch negatives) + popularity samples
            cands, inverse = torch.unique(torch.cat([t, sampled]), return_inverse=True)
            logits = h @ emb[cands].T                          # (N, C)
            return F.cross_entropy(logits, inverse[: len(t)])
        neg = sampled[torch.randint(0, n_neg, (len(t),), generator=self._sampler).to(h.device)]
        pos_s = (h * emb[t]).sum(-1)
        neg_s = (h * emb[neg]).sum(-1)
        return -F.logsigmoid(pos_s - neg_s).mean()

    # ------------------------------------------------------------ scoring
    def _queries(self, histories: Histories, batch_size: int, items=None):
        """The hidden state after each history's last ``max_len`` plays, per batch."""
        import torch

        onnx = getattr(self, "scorer_", None)
        length = self.max_len
        # an ONNX export has a fixed window; a copy head reads the padded session as it is
        if self.padding_free and onnx is None and not hasattr(self.net_, "score_all"):
            length = max(1, min(self.max_len, max((len(s) for s in histories.sequences), default=0)))
        x = torch.from_numpy(left_pad(histories.sequences, length))
        for lo in range(0, len(x), batch_size):
            if onnx is not None:                 # an ONNX export of this network (models.onnx_runtime)
                xb = x[lo:lo + batch_size]
                yield lo, torch.from_numpy(onnx.queries(xb.numpy())), xb
                continue
            xb = x[lo:lo + batch_size].to(self.device_)
            yield lo, self.net_(xb)[:, -1, :], xb

    def _items(self):
        onnx = getattr(self, "scorer_", None)
        if onnx is None:
            return self.net_.item_embeddings()
        import torch

        return torch.from_numpy(onnx.items)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of output item embeddings, (B, I)."""
        import torch

        with torch.inference_mode():
            emb = torch.nn.functional.normalize(self.net_.item_embeddings(), dim=1)
            return (emb[torch.as_tensor(items)] @ emb.T).numpy().astype(np.float32)


def embedding_keys(net) -> list[str]:
    """State-dict names of every embedding table of ``net`` (item, position, user embeddings)."""
    from torch import nn

    return [f"{name}.weight" for name, m in net.named_modules() if isinstance(m, nn.Embedding)]


def left_pad(seqs: list, length: int) -> np.ndarray:
    """(B, length) int64 of item indices + 1, right-aligned, 0 = padding."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = np.asarray(s, dtype=np.int64)[-length:]
        if len(s):
            out[r, length - len(s):] = s + 1
    return out


def make_windows(seqs: list, width: int) -> np.ndarray:
    """Cut each sequence (>= 2 items) into windows of ``width`` consecutive items (the last
    window ends at the sequence end; earlier ones step back by ``width - 1`` so every
    transition is predicted exactly once), left-padded with 0 and items shifted by +1."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    keep = lengths >= 2
    if not keep.any():
        return np.zeros((0, width), dtype=np.int64)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s, k in zip(seqs, keep) if k]) + 1
    lengths = lengths[keep]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ends = starts + lengths
    step = width - 1
    # windows per sequence: transitions (len - 1) split into chunks of `step`
    n_win = (lengths - 2) // step + 1
    seq_of = np.repeat(np.arange(len(lengths)), n_win)
    k = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    win_end = ends[seq_of] - k * step                     # exclusive end of each window
    win_start = np.maximum(win_end - width, starts[seq_of])
    cols = np.arange(width)
    pos = win_end[:, None] - width + cols[None, :]
    valid = pos >= win_start[:, None]
    out = np.where(valid, flat[np.clip(pos, 0, len(flat) - 1)], 0)
    return out.astype(np.int64)


def _prefix_context(inputs, rows):
    """For each (row, position) in ``rows`` (N, 2), the inputs with positions after it zeroed
    and re-right-aligned: (N, L), so a copy head only sees the session up to that point."""
    import torch

    L = inputs.shape[1]
    r, p = rows[:, 0], rows[:, 1]
    shift = (L - 1 - p)                                       # move position p to the end
    cols = torch.arange(L, device=inputs.device)[None, :] - shift[:, None]
    ctx = torch.where(cols >= 0, inputs[r[:, None], cols.clamp(min=0)], torch.zeros_like(cols))
    return ctx
