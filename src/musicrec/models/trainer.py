"""One generic trainer for every PyTorch model.

The model (an estimator) owns the *task*: it hands the trainer a network, a dict of
equally long tensors (one row per training example) and a loss function
``loss_fn(net, batch) -> scalar``. The trainer owns everything else: AdamW, shuffled
mini-batches cut from those tensors (no per-event Python loops), early stopping on a
validation metric, the per-epoch history, mixed precision on CUDA, a progress bar, and
checkpoints that let a killed run continue exactly where it stopped.

Checkpoints (``checkpoint_dir``) are written after every epoch as two files, no pickles:
``ckpt-EEEE.npz`` (weights, best weights, AdamW moments, RNG states as uint8 arrays) and
``checkpoint.json`` (epoch, best value/epoch, stale count, history, a fingerprint of the run,
and the name of the npz). The npz is written first and the JSON, renamed into place last,
names it, so that rename is the single commit point: a kill at any moment leaves the
previous complete checkpoint. Resuming restores every RNG the run draws from (the shuffle
generator, torch's global CPU/CUDA generator used by dropout, numpy's global generator, and
the estimator's own generators passed as ``extra_rng``; not Python's ``random``), so on CPU
a resumed run gives the same weights as an uninterrupted one.

Determinism: on CPU the same seeds give bit-identical weights and losses (for a fixed
number of torch threads) without any global deterministic-algorithm switch. On CUDA some
kernels accumulate with atomics, so runs agree only up to rounding.

Data parallel (DDP): when a ``torch.distributed`` process group is initialised (``torchrun``,
Ray Train, or ``train.distributed``), the same loop runs on every rank, with these changes
only (``TrainerConfig.distributed`` turns the detection off or makes it mandatory):

* the work is wrapped in ``DistributedDataParallel`` through a small module whose forward is
  ``loss_fn(net, batch)``, so whatever network methods the loss calls run inside DDP's forward
  and their gradients are averaged across ranks;
* every rank draws the same seeded permutation per epoch and takes its share of each global
  batch of ``batch_size`` examples (``batch_size / world_size`` rows each); rank r's loss is
  weighted by ``world_size * rows_r / rows`` so DDP's gradient average equals the gradient of
  the whole batch's per-example mean (exactly, up to summation order, for losses that are
  means over the batch's rows), also for an uneven last batch. The number of optimiser steps
  is that of a one-process run;
* the reported loss is all-reduced; validation, early stopping and the ``on_epoch`` callback
  run on rank 0 and their outcome is broadcast, so every rank stops at the same epoch and
  keeps the same best weights (the weights are identical on all ranks after every step);
* checkpoints and the progress bar come from rank 0; resuming needs ``checkpoint_dir`` on a
  filesystem every rank reads;
* rank 0 keeps the run's random streams (so a 1-rank run is the plain run); ranks > 0 re-seed
  the estimator's generators (negative sampling) and torch's/numpy's global generators (dropout)
  at every epoch from (seed, rank, epoch). Identical streams would give every shard the same
  negatives and the same dropout masks, i.e. perfectly correlated noise instead of independent
  samples; deriving them per epoch keeps a resumed DDP run exact without saving every rank's state.
* device: NCCL runs on ``cuda:LOCAL_RANK``; gloo on the CPU (unless ``device="cuda"``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from musicrec import MusicrecError
from musicrec.models import checkpoint
from musicrec.models.checkpoint import Run

AMP_DTYPES = ("auto", "bfloat16", "float16")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings every deep model has as hyperparameters (its config inherits them)."""

    epochs: int = 20              # maximum epochs; early stopping on validation when given
    batch_size: int = 128         # training examples per optimiser step
    learning_rate: float = 1e-3   # AdamW step size
    weight_decay: float = 0.0     # AdamW decoupled weight decay
    patience: int = 3             # epochs without validation improvement before stopping
    seed: int = 0                 # parameter init, shuffling and negative sampling
    device: str = "auto"          # "auto" (CUDA when present, else CPU), "cpu", "cuda"


@dataclass(frozen=True)
class TrainerConfig(TrainingConfig):
    """A training run: the model's ``TrainingConfig`` plus how this run goes."""

    grad_clip: float = 5.0           # max global gradient norm (0 = off)
    progress: bool = False           # Rich progress bar (stderr) with epoch, loss and throughput
    amp: bool = True                 # mixed precision on CUDA (autocast); ignored on CPU
    amp_dtype: str = "auto"          # "auto" (bfloat16 where supported), "bfloat16", "float16" (+ loss scaling)
    checkpoint_dir: str | None = None  # write a resumable checkpoint here after every epoch
    resume: bool = False             # continue from checkpoint_dir's checkpoint when one exists
    distributed: bool | None = None  # DDP: None = when a process group is initialised, False = never, True = required
    find_unused_parameters: bool = False  # DDP: only for losses that leave some parameters without a gradient


