"""Checkpoints of a training run (see ``models.trainer``): two files per epoch, no pickles.

``ckpt-EEEE.npz`` holds the weights, the best weights, AdamW's moments and every RNG state (as
uint8 arrays); ``checkpoint.json`` holds the epoch, best value/epoch, stale count, history, a
fingerprint of the run and the npz's name. The npz is written first and the JSON, renamed into
place last, names it: that rename is the single commit point, so a kill at any moment leaves the
previous complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from musicrec import MusicrecError

CHECKPOINT = "checkpoint.json"
FORMAT = 1                       # version of the checkpoint layout


@dataclass
class Run:
    """Where a run stands after ``epoch`` completed epochs (what a checkpoint holds)."""

    epoch: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict | None = None   # name -> tensor of the best epoch's weights
    stale: int = 0
    stopped: bool = False            # early stopping fired
    history: list = field(default_factory=list)


def fingerprint(cfg, net, data: dict, rngs: dict, model: dict | None, validated: bool) -> dict:
    """What must match for a checkpoint to continue this run (epochs and patience may change)."""
    digest = hashlib.sha256()
    for k in sorted(data):
        digest.update(k.encode())
        digest.update(np.ascontiguousarray(data[k].detach().cpu().numpy()).tobytes())
    # ordered by how telling a mismatch is: the first difference is the one reported
    fp = {"model": model,
          "trainer": {**{k: getattr(cfg, k) for k in ("batch_size", "learning_rate", "weight_decay", "seed",
                                                       "grad_clip")}, "validated": validated},
          "weights": {k: list(v.shape) for k, v in net.state_dict().items()}, "generators": sorted(rngs),
          "data": {k: [list(v.shape), str(v.dtype)] for k, v in sorted(data.items())},
          "data_sha256": digest.hexdigest()}
    return json.loads(json.dumps(fp, default=str))   # as it reads back from disk


def _first_difference(saved, now, path: str = "") -> str | None:
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in [*now, *(k for k in saved if k not in now)]:
            diff = _first_difference(saved.get(key), now.get(key), f"{path}.{key}" if path else key)
            if diff:
                return diff
        return None
    return None if saved == now else f"{path}: checkpoint has {saved!r}, this run has {now!r}"


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _write_atomic(path: str, write: Callable) -> None:
    """``write(fh)`` into a temporary file, flushed to disk, then renamed over ``path``; the
    folder is synced too, so after a power cut the renames persist in the order made."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:             # e.g. Windows cannot open a folder; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(directory: str, fp: dict, run: Run, net, opt, scaler, rngs: dict, device) -> None:
    import torch

    os.makedirs(directory, exist_ok=True)
    arrays = {f"net.{k}": _numpy(v) for k, v in net.state_dict().items()}
    arrays.update({f"best.{k}": _numpy(v) for k, v in (run.best_state or {}).items()})
    opt_scalars = {}
    for idx, state in opt.state_dict()["state"].items():
        for key, v in state.items():
            if torch.is_tensor(v):
                arrays[f"opt.{idx}.{key}"] = _numpy(v)
            else:
                opt_scalars[f"{idx}.{key}"] = v
    arrays.update({f"rng.{k}": _numpy(g.get_state()) for k, g in rngs.items()})
    arrays["rng.torch"] = _numpy(torch.get_rng_state())
    if device.type == "cuda":     # dropout on the GPU draws from the CUDA generator
        arrays["rng.cuda"] = _numpy(torch.cuda.get_rng_state(device))
    np_rng = np.random.get_state()
    arrays["rng.numpy"] = np_rng[1]
    name = f"ckpt-{run.epoch:04d}.npz"
    _write_atomic(os.path.join(directory, name), lambda fh: np.savez(fh, **arrays))
    meta = {"format": FORMAT, "arrays": name, "epoch": run.epoch, "best_value": run.best_value,
            "best_epoch": run.best_epoch, "stale": run.stale, "stopped": run.stopped, "history": run.history,
            "optimizer_scalars": opt_scalars, "scaler": scaler.state_dict(),
            "numpy_rng": [np_rng[0], int(np_rng[2]), int(np_rng[3]), float(np_rng[4])], "fingerprint": fp}
    text = json.dumps(meta, indent=2, sort_keys=True).encode()
    _write_atomic(os.path.join(directory, CHECKPOINT), lambda fh: fh.write(text))
    for old in os.listdir(directory):   # earlier epochs' arrays and temp files of killed runs
        if (old.startswith("ckpt-") and old != name) or old.startswith(f"{CHECKPOINT}.tmp-"):
            os.remove(os.path.join(directory, old))


def restore(directory: str, fp: dict, net, opt, scaler, rngs: dict, device) -> Run | None:
    """Restore the checkpoint in ``directory`` into the given objects; None when there is none."""
    import torch

    path = os.path.join(directory, CHECKPOINT)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
        with np.load(os.path.join(directory, meta["arrays"]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as err:
        raise MusicrecError(f"cannot read the checkpoint in {directory}: {err}") from None
    if meta.get("format") != FORMAT:
        raise MusicrecError(f"checkpoint in {directory} has format {meta.get('format')}, expected {FORMAT}")
    diff = _first_difference(meta["fingerprint"], fp)
    if diff:
        raise MusicrecError(f"the checkpoint in {directory} belongs to a different run ({diff}); "
                            "use another checkpoint_dir or resume=False")

    def tensors(prefix: str) -> dict:
        return {k[len(prefix):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}

    net.load_state_dict(tensors("net."))
    best = tensors("best.")
    opt_state: dict = {}
    for key, v in tensors("opt.").items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    for key, v in meta["optimizer_scalars"].items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    state = opt.state_dict()
    state["state"] = opt_state
    opt.load_state_dict(state)
    if meta["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(meta["scaler"])
    for k, g in rngs.items():
        g.set_state(torch.from_numpy(arrays[f"rng.{k}"]))
    torch.set_rng_state(torch.from_numpy(arrays["rng.torch"]))
    if device.type == "cuda" and "rng.cuda" in arrays:
        torch.cuda.set_rng_state(torch.from_numpy(arrays["rng.cuda"]), device)
    kind, pos, has_gauss, cached = meta["numpy_rng"]
    np.random.set_state((kind, arrays["rng.numpy"], pos, has_gauss, cached))
    return Run(epoch=meta["epoch"], best_value=meta["best_value"], best_epoch=meta["best_epoch"],
                best_state={k: v.to(device) for k, v in best.items()} or None, stale=meta["stale"],
                stopped=meta["stopped"], history=meta["history"])
