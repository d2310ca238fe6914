"""EASE on HetRec Last.fm 2K: fit time, model folder size, accuracy, per-request latency, tuning.

    python benchmarks/ease_fit.py [--data ../shared/data] [--l2 78.3] [--trials 5] [--requests 200]
                                  [--out benchmarks/results/ease_fit.md]

Runs the README's commands as a user would (``musicrec ingest``, ``split --protocol user-holdout
--seed 0``, ``train ease --include-valid``, ``evaluate --k 10 20``, ``tune ease --trials N``) in a
temporary folder, twice for ``train``: with ``--param l2=...`` (the tuned value) and with the
defaults. Then times ``serve.service.Service`` in this process (what ``musicrec serve`` calls per
request, without HTTP): ``recommend_user`` for the first N training listeners and ``similar`` for
N artists drawn at random (seed 0). Times are wall and CPU seconds (CPU = user + system of the child processes);
on a busy machine wall exceeds CPU, so the load average is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# the dense item-space EASE this replaced, measured once (not re-run here) on the same split and evaluator
BEFORE = ("Before (ease.py of commit ba8113f: a dense 14,160 x 14,160 B; same split and evaluator; "
          "2 cores, load ~1): `train ease --param l2=78.3 --param min_item_users=1` 98.9 s fit "
          "(102.8 s wall, 101.8 s CPU), folder 768 MB; with min_item_users=2 (the quickstart) 11.1 s fit, "
          "folder 139 MB, ndcg@10 0.2575 (the new model: 0.2575); `recommend_user` 2,143 ms per request "
          "(1,511 ms CPU) on the min_item_users=1 folder, which scipy copied whole (Fortran-ordered B) "
          "for every request.")


def run(*args: str) -> tuple[float, float, str]:
    """Run ``musicrec *args``; returns (wall s, CPU s of the child, stdout). Stops on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cli = "import sys; from musicrec.cli.main import main; sys.argv[0] = 'musicrec'; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"musicrec {' '.join(args)} failed:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def folder_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 2**20


def train(split: str, out: str, params: list[str]) -> dict:
    """``musicrec train ease`` -> {"wall_s", "cpu_s", "fit_s", "mb", "ndcg@10", ...}."""
    wall, cpu, _ = run("train", "ease", "--split", split, "--out", out, "--include-valid",
                       *[a for p in params for a in ("--param", p)])
    with open(os.path.join(out, "bundle.json"), encoding="utf-8") as fh:
        fit_s = json.load(fh).get("fit_s")
    report = out + ".json"
    run("evaluate", out, "--split", split, "--k", "10", "20", "--json", report)
    with open(report, encoding="utf-8") as fh:
        metrics = json.load(fh)["metrics"]
    return {"wall_s": wall, "cpu_s": cpu, "fit_s": fit_s, "mb": folder_mb(out), **metrics}


def request_latency(model_dir: str, n: int) -> dict:
    """Milliseconds per ``Service.recommend_user`` / ``Service.similar`` call (after one warm-up)."""
    from musicrec.serve.service import Service

    start = time.perf_counter()
    service = Service.load(model_dir)
    out = {"load_s": time.perf_counter() - start}
    rng = np.random.default_rng(0)
    users = [str(u) for u in service.train.users.ids[:n]]
    items = [str(i) for i in rng.choice(service.item_ids, size=min(n, len(service.item_ids)), replace=False)]
    for label, call, args in (("recommend_user", service.recommend_user, users), ("similar", service.similar, items)):
        call(args[0], k=10)
        times, cpu = [], time.process_time()
        for a in args:
            t = time.perf_counter()
            call(a, k=10)
            times.append(time.perf_counter() - t)
        times.sort()
        out[label] = {"mean_ms": 1e3 * sum(times) / len(times), "p50_ms": 1e3 * times[len(times) // 2],
                      "p99_ms": 1e3 * times[min(len(times) - 1, int(0.99 * len(times)))],
                      "cpu_ms": 1e3 * (time.process_time() - cpu) / len(times)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--l2", type=float, default=78.3, help="the tuned l2 of the README's HetRec table")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "ease_fit.md"))
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ease_fit_") as tmp:
        store, split = os.path.join(tmp, "store"), os.path.join(tmp, "split")
        run("ingest", "hetrec-lastfm-2k", os.path.join(args.data, "hetrec2011-lastfm-2k"), "--store", store)
        run("split", store, "--protocol", "user-holdout", "--out", split, "--seed", "0")
        rows = {f"l2={args.l2:g}": train(split, os.path.join(tmp, "tuned"), [f"l2={args.l2}"]),
                "defaults": train(split, os.path.join(tmp, "default"), [])}
        for label, row in rows.items():
            print(f"{label}: {json.dumps(row)}", flush=True)
        latency = request_latency(os.path.join(tmp, "default"), args.requests)
        print(f"latency: {json.dumps(latency)}", flush=True)
        tune_wall, tune_cpu, _ = run("tune", "ease", "--split", split, "--trials", str(args.trials),
                                     "--out", os.path.join(tmp, "tune"))
        with open(os.path.join(tmp, "tune", "trials.json"), encoding="utf-8") as fh:
            tuning = json.load(fh)
    load_end = os.getloadavg()[0]
    trial_fits = [t["fit_s"] for t in tuning["trials"] if t.get("fit_s") is not None]

    lines = [
        "# EASE on HetRec Last.fm 2K (user-holdout, seed 0, refit on train + valid)",
        "",
        f"`python benchmarks/ease_fit.py --l2 {args.l2:g} --trials {args.trials} --requests {args.requests}`; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"load average {load_start:.2f} at start, {load_end:.2f} at end "
        "(wall exceeds CPU when other jobs share the cores).",
        "",
        "| params | `train` wall s | `train` CPU s | fit s | folder MB | ndcg@10 | ndcg@20 | recall@20 "
        "| precision@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['fit_s']:.2f} | {r['mb']:.1f} | "
                     f"{r['ndcg@10']:.4f} | {r['ndcg@20']:.4f} | {r['recall@20']:.4f} | {r['precision@10']:.4f} |")
    lines += [
        "",
        "`train` includes starting Python and saving the folder; fit is the model's own fit (bundle.json).",
        "",
        f"Serving (default-trained model; `Service` in-process, no HTTP; loaded in {latency['load_s']:.2f} s), "
        f"{args.requests} requests each, k = 10:",
        "",
        "| call | mean ms | p50 ms | p99 ms | CPU ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in ("recommend_user", "similar"):
        r = latency[label]
        lines.append(f"| {label} | {r['mean_ms']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_ms']:.1f} |")
    lines += [
        "",
        f"`musicrec tune ease --trials {args.trials}`: {tune_wall:.1f} s wall, {tune_cpu:.1f} s CPU "
        f"({tune_wall / max(len(tuning['trials']), 1):.1f} s wall per trial; fits "
        f"{min(trial_fits):.2f}-{max(trial_fits):.2f} s); best {tuning['metric']} {tuning['value']:.4f} on valid "
        f"with {json.dumps(tuning['params'])}.",
        "",
        BEFORE,
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