@dataclass
class TrainResult:
    best_epoch: int                  # 1-based epoch whose weights were kept
    best_value: float | None         # validation metric there (None without validation)
    history: list = field(default_factory=list)  # per epoch: epoch, loss, value, seconds, examples_per_s
    resumed_from: int = 0            # epochs already done in the checkpoint this run resumed (0 = fresh)


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MusicrecError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


class Trainer:
    """Fits ``net`` by minimising ``loss_fn`` over mini-batches of ``data``."""

    def __init__(self, config: TrainerConfig):
        self.config = config

    def fit(self, net, loss_fn: Callable, data: dict, validate: Callable[[], float] | None = None,
            on_epoch: Callable[[int, float | None], None] | None = None,
            extra_rng: dict | None = None, fingerprint: dict | None = None) -> TrainResult:
        """Train; returns the result and leaves ``net`` holding the best (or last) weights.

        Parameters
        ----------
        net : torch.nn.Module
        loss_fn : callable(net, batch: dict[str, Tensor]) -> Tensor
            Mean loss of one batch; the batch holds rows of every tensor in ``data``.
        data : dict[str, Tensor]
            Tensors whose first dimension N indexes the training examples.
        validate : callable() -> float, optional
            Higher-is-better metric computed with ``net`` in eval mode; enables early stopping.
        on_epoch : callable(epoch, value), optional
            Called after each epoch's checkpoint (e.g. to report to Optuna); an exception it
            raises (``optuna.TrialPruned``) ends training and propagates unchanged.
        extra_rng : dict[str, torch.Generator], optional
            Generators ``loss_fn`` samples with; saved in and restored from checkpoints.
        fingerprint : dict, optional
            JSON-able description of the model (name, hyperparameters); resuming a checkpoint
            whose fingerprint differs raises MusicrecError.
        """
        import torch

        cfg = self.config
        _check_config(cfg)
        n = len(next(iter(data.values())))
        if n == 0:
            raise MusicrecError("no training examples (are the sequences shorter than 2 items?)")
        dist = _Dist.detect(cfg.distributed)
        device = dist.device(cfg.device)
        net.to(device)
        data = {k: v.to(device) for k, v in data.items()}
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        step = _Step(net, opt, cfg, device)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        rngs = {"shuffle": gen, **{f"extra.{k}": g for k, g in sorted((extra_rng or {}).items())}}
        run, resumed_from, fp = Run(), 0, None
        if cfg.checkpoint_dir is not None:
            fp = checkpoint.fingerprint(cfg, net, data, rngs, fingerprint, validate is not None)
            if cfg.resume:
                restored = checkpoint.restore(cfg.checkpoint_dir, fp, net, opt, step.scaler, rngs, device)
                if restored is not None:
                    run, resumed_from = restored, restored.epoch
        elif cfg.resume:
            raise MusicrecError("resume needs a checkpoint_dir")
        if dist.ddp:
            dist.check_same_resume(run.epoch, device)
            forward = dist.wrap(net, loss_fn, device, cfg.find_unused_parameters)
        else:
            forward = lambda batch: loss_fn(net, batch)  # noqa: E731

        with _EpochBar(cfg.progress and dist.rank == 0, cfg.epochs, n) as bar:
            epoch = run.epoch
            while epoch < cfg.epochs and not run.stopped:
                epoch += 1
                dist.seed_epoch(cfg.seed, epoch, rngs)
                net.train()
                start = time.perf_counter()
                order = torch.randperm(n, generator=gen).to(device)
                # summed on the device: a float() per step would stall the GPU every batch
                total = torch.zeros((), dtype=torch.float64, device=device)
                steps = 0
                bar.start(epoch)
                for lo in range(0, n, cfg.batch_size):
                    idx, share = dist.shard(order, lo, min(cfg.batch_size, n - lo))
                    # the batch's loss is the share-weighted sum of the ranks' losses (1.0 on one rank)
                    total += share * step(forward, {k: v[idx] for k, v in data.items()}, dist.world * share)
                    steps += 1
                    bar.advance(min(cfg.batch_size, n - lo), lambda: float(total) / steps)
                total = dist.sum(total)
                mean_loss = float(total) / steps
                seconds = time.perf_counter() - start
                if not math.isfinite(mean_loss):
                    raise MusicrecError(f"training diverged: the loss is {mean_loss} in epoch {epoch}; "
                                        f"try a lower learning_rate (now {cfg.learning_rate})")
                value = None
                if validate is not None and dist.rank == 0:
                    net.eval()
                    try:
                        with torch.no_grad():
                            value = float(validate())
                    except BaseException:
                        dist.from_rank0(None, seconds, device, failed=True)   # the others stop too
                        raise
                value, seconds = dist.from_rank0(value, seconds, device)
                run.history.append({"epoch": epoch, "loss": mean_loss, "value": value, "seconds": round(seconds, 3),
                                    "examples_per_s": round(n / max(seconds, 1e-9), 1)})
                bar.finish(run.history[-1])
                run.epoch = epoch
                if validate is None:
                    run.best_epoch = epoch
                elif not math.isnan(value) and (run.best_value is None or value > run.best_value):
                    run.best_value, run.best_epoch, run.stale = value, epoch, 0
                    run.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    run.stale += 1
                    run.stopped = run.stale >= cfg.patience
                if dist.rank == 0:
                    try:
                        if cfg.checkpoint_dir is not None:
                            checkpoint.save(cfg.checkpoint_dir, fp, run, net, opt, step.scaler, rngs, device)
                        if on_epoch is not None:
                            on_epoch(epoch, value)
                    except BaseException:
                        dist.agree_to_stop(True, device)
                        raise
                if dist.agree_to_stop(False, device):
                    raise MusicrecError(f"training ended on rank 0 after epoch {epoch} "
                                        "(writing its checkpoint or its on_epoch callback raised)")
        if run.best_state is not None:
            net.load_state_dict(run.best_state)
        net.eval()
        return TrainResult(run.best_epoch, run.best_value, run.history, resumed_from)


