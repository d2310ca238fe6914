"""Model compression for the deep sequence models: knowledge distillation, fp16 embedding tables,
ONNX export of the scoring network and int8 quantisation of that network.

Distillation is a change of the training *task*, not of the network: the student is an ordinary
sequence model (e.g. a 1-layer, 64-dim SASRec) fitted with ``fit(train, distill=Distillation(teacher))``
(or :func:`distill`), and its loss becomes::

    alpha * task_loss + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(computed as the cross-entropy against the soft targets, which differs from the KL by the
teacher's entropy, a constant: same gradients, one fused kernel),

where ``task_loss`` is the student's own next-item loss (full or sampled softmax, BPR, BPR-max),
the logits are over the whole catalogue at every training position (or over the teacher's top
``top_k`` items, for catalogues too large for an (N, I) matrix per batch), and the teacher's
logits are computed on the fly under ``no_grad`` from the same windows (Hinton et al. 2015; the
T^2 keeps the soft term's gradient scale independent of T).

Serving artefacts (all arrays/ONNX + JSON, no pickles), written into a model folder:

* ``to_fp16(model)``: embedding tables stored as float16 in ``state.npz`` (scored in float32
  after loading: half the bytes on disk for what dominates a recommender's size);
* ``export_onnx(model, folder, int8=...)``: ``network.onnx`` (history window (B, L) int64 ->
  query vector (B, D) float32), ``item_vectors.npz`` and ``network.json``; with ``int8`` also
  ``network.int8.onnx``, ONNX Runtime's dynamic int8 quantisation (int8 weights of the matrix
  products and embedding gathers, activations quantised per call). A model folder holding
  ``network.json`` scores through ONNX Runtime when loaded (``models.onnx_runtime``).
"""

from __future__ import annotations

import copy
import io
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from musicrec import MusicrecError, fsio
from musicrec.models.neural import embedding_keys
from musicrec.models.onnx_runtime import ITEM_VECTORS, NETWORK_INT8, NETWORK_JSON, NETWORK_ONNX, state_digest

OPSET = 17
# teacher logits are computed in row chunks of at most this many (row, item) entries when only
# the top-k are kept, so a large catalogue never needs a full (N, I) matrix at once
TOPK_BLOCK = 1 << 24


