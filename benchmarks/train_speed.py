"""Training and scoring speed of every deep model on 30Music, one model at a time.

    python benchmarks/train_speed.py [--data ../shared/data] [--levels artist,track] [--epochs 2]
                                     [--threads 2] [--out benchmarks/results/train_speed.md]

``benchmarks/deep.py`` reports speed from its refits, which share the CPU with whatever else
runs; this script measures speed alone: each model trains ``--epochs`` epochs on the
session-lastday training part (no validation inside the timed epochs) with the configuration
``deep.py`` uses, then scores every test prefix over the full catalogue. Reported: seconds per
epoch (median), training windows per second, test prefixes scored per second, parameters.
Run it on an otherwise idle machine; the load average at start and end is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODELS = ["gru4rec", "gru4rec+repeat", "sasrec", "sasrec+repeat", "nextitnet", "caser"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--levels", default="artist,track")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "train_speed.md"))
    args = ap.parse_args(argv)

    import torch

    from deep import DEEP_PARAMS, VARIANTS, n_parameters
    from musicrec.evaluate.protocols import evaluate
    from musicrec.models.registry import create
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path
    from musicrec.train.fit import training_events
    from musicrec.features.interactions import Interactions

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    work = tempfile.mkdtemp(prefix="musicrec-speed-")
    store = os.path.join(work, "30music")
    ingest_path("30music", os.path.join(args.data, "30music-200ks-test-slices"), store)
    lines = ["| level | model | epoch s | train windows/s | score prefixes/s | params |", "|---|---|---:|---:|---:|---:|"]
    for level in [x for x in args.levels.split(",") if x]:
        split = make_split(store, "session-lastday", item_level=level, seed=0)
        train = Interactions.from_frame(training_events(split, False))
        for name in [m for m in args.models.split(",") if m]:
            base, extra = VARIANTS.get(name, (name, {}))
            params = {**DEEP_PARAMS[f"30music-{level}"].get(name, {}), **extra, "epochs": args.epochs}
            model = create(base, **params).fit(train)
            hist = model.history_
            epoch_s = float(np.median([h["seconds"] for h in hist]))
            ex_s = float(np.median([h["examples_per_s"] for h in hist]))
            start = time.perf_counter()
            res = evaluate(model, split, ks=(20,), on="test")
            score_s = res.info["n_prefixes"] / (time.perf_counter() - start)
            row = f"| {level} | {name} | {epoch_s:.1f} | {ex_s:,.0f} | {score_s:,.0f} | {n_parameters(model):,} |"
            print(row, flush=True)
            lines.append(row)
    load1 = os.getloadavg()
    text = (f"Training/scoring speed on {os.cpu_count()} cores, {args.threads} torch threads, {args.epochs} epochs "
            f"per model (median); load average {load0[0]:.2f} at start, {load1[0]:.2f} at end.\n\n"
            + "\n".join(lines) + "\n")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
