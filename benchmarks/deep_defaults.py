"""The deep sequence models with their default settings against sequential rules on 30Music.

    python benchmarks/deep_defaults.py [--data ../shared/data] [--models sasrec,gru4rec] [--levels track,artist]

What ``musicrec train MODEL --split S`` does with no parameters: fit on the split's train part,
early-stopping on its validation part, then score every test prefix over the full catalogue
(session-lastday, seed 0; MRR@20 and HR@20, the standard convention). Sequential rules are scored
the same way with their defaults and with the steps tuned by ``benchmarks/ranker.py`` (both fitted
on train only, like the deep models), and each deep model's MRR@20 is given as a share of theirs.
With ``--refit`` every model is also refitted on train + valid (deep ones for the epochs they
stopped at), as ``--include-valid`` does, and compared with SR refitted the same way.
Results: ``benchmarks/results/deep_defaults.md`` and ``.json`` (``deep_defaults_refit.*`` with ``--refit``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SR_TUNED = {"track": {"steps": 9}, "artist": {"steps": 14}}     # benchmarks/results/ranker.json


def scored(model, split, level: str, label: str, fit_s: float, data: str) -> dict:
    from musicrec.evaluate.protocols import evaluate

    t0 = time.perf_counter()
    r = evaluate(model, split, ks=(20,), name=model.name, fit_s=fit_s)
    row = {"level": level, "model": label, "data": data, "mrr@20": r.metrics["mrr@20"],
           "hr@20": r.metrics["hitrate@20"], "fit_s": fit_s, "eval_s": time.perf_counter() - t0,
           "best_epoch": getattr(model, "best_epoch_", None)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--models", default="sasrec,gru4rec")
    ap.add_argument("--levels", default="track,artist")
    ap.add_argument("--refit", action="store_true",
                    help="also refit each model on train + valid (deep ones for their early-stopped epochs)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path
    from musicrec.train.fit import fit_model

    store = os.path.join(tempfile.mkdtemp(prefix="musicrec-deep-defaults-"), "30music")
    ingest_path("30music", os.path.join(args.data, "30music-200ks-test-slices"), store)
    rows = []
    for level in args.levels.split(","):
        split = make_split(store, "session-lastday", seed=0, item_level=level)
        runs = [("sr", {}, "sr (defaults)"), ("sr", SR_TUNED[level], "sr (tuned steps)")]
        runs += [(m, {}, f"{m} (defaults)") for m in args.models.split(",") if m]
        for name, params, label in runs:
            model, fit_s = fit_model(name, split, params)
            rows.append(scored(model, split, level, label, fit_s, "train"))
            if args.refit:     # train + valid; a deep model for the epochs it stopped at
                epochs = getattr(model, "best_epoch_", None)
                again, fit_s = fit_model(name, split, {**params, **({"epochs": epochs} if epochs else {})},
                                         include_valid=True)
                rows.append(scored(again, split, level, label, fit_s, "train+valid"))
    lines = ["| level | model | fitted on | MRR@20 | HR@20 | MRR@20 / SR defaults | MRR@20 / SR tuned | epochs | fit s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = {x["model"]: x["mrr@20"] for x in rows if x["level"] == r["level"] and x["data"] == r["data"]}
        lines.append(f"| {r['level']} | {r['model']} | {r['data']} | {r['mrr@20']:.4f} | {r['hr@20']:.4f} | "
                     f"{r['mrr@20'] / base['sr (defaults)']:.2f} | {r['mrr@20'] / base['sr (tuned steps)']:.2f} | "
                     f"{r['best_epoch'] or '–'} | {r['fit_s']:.0f} |")
    head = (f"`python benchmarks/deep_defaults.py --models {args.models} --levels {args.levels}"
            f"{' --refit' if args.refit else ''}`: 30Music 200ks, session-lastday (seed 0), every model fitted on "
            "train (deep ones early-stopping on valid) and, with --refit, again on train + valid, "
            f"scored on test over the full catalogue; 2 CPUs, load average {os.getloadavg()[0]:.2f} at the end.\n\n")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "deep_defaults" + ("_refit" if args.refit else ""))
    with open(stem + ".md", "w") as fh:
        fh.write(head + "\n".join(lines) + "\n")
    with open(stem + ".json", "w") as fh:
        json.dump(rows, fh, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
