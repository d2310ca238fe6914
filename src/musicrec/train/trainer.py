"""One generic trainer for every PyTorch model.

The model (an estimator) owns the *task*: it hands the trainer a network, a dict of
equally long tensors (one row per training example) and a loss function
``loss_fn(net, batch) -> scalar``. The trainer owns everything else: AdamW, shuffled
mini-batches cut from those tensors (no per-event Python loops), seeding, early stopping on
a validation metric, and the per-epoch history.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from musicrec import MusicrecError


@dataclass
class TrainerConfig:
    epochs: int = 20                 # maximum number of passes over the training examples
    batch_size: int = 128            # examples per optimiser step
    learning_rate: float = 1e-3      # AdamW step size
    weight_decay: float = 0.0        # AdamW decoupled weight decay
    patience: int = 3                # epochs without validation improvement before stopping
    seed: int = 0                    # seeds parameter init, shuffling and sampling
    device: str = "auto"             # "auto" (CUDA when present, else CPU), "cpu", "cuda"
    grad_clip: float = 5.0           # max global gradient norm (0 = off)
    progress: bool = False           # Rich progress bar with loss and throughput


@dataclass
class TrainResult:
    best_epoch: int                  # 1-based epoch whose weights were kept
    best_value: float | None         # validation metric there (None without validation)
    history: list = field(default_factory=list)  # per epoch: epoch, loss, value, seconds, examples_per_s


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
            on_epoch: Callable[[int, float | None], None] | None = None) -> TrainResult:
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
            Called after each epoch (e.g. to report to Optuna and raise ``TrialPruned``).
        """
        import torch

        cfg = self.config
        n = len(next(iter(data.values())))
        if n == 0:
            raise MusicrecError("no training examples (are the sequences shorter than 2 items?)")
        device = pick_device(cfg.device)
        net.to(device)
        data = {k: v.to(device) for k, v in data.items()}
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        history: list[dict] = []
        best_value, best_epoch, best_state, stale = -math.inf, 0, None, 0
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            start = time.perf_counter()
            order = torch.randperm(n, generator=gen).to(device)
            total, steps = 0.0, 0
            for lo in range(0, n, cfg.batch_size):
                idx = order[lo:lo + cfg.batch_size]
                loss = loss_fn(net, {k: v[idx] for k, v in data.items()})
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                total += float(loss.detach())
                steps += 1
            seconds = time.perf_counter() - start
            value = None
            if validate is not None:
                net.eval()
                with torch.no_grad():
                    value = float(validate())
            history.append({"epoch": epoch, "loss": total / max(steps, 1), "value": value,
                            "seconds": round(seconds, 3), "examples_per_s": round(n / max(seconds, 1e-9), 1)})
            if on_epoch is not None:
                on_epoch(epoch, value)
            if validate is None:
                best_epoch = epoch
                continue
            if value > best_value:
                best_value, best_epoch, stale = value, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return TrainResult(best_epoch, None if validate is None else best_value, history)