def _check_config(cfg: TrainerConfig) -> None:
    if cfg.amp_dtype not in AMP_DTYPES:
        raise MusicrecError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {cfg.amp_dtype!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.patience < 1:
        raise MusicrecError("epochs, batch_size and patience must be >= 1")


class _Step:
    """One optimiser step, in mixed precision on CUDA when ``amp`` (autocast to bfloat16, or to
    float16 with a GradScaler against gradient underflow); plain float32 elsewhere."""

    def __init__(self, net, opt, cfg: TrainerConfig, device):
        import torch

        self.net, self.opt, self.grad_clip, self.dtype = net, opt, cfg.grad_clip, None
        if cfg.amp and device.type == "cuda":
            bf16 = cfg.amp_dtype == "bfloat16" or (cfg.amp_dtype == "auto" and torch.cuda.is_bf16_supported())
            self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.autocast = ((lambda: torch.autocast(device.type, dtype=self.dtype)) if self.dtype
                         else contextlib.nullcontext)
        # bfloat16 has float32's exponent range: only float16 needs loss scaling (else a pass-through)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.clip = torch.nn.utils.clip_grad_norm_

    def __call__(self, forward: Callable, batch: dict, weight: float = 1.0):
        """Forward (``forward(batch)`` -> loss), backward of ``weight * loss`` and update;
        returns the detached, unweighted loss."""
        with self.autocast():
            loss = forward(batch)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss if weight == 1.0 else loss * weight).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.opt)      # clip the true gradients, not the scaled ones
            self.clip(self.net.parameters(), self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.detach()


class _Dist:
    """Where this process stands in a DDP run; rank 0 of 1 (every method a no-op) without one."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world, self.ddp = rank, world, world > 1

    @classmethod
    def detect(cls, mode: bool | None) -> "_Dist":
        import torch.distributed as td

        ready = td.is_available() and td.is_initialized()
        if mode and not ready:
            raise MusicrecError("distributed=True needs an initialised torch.distributed process group "
                                "(launch with torchrun, Ray Train or musicrec.train.distributed)")
        if mode is False or not ready:
            return cls()
        return cls(td.get_rank(), td.get_world_size())

    def device(self, name: str):
        """``pick_device(name)``; under NCCL (or ``name="cuda"``) this rank's GPU."""
        import torch
        import torch.distributed as td

        if self.ddp and name == "auto" and td.get_backend() != "nccl":
            name = "cpu"                # gloo: CPU tensors (CUDA ones only when asked for)
        device = pick_device(name)
        if self.ddp and device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", -1))
            # torchrun sets LOCAL_RANK; launchers that give each worker one visible GPU set the device
            index = local if 0 <= local < torch.cuda.device_count() else torch.cuda.current_device()
            torch.cuda.set_device(index)
            device = torch.device("cuda", index)
        return device

    def wrap(self, net, loss_fn: Callable, device, find_unused: bool) -> Callable:
        """DDP around ``loss_fn(net, batch)``; returns ``forward(batch) -> loss``."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(_loss_module(net, loss_fn), device_ids=ids, output_device=None if ids is None
                                       else device.index, find_unused_parameters=find_unused)

    def shard(self, order, lo: int, rows: int):
        """This rank's indices of the global batch ``order[lo:lo + rows]`` and its share of the rows."""
        a, b = lo + self.rank * rows // self.world, lo + (self.rank + 1) * rows // self.world
        if a == b:                      # more ranks than rows: one row with weight 0 keeps DDP in step
            return order[lo:lo + 1], 0.0
        return order[a:b], (b - a) / rows

    def seed_epoch(self, seed: int, epoch: int, rngs: dict) -> None:
        if self.rank == 0:
            return
        import torch

        seeds = np.random.SeedSequence([seed, self.rank, epoch]).generate_state(len(rngs) + 2, dtype=np.uint64)
        for s, (name, g) in zip(seeds, sorted(rngs.items())):
            if name != "shuffle":       # the permutation must be the same on every rank
                g.manual_seed(int(s) >> 1)
        torch.manual_seed(int(seeds[-2]) >> 1)
        np.random.seed(int(seeds[-1]) % (2**32))

    def sum(self, total):
        if self.ddp:
            import torch.distributed as td

            td.all_reduce(total, op=td.ReduceOp.SUM)
        return total

    def from_rank0(self, value: float | None, seconds: float, device,
                   failed: bool = False) -> tuple[float | None, float]:
        """Rank 0's validation value and epoch time, on every rank (``failed``: rank 0's
        validation raised; the other ranks raise too instead of waiting for it)."""
        if not self.ddp:
            return value, seconds
        import torch
        import torch.distributed as td

        msg = torch.tensor([math.nan if value is None else value, value is not None, seconds, failed],
                           dtype=torch.float64, device=device)
        td.broadcast(msg, src=0)
        value, has_value, seconds, failed = msg.tolist()
        if failed and self.rank > 0:
            raise MusicrecError("validation failed on rank 0")
        return (value if has_value else None), seconds

    def agree_to_stop(self, stop: bool, device) -> bool:
        """Rank 0 says whether the run ends here; every rank gets the answer."""
        if not self.ddp:
            return stop
        import torch
        import torch.distributed as td

        flag = torch.tensor([float(stop)], device=device)
        td.broadcast(flag, src=0)
        return bool(flag.item())

    def check_same_resume(self, epoch: int, device) -> None:
        import torch
        import torch.distributed as td

        lo = torch.tensor([epoch], dtype=torch.int64, device=device)
        hi = lo.clone()
        td.all_reduce(lo, op=td.ReduceOp.MIN)
        td.all_reduce(hi, op=td.ReduceOp.MAX)
        if lo.item() != hi.item():
            raise MusicrecError(f"ranks resumed from different epochs ({lo.item()}..{hi.item()}): resuming a "
                                "distributed run needs checkpoint_dir on a filesystem every rank reads")


def _loss_module(net, loss_fn: Callable):
    """An nn.Module whose forward is ``loss_fn(net, batch)``: what DDP wraps, so every network
    method the loss calls runs inside DDP's forward (and its gradient hooks see them)."""
    import torch

    class LossModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, batch: dict):
            return loss_fn(self.net, batch)

    return LossModule()


