"""Scoring a deep sequence model through ONNX Runtime instead of torch.

A model folder with ``network.json`` (written by ``models.compress.export_onnx`` or
``musicrec compress export``) holds the query network as ONNX and the item vectors beside it.
``attach(model, folder)``, called when a deep model is loaded, gives the model an
:class:`OnnxScorer`; its ``_queries``/``_items`` then run the ONNX network (CPU execution
provider) and read those vectors, so ``score``, ``query_vectors`` and everything built on them
(evaluation, ``musicrec serve``) use ONNX Runtime.

The network is used only when ``network.json``'s weight digest matches the loaded weights: a
model retrained into the same folder never scores through a stale export (a warning says so).

Environment:

* ``MUSICREC_ONNX``: ``auto`` (default: the network ``network.json`` names to serve), ``fp32``,
  ``int8`` (pick that file), or ``off`` (always torch);
* ``MUSICREC_ONNX_THREADS``: intra-op threads of each ONNX Runtime session (default 1: a serving
  process answers many small requests at once and scales by workers, not threads).
"""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np

from musicrec import MusicrecError, fsio

MODES = ("auto", "fp32", "int8", "off")
NETWORK_JSON = "network.json"
NETWORK_ONNX = "network.onnx"
NETWORK_INT8 = "network.int8.onnx"
ITEM_VECTORS = "item_vectors.npz"


def session(model: bytes, threads: int = 1):
    """An ONNX Runtime CPU inference session over ONNX ``model`` bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3                      # errors only: no optimiser chatter on stderr
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """Query vectors from an ONNX network plus fixed item vectors.

    Parameters
    ----------
    network : bytes
        ONNX model: input (B, L) int64 windows (item indices + 1, 0 = padding, left-padded),
        output (B, D) float32 query vectors.
    item_vectors : ndarray, shape (I, D)
        Stored float32 or float16; kept as float32 (scores are float32).
    threads : int
        Intra-op threads of the session.
    name : str
        The file the network came from (reported by ``kind``/health).
    trim : bool
        The network takes windows of any length and gives the state of the full window for a
        cut one: leading all-padding columns are cut before it runs.
    pad_columns : int
        All-padding columns kept when cutting (1 for a network that counts its padding, SASRec).
    """

    kind = "onnxruntime"

    def __init__(self, network: bytes, item_vectors: np.ndarray, threads: int = 1, name: str = "",
                 trim: bool = False, pad_columns: int = 0):
        self.session = session(network, threads)
        self.input = self.session.get_inputs()[0].name
        self.items = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.name = name
        self.trim = trim
        self.pad_columns = pad_columns

    def queries(self, windows: np.ndarray) -> np.ndarray:
        """(B, L) int64 windows -> (B, D) float32 query vectors. With ``trim`` (a network exported
        with a dynamic length) the columns that are padding in every row are cut first, all but
        ``pad_columns`` of them."""
        if self.trim and windows.shape[1] > 1:
            used = np.flatnonzero(np.any(windows != 0, axis=0))
            start = used[0] if len(used) else windows.shape[1] - 1
            windows = windows[:, max(0, start - self.pad_columns):]
        return self.session.run(None, {self.input: np.ascontiguousarray(windows, dtype=np.int64)})[0]


def load(folder: str, meta: dict | None = None, mode: str | None = None, threads: int | None = None) -> OnnxScorer:
    """The scorer of a model folder holding ``network.json``."""
    meta = meta if meta is not None else fsio.read_json(fsio.join(folder, NETWORK_JSON))
    mode = mode or os.environ.get("MUSICREC_ONNX", "auto")
    if mode not in MODES:
        raise MusicrecError(f"MUSICREC_ONNX must be one of {', '.join(MODES)}, got {mode!r}")
    name = meta["serve"] if mode == "auto" else meta["files"].get(mode)
    if name is None:
        raise MusicrecError(f"{folder}: no {mode} ONNX network (have: {', '.join(meta['files'])})")
    if threads is None:
        raw = os.environ.get("MUSICREC_ONNX_THREADS", "1")
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise MusicrecError(f"MUSICREC_ONNX_THREADS must be a positive integer, got {raw!r}")
        threads = int(raw)
    vectors_name = meta.get("item_vectors")
    for file in (name, vectors_name):       # files of this folder only: never ../ or an absolute path
        if not isinstance(file, str) or not file or file in (".", "..") or "/" in file or "\\" in file:
            raise MusicrecError(f"{fsio.join(folder, NETWORK_JSON)}: {file!r} is not a file name in the folder")
    with fsio.open_file(fsio.join(folder, name), "rb") as fh:
        network = fh.read()
    vectors = fsio.load_arrays(fsio.join(folder, vectors_name))["item_vectors"]
    return OnnxScorer(network, vectors, threads=threads, name=name)


def attach(model, folder: str) -> None:
    """Give a just-loaded deep model the ONNX scorer of ``folder`` when it has a matching one."""
    url = fsio.join(folder, NETWORK_JSON)
    if os.environ.get("MUSICREC_ONNX", "auto") == "off" or not fsio.exists(url):
        return
    meta = fsio.read_json(url)
    if meta.get("state_sha256") != state_digest(model):
        warnings.warn(f"{folder}: {NETWORK_JSON} was exported from other weights (the model was retrained?); "
                      f"scoring with torch. Run `musicrec compress export {folder}` again.", stacklevel=2)
        return
    if meta.get("n_items") != model.train_.n_items or meta.get("max_len") != getattr(model, "max_len", None):
        warnings.warn(f"{folder}: {NETWORK_JSON} does not fit this model; scoring with torch", stacklevel=2)
        return
    model.scorer_ = load(folder, meta)


def state_digest(model) -> str:
    """sha256 of the network's weights (float32 bytes, by name): ties an exported ONNX network
    to the exact weights it was exported from."""
    h = hashlib.sha256()
    for key, value in sorted(model.net_.state_dict().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().float().numpy()).tobytes())
    return h.hexdigest()
