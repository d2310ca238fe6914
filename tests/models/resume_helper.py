"""A tiny SASRec training run, importable by the trainer tests and runnable as a script so a
test can kill it with SIGKILL and resume it in a new process.

    python resume_helper.py OUT CHECKPOINT_DIR [--resume] [--slow SECONDS]

writes OUT/weights.npz (final state_dict) and OUT/result.json (history losses and values,
best epoch); CHECKPOINT_DIR "-" means no checkpoints. ``--slow`` sleeps that long per batch
so the test can kill mid-epoch.
"""

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from musicrec import schema
from musicrec.features.interactions import Histories, Interactions

N_ITEMS, N_SESSIONS, LENGTH = 30, 300, 6
EPOCHS = 6


def make_train() -> Interactions:
    """Sessions of ``LENGTH`` consecutive items (mod ``N_ITEMS``) from random starts; one
    session in four has a random item in its middle, so the task is learnable but not trivial."""
    rng = np.random.default_rng(0)
    t0 = datetime(2021, 1, 1, tzinfo=timezone.utc)
    rows = []
    for s in range(N_SESSIONS):
        items = (rng.integers(N_ITEMS) + np.arange(LENGTH)) % N_ITEMS
        if s % 4 == 0:
            items[LENGTH // 2] = rng.integers(N_ITEMS)
        rows += [(s % 50, int(i), 1.0, t0 + timedelta(hours=s, minutes=p), s) for p, i in enumerate(items)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "weight", "timestamp", "session_id"], orient="row")
    return Interactions.from_frame(schema.conform(df, schema.SPLIT_EVENTS))


def hit_rate(model) -> float:
    """Share of prefixes [i, i+1] whose next item i+2 is the top pick (a validation metric)."""
    starts = np.arange(N_ITEMS)
    prefixes = [np.array([i, (i + 1) % N_ITEMS]) for i in starts]
    scores = model.score(Histories.from_sequences(prefixes, N_ITEMS))
    return float(np.mean(scores.argmax(1) == (starts + 2) % N_ITEMS))


def make_model(**params):
    from musicrec.models.sasrec import SASRec

    settings = dict(embedding_dim=8, n_layers=1, max_len=5, epochs=EPOCHS, batch_size=16, learning_rate=0.01,
                    n_negatives=10, dropout=0.2, loss="sampled", patience=10, seed=0, device="cpu")
    return SASRec(**{**settings, **params})


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)     # same reduction order in every process (and no thread contention)
    out, ckpt = argv[0], (None if argv[1] == "-" else argv[1])
    slow = float(argv[argv.index("--slow") + 1]) if "--slow" in argv else 0.0
    model = make_model()
    if slow:
        loss = model._loss

        def slow_loss(net, batch):
            time.sleep(slow)
            return loss(net, batch)

        model._loss = slow_loss
    model.fit(make_train(), valid=hit_rate, checkpoint_dir=ckpt, resume="--resume" in argv)
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "weights.npz"), **{k: v.numpy() for k, v in model.net_.state_dict().items()})
    with open(os.path.join(out, "result.json"), "w") as fh:
        json.dump({"loss": [h["loss"] for h in model.history_], "value": [h["value"] for h in model.history_],
                   "best_epoch": model.best_epoch_}, fh)


if __name__ == "__main__":
    main(sys.argv[1:])
