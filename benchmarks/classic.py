"""Benchmark every classic model on real data and print Markdown tables (with fit times).

    python benchmarks/classic.py [--data ../shared/data] [--trials 20] [--out benchmarks/results]

1. HetRec 2011 Last.fm 2K, protocol ``user-holdout`` (seed 0; 20 % of each listener's artists
   for test, 10 % for validation): P/R/NDCG/MAP @10 and @20 over the full catalogue.
2. 30Music 200ks test slices, protocol ``session-lastday`` (sessions ending in each slice's
   last 24 h are test; every prefix scored over the whole training catalogue, repeats allowed):
   HR@20 and MRR@20, at track level and at artist level.

Tunable models are tuned with Optuna on the validation part, then refit on train+valid and
scored once on test. Nothing here is timed by a unit test; numbers go to the README.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from musicrec.evaluate.report import results_to_markdown, write_report
from musicrec.pipeline import SESSION_MODELS, USER_MODELS, compare
from musicrec.preprocess.split import make_split
from musicrec.store import ingest_path

HERE = os.path.dirname(os.path.abspath(__file__))


def _table(results, metrics) -> str:
    md = results_to_markdown(results, metrics=metrics)
    fit = "\n".join(f"- {r.model}: fit {r.info['fit_s']:.2f} s, eval {r.info.get('eval_s', float('nan')):.1f} s, "
                    f"params {json.dumps(r.info.get('params', {}))}" for r in results)
    return md + "\n\n" + fit + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--only", choices=["hetrec", "30music"], default=None)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="musicrec-bench-")
    sections = []

    if args.only in (None, "hetrec"):
        t0 = time.perf_counter()
        store = os.path.join(work, "hetrec")
        ingest_path("hetrec-lastfm-2k", os.path.join(args.data, "hetrec2011-lastfm-2k"), store)
        split = make_split(store, "user-holdout", seed=0)
        comp = compare(split, USER_MODELS, ks=(10, 20), trials=args.trials, log=lambda m: print(m, file=sys.stderr))
        comp.results.sort(key=lambda r: -r.metrics["ndcg@10"])
        write_report(comp.results, os.path.join(args.out, "hetrec-user-holdout"))
        sections.append("### HetRec 2011 Last.fm 2K — user-holdout (artists, K = 10, 20)\n\n" + _table(
            comp.results, ["precision@10", "recall@10", "ndcg@10", "map@10", "precision@20", "recall@20",
                           "ndcg@20", "coverage@10"]) + f"\n(total {time.perf_counter() - t0:.0f} s, {args.trials} trials per tunable model)\n")

    if args.only in (None, "30music"):
        store = os.path.join(work, "30music")
        ingest_path("30music", os.path.join(args.data, "30music-200ks-test-slices"), store)
        for level in ("track", "artist"):
            t0 = time.perf_counter()
            split = make_split(store, "session-lastday", item_level=level, seed=0)
            comp = compare(split, SESSION_MODELS, ks=(20,), trials=args.trials,
                           log=lambda m: print(m, file=sys.stderr))
            comp.results.sort(key=lambda r: -r.metrics["mrr@20"])
            write_report(comp.results, os.path.join(args.out, f"30music-session-lastday-{level}"))
            n = comp.results[0].info
            sections.append(f"### 30Music 200ks — session-lastday, next {level} (HR@20, MRR@20)\n\n" + _table(
                comp.results, ["hitrate@20", "mrr@20", "ndcg@20", "coverage@20"])
                + f"\n({n.get('n_sessions')} test sessions, {n.get('n_prefixes')} prefixes; "
                  f"total {time.perf_counter() - t0:.0f} s)\n")

    text = "\n".join(sections)
    with open(os.path.join(args.out, "classic.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