class _EpochBar:
    """Rich progress over the batches of each epoch (stderr); does nothing when disabled."""

    REFRESH_S = 0.25                 # how often the running loss is read (a GPU sync)

    def __init__(self, enabled: bool, epochs: int, n: int):
        self.enabled, self.epochs, self.n = enabled, epochs, n

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} ex/s"),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.n, loss="-", rate="-")
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()

    def start(self, epoch: int) -> None:
        if self.enabled:
            self.bar.reset(self.task, total=self.n, description=f"epoch {epoch}/{self.epochs}", loss="-", rate="-")
            self.t0 = self.last = time.perf_counter()
            self.seen = 0

    def advance(self, rows: int, running_loss: Callable[[], float]) -> None:
        if not self.enabled:
            return
        self.seen += rows
        now = time.perf_counter()
        fields = {}
        if now - self.last >= self.REFRESH_S or self.seen == self.n:
            self.last = now
            fields = {"loss": f"{running_loss():.4f}", "rate": f"{self.seen / max(now - self.t0, 1e-9):,.0f}"}
        self.bar.update(self.task, advance=rows, **fields)

    def finish(self, row: dict) -> None:
        if self.enabled:
            value = "" if row["value"] is None else f", valid {row['value']:.4f}"
            self.bar.console.print(f"epoch {row['epoch']}/{self.epochs}: loss {row['loss']:.4f}{value}, "
                                   f"{row['examples_per_s']:,.0f} ex/s, {row['seconds']:.1f} s")
