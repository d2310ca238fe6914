"""Wall time of `musicrec quickstart` on an idle machine and next to one CPU-bound process.

Each run uses a fresh MUSICREC_HOME (so fetch, ingest and split are included) and the datasets'
local mirror (../shared/data by default). "Loaded": a second process spins a single-threaded
numpy matrix product loop for the whole run, as another user's job would on a shared 2-core box.

    python benchmarks/quickstart_time.py [--mirror ../shared/data] [--runs idle loaded]

Writes benchmarks/results/quickstart_time.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUSY = ("import os; os.environ['OMP_NUM_THREADS']='1'\n"
        "import numpy as np\n"
        "a = np.random.default_rng(0).random((400, 400))\n"
        "while True: a = (a @ a) / 400.0 + 1e-3\n")


def run_quickstart(mirror: str, loaded: bool) -> dict:
    busy = None
    if loaded:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        busy = subprocess.Popen([sys.executable, "-c", BUSY], env=env)
        time.sleep(1.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "MUSICREC_HOME": os.path.join(tmp, "home")}
            start = time.perf_counter()
            proc = subprocess.run(["musicrec", "quickstart", "--from", mirror, "--out", os.path.join(tmp, "report")],
                                  env=env, capture_output=True, text=True, timeout=1800)
            wall = time.perf_counter() - start
            load = os.getloadavg()[0]
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if proc.returncode != 0:
        raise SystemExit(f"quickstart failed:\n{proc.stderr[-3000:]}")
    trials = {m: len(re.findall(rf"^\s*{m} trial \d+/", proc.stdout, flags=re.M))
              for m in ("itemknn", "ease", "als", "bpr")}
    return {"wall_s": wall, "load1": load, "trials": trials, "stdout": proc.stdout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--runs", nargs="+", default=["idle", "loaded"], choices=["idle", "loaded"])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "quickstart_time.md"))
    args = ap.parse_args()
    rows = []
    for kind in args.runs:
        res = run_quickstart(os.path.abspath(args.mirror), kind == "loaded")
        print(f"{kind}: {res['wall_s']:.0f} s, trials {res['trials']}, load {res['load1']:.2f}", file=sys.stderr)
        rows.append((kind, res))
    lines = ["`musicrec quickstart` (defaults: up to 20 trials and 40 s of tuning per model), fresh home, "
             f"{os.cpu_count()} cores. \"loaded\": one other process runs a single-threaded numpy loop "
             "throughout.", "",
             "| machine | wall s | itemknn trials | ease trials | als trials | bpr trials | load avg (1 min) at end |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, res in rows:
        t = res["trials"]
        lines.append(f"| {kind} | {res['wall_s']:.0f} | {t['itemknn']} | {t['ease']} | {t['als']} | {t['bpr']} "
                     f"| {res['load1']:.2f} |")
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