# ---------------------------------------------------------------- distillation
@dataclass
class Distillation:
    """The distillation part of a student's loss (see the module docstring).

    Parameters
    ----------
    teacher : SequenceRecommender
        A fitted model on the same catalogue (item ids in the same order) as the student's
        training data, with ``max_len`` >= the student's.
    temperature : float > 0
        T: softens both distributions; larger T passes more of the teacher's ranking of
        unlikely items.
    alpha : float in [0, 1]
        Weight of the student's own next-item loss; ``1 - alpha`` goes to the teacher.
    top_k : int, optional
        Match the teacher only on its ``top_k`` items per position (both distributions
        renormalised over them) instead of the whole catalogue.
    """

    teacher: object
    temperature: float = 2.0
    alpha: float = 0.5
    top_k: int | None = None

    def check(self, student, train) -> None:
        """Raise MusicrecError unless ``student`` can be distilled from the teacher on ``train``."""
        from musicrec.models.neural import SequenceRecommender

        t = self.teacher
        if not isinstance(t, SequenceRecommender) or not hasattr(t, "net_"):
            name = getattr(t, "name", type(t).__name__)
            raise MusicrecError(f"teacher {name}: the teacher must be a fitted deep sequence model (sasrec, gru4rec, "
                                f"nextitnet)")
        if type(t)._queries is not SequenceRecommender._queries:
            raise MusicrecError(f"teacher {t.name}: its scores do not come from item windows; use sasrec, "
                                f"gru4rec or nextitnet")
        if not isinstance(student, SequenceRecommender) or type(student)._training_data is not \
                SequenceRecommender._training_data:
            raise MusicrecError(f"{student.name}: distillation needs a sequence model trained on item windows "
                                f"(sasrec, gru4rec, nextitnet)")
        if not np.array_equal(np.asarray(t.train_.items.ids), np.asarray(train.items.ids)):
            raise MusicrecError(f"the teacher was trained on another catalogue ({t.train_.n_items} items, the "
                                f"student's data has {train.n_items}); train both on the same split and part")
        if t.max_len < student.max_len:
            raise MusicrecError(f"the student's max_len ({student.max_len}) exceeds the teacher's ({t.max_len})")
        for key, ok, rule in (("temperature", _number(self.temperature) and self.temperature > 0, "> 0"),
                              ("alpha", _number(self.alpha) and 0 <= self.alpha <= 1, "in [0, 1]")):
            if not ok:
                raise MusicrecError(f"distillation {key} must be a number {rule}, got {getattr(self, key)!r}")
        k = self.top_k
        if k is not None and not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 2):
            raise MusicrecError(f"distillation top_k must be an integer >= 2, got {self.top_k!r}")

    def describe(self) -> dict:
        """JSON-able summary (checkpoint fingerprints, bundle metadata)."""
        return {"teacher": self.teacher.name, "teacher_params": _plain(self.teacher.get_params()),
                "temperature": float(self.temperature), "alpha": float(self.alpha),
                "top_k": None if self.top_k is None else int(self.top_k)}

    def release(self) -> None:
        """Move the teacher back to the CPU (where fitted models live) after training."""
        self.teacher.net_.to("cpu").eval()

    def loss_fn(self, student):
        """``loss(net, batch)`` for the trainer: the student's own loss mixed with the teacher term."""
        import torch
        import torch.nn.functional as F

        T, alpha = float(self.temperature), float(self.alpha)

        def loss(net, batch):
            # the task loss runs the network once on the windows; a forward hook keeps those
            # hidden states so the teacher term needs no second student pass
            captured = []
            handle = net.register_forward_hook(lambda m, args, out: captured.append(out) if not captured else None)
            try:
                task = student._loss(net, batch)
            finally:
                handle.remove()
            if not captured:
                raise MusicrecError(f"{student.name}: its loss does not run the network on the windows")
            inputs, targets = batch["seq"][:, :-1], batch["seq"][:, 1:]
            mask = targets > 0
            h = captured[0][mask]                                   # (N, D) student hidden states
            with torch.no_grad():
                t_logits, idx = self._teacher_logits(inputs, mask, scale=1.0 / T)
                target = torch.softmax(t_logits.float(), dim=1)
            s_logits = _logits(net, h, inputs, mask, idx, scale=1.0 / T)
            # cross-entropy against the teacher's soft targets = KL(teacher || student) + the
            # teacher's entropy, a constant: the same gradients as the KL in one fused kernel
            # (the (N, I) passes are what distillation costs over the full catalogue)
            soft = F.cross_entropy(s_logits.float(), target)
            return alpha * task + (1.0 - alpha) * T * T * soft

        return loss

    def _teacher_logits(self, inputs, mask, scale: float = 1.0):
        """Teacher logits (times ``scale``) at the student's training positions: ((N, I), None),
        or with ``top_k`` ((N, k) logits, (N, k) item indices)."""
        import torch
        import torch.nn.functional as F

        net = self.teacher.net_
        if next(net.parameters()).device != inputs.device:
            net.to(inputs.device)
        net.eval()
        # left-pad the windows to the teacher's length: position p of the student is position
        # p + pad of the teacher, and both see the same plays up to it (causal networks)
        pad = self.teacher.max_len - inputs.shape[1]
        inp, msk = F.pad(inputs, (pad, 0)), F.pad(mask, (pad, 0))
        h = net(inp)[msk]
        if self.top_k is None:
            return _logits(net, h, inp, msk, None, scale=scale), None
        n_items = self.teacher.train_.n_items
        k = min(int(self.top_k), n_items)
        rows = msk.nonzero()
        step = max(1, TOPK_BLOCK // n_items)
        vals, idx = [], []
        for lo in range(0, len(h), step):
            full = _logits(net, h[lo:lo + step], inp, None, None, rows=rows[lo:lo + step], scale=scale)
            top = torch.topk(full, k, dim=1)
            vals.append(top.values)
            idx.append(top.indices)
        return torch.cat(vals), torch.cat(idx)


def _logits(net, h, inputs, mask, idx, rows=None, scale: float = 1.0):
    """Logits (N, I) of hidden states ``h`` (N, D), or (N, k) at item indices ``idx`` (N, k),
    times ``scale`` (1 / T; applied to ``h`` where that is the same, an (N, D) pass instead of (N, I)).

    Networks with a ``score_all`` head (the repeat head) read the session up to each position
    (``rows``: (N, 2) row/position of each hidden state, default ``mask.nonzero()``)."""
    import torch

    from musicrec.models.neural import _prefix_context

    score_all = getattr(net, "score_all", None)
    if score_all is not None:
        ctx = _prefix_context(inputs, mask.nonzero() if rows is None else rows)
        full = score_all(h, ctx) * scale
        return full if idx is None else full.gather(1, idx)
    h = h * scale if scale != 1.0 else h
    emb = net.item_embeddings()
    if idx is None:
        return h @ emb.T
    return torch.einsum("nd,nkd->nk", h, emb[idx])


def distill(student, teacher, train, temperature: float = 2.0, alpha: float = 0.5, top_k: int | None = None,
            **fit_kwargs):
    """Fit ``student`` on ``train`` with ``teacher``'s soft targets; returns the student.

    ``fit_kwargs`` go to ``student.fit`` (``valid``, ``checkpoint_dir``, ``progress``, ...).
    """
    return student.fit(train, distill=Distillation(teacher, temperature, alpha, top_k), **fit_kwargs)


# ---------------------------------------------------------------- fp16 embeddings
def to_fp16(model):
    """A copy of ``model`` whose embedding tables are rounded to float16 and saved as float16.

    Scoring stays float32 (the rounded values, upcast); only storage shrinks. The original
    model is left untouched.
    """
    import torch

    _check_neural(model)
    out = copy.copy(model)                  # shares the (read-only) training data
    out.__dict__.pop("scorer_", None)       # an ONNX export belongs to the original weights
    out.net_ = copy.deepcopy(model.net_)
    state = out.net_.state_dict()
    with torch.no_grad():
        for key in embedding_keys(out.net_):
            state[key].copy_(state[key].to(torch.float16).to(state[key].dtype))
    out.fp16_ = True
    return out


# ---------------------------------------------------------------- ONNX export
def check_exportable(model) -> None:
    """Raise MusicrecError unless ``model`` scores as (history window -> query) @ item vectors."""
    from musicrec.models.neural import SequenceRecommender

    _check_neural(model)
    if not isinstance(model, SequenceRecommender) or type(model)._queries is not SequenceRecommender._queries:
        raise MusicrecError(f"{model.name}: only sasrec, gru4rec and nextitnet export to ONNX (their query is the "
                            f"last hidden state of a padded window)")
    if hasattr(model.net_, "score_all"):
        raise MusicrecError(f"{model.name}: a repeat head does not score by a dot product; export a model "
                            f"trained with repeat_head=false")


def export_onnx(model, folder: str, int8: bool = False, check: bool = True) -> dict:
    """Write ``network.onnx`` (+ ``network.int8.onnx``), ``item_vectors.npz`` and ``network.json``
    into ``folder`` (any fsspec URL); returns the network.json contents.

    The served network (``network.json["serve"]``) is the int8 one when ``int8``. With
    ``check`` the fp32 export is compared with torch on sample windows (max abs difference of
    the query vectors, stored as ``max_abs_diff``).
    """
    import torch

    blob, query_net, sample = _network(model)
    L = int(model.max_len)
    items = model.item_vectors()
    vectors = items.astype(np.float16) if getattr(model, "fp16_", False) else items
    meta = {"format": 1, "model": model.name, "input": "seq", "output": "query", "max_len": L,
            "dim": int(items.shape[1]), "n_items": int(items.shape[0]), "state_sha256": state_digest(model),
            "item_vectors": ITEM_VECTORS, "files": {"fp32": NETWORK_ONNX}, "serve": NETWORK_ONNX, "opset": OPSET,
            "torch": torch.__version__}
    if check:
        meta["max_abs_diff"] = _checked_diff(model, blob, query_net, sample)
    fsio.makedirs(folder)
    fsio.atomic_write(fsio.join(folder, NETWORK_ONNX), lambda fh: fh.write(blob))
    fsio.atomic_savez(fsio.join(folder, ITEM_VECTORS), {"item_vectors": vectors})
    if int8:
        q8 = quantize_int8(blob)
        fsio.atomic_write(fsio.join(folder, NETWORK_INT8), lambda fh: fh.write(q8))
        meta["files"]["int8"] = NETWORK_INT8
        meta["serve"] = NETWORK_INT8
    # network.json last: its presence is what makes a loaded model use the files above
    fsio.atomic_write_json(fsio.join(folder, NETWORK_JSON), meta)
    return meta


def memory_scorer(model, threads: int = 1):
    """An ONNX Runtime scorer (``models.onnx_runtime.OnnxScorer``) of ``model``'s network, exported
    in memory and checked against torch like ``export_onnx``; nothing is written. ``musicrec
    serve`` gives it to a deep model whose folder has no export (0.3 s at load)."""
    import torch

    from musicrec.models.onnx_runtime import OnnxScorer

    # a padding-free network (GRU4Rec, NextItNet) gives the same state for a window cut to its
    # plays, and one that counts padding (SASRec) for a window cut to its plays plus one padding
    # column; so it is exported with a dynamic length and fed only those (a 1-5 play session
    # instead of a 50-play window)
    counts = bool(getattr(model, "counts_padding", False))
    trim = counts or bool(getattr(model, "padding_free", False))
    blob, query_net, sample = _network(model, dynamic_length=trim)
    scorer = OnnxScorer(blob, model.item_vectors(), threads=threads, name="exported at load", trim=trim,
                        pad_columns=int(counts))
    reference = _query_net(query_net.net)       # the network as trained: full windows, torch's attention
    windows = [sample]
    if trim:
        short = sample.clone()
        short[:, :-3] = 0
        short[2, -2:] = 0
        short[3, -1] = 1                     # an all-padding row would not be cut: give it a play
        windows.append(short)
    # through the scorer itself (it cuts the windows; torch reads them whole)
    for w in windows:
        with torch.inference_mode():
            diff = float(np.abs(scorer.queries(w.numpy()) - reference(w).numpy()).max())
        if diff > 1e-3:
            raise MusicrecError(f"{model.name}: the ONNX export differs from torch by {diff:.3g}")
    return scorer


def _network(model, dynamic_length: bool = False):
    """(ONNX bytes, torch query network, sample windows) of an exportable ``model``; with
    ``dynamic_length`` the network accepts windows of any length, not only ``max_len`` (cut
    from ``max_len``, for a network that counts its padding)."""
    import torch

    check_exportable(model)
    L = int(model.max_len)
    counts = dynamic_length and getattr(model, "counts_padding", False)
    query_net = _query_net(copy.deepcopy(model.net_).to("cpu").eval(), L if counts else None)
    rng = np.random.default_rng(0)
    sample = torch.from_numpy(rng.integers(1, model.train_.n_items + 1, size=(8, L), dtype=np.int64))
    sample[1, : L // 2] = 0                    # padded windows, like short histories
    sample[2, :-1] = 0
    sample[3, :] = 0
    return _export_bytes(query_net, sample, dynamic_length), query_net, sample


def _checked_diff(model, blob: bytes, query_net, sample) -> float:
    """Max abs difference of the ONNX and torch query vectors on ``sample``; MusicrecError above 1e-3."""
    diff = _max_diff(blob, query_net, sample)
    if diff > 1e-3:
        raise MusicrecError(f"{model.name}: the ONNX export differs from torch by {diff:.3g}")
    return diff


def quantize_int8(onnx_bytes: bytes) -> bytes:
    """ONNX Runtime dynamic int8 quantisation of an ONNX model (bytes in, bytes out)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="musicrec-onnx-") as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as fh:
            fh.write(onnx_bytes)
        # the quantiser logs advice on the root logger for every call; the result is checked by callers
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        with open(dst, "rb") as fh:
            return fh.read()


def remove_onnx(folder: str) -> None:
    """Delete the ONNX files of a model folder (network.json first, so no reader sees half a set)."""
    for name in (NETWORK_JSON, NETWORK_ONNX, NETWORK_INT8, ITEM_VECTORS):
        url = fsio.join(folder, name)
        if fsio.exists(url):
            fs, path = fsio.filesystem(url)
            fs.rm(path)


def _query_net(net, full_len: int | None = None):
    """``net`` wrapped as (B, L) windows -> (B, D) last hidden states (what ``_queries`` yields);
    with ``full_len`` the windows may be cut from that length (``net(seq, full_len)``)."""
    from torch import nn

    class QueryNet(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.net = inner

        def forward(self, seq):
            return (self.net(seq) if full_len is None else self.net(seq, full_len))[:, -1, :]

    return QueryNet(net).eval()


def _export_bytes(query_net, sample, dynamic_length: bool = False) -> bytes:
    """The ONNX bytes of ``query_net`` with a dynamic batch axis (and window length). The
    TorchScript exporter is tried first (fast, quiet); the dynamo exporter when it is gone or fails."""
    import warnings

    import torch

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(query_net, (sample,), buf, input_names=["seq"], output_names=["query"],
                              dynamic_axes={"seq": {0: "batch", **({1: "length"} if dynamic_length else {})},
                                            "query": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)
        return buf.getvalue()
    except Exception:  # noqa: BLE001 - any failure of the legacy exporter: try the new one
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(query_net, (sample,), input_names=["seq"], output_names=["query"],
                                    dynamic_shapes=({0: torch.export.Dim("batch"),
                                                     **({1: torch.export.Dim("length")} if dynamic_length else {})},),
                                    dynamo=True, verbose=False)
    return program.model_proto.SerializeToString()


def _max_diff(blob: bytes, query_net, sample) -> float:
    import torch

    from musicrec.models.onnx_runtime import session

    sess = session(blob, threads=1)
    got = sess.run(None, {sess.get_inputs()[0].name: sample.numpy()})[0]
    with torch.inference_mode():
        want = query_net(sample).numpy()
    return float(np.abs(got - want).max())


# ---------------------------------------------------------------- helpers
def _check_neural(model) -> None:
    from musicrec.models.neural import NeuralRecommender

    if not isinstance(model, NeuralRecommender):
        raise MusicrecError(f"{model.name}: not a deep model; compression applies to sasrec, gru4rec, nextitnet "
                            f"and the other PyTorch models")
    model._check_fitted()


def _number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and bool(np.isfinite(value))


def _plain(params: dict) -> dict:
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
