"""Benchmark classic and deep models with the same tuning budget on real data.

    python benchmarks/deep.py [--data ../shared/data] [--trials 10] [--protocols 30music-track,30music-artist,hetrec]
                              [--models sr,sknn,...] [--out benchmarks/results/deep]

Every model is tuned with Optuna on the validation part with the same number of trials
(deep models early-stop per trial and are median-pruned), refit on train + valid (deep models
for their best epoch count), and scored once on test over the full catalogue. Each model
runs in its own process so its peak memory (max RSS) is measured. Reported per model: test
metrics, fit seconds, training throughput (examples/s; sequences or user rows), scoring
throughput (test users or session prefixes per second, full catalogue), peak RSS and
parameter count; plus a paired test of the best deep model against the best baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import polars as pl

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOLS = {
    # name: (dataset folder, reader, split protocol, item level, models)
    "30music-track": ("30music-200ks-test-slices", "30music", "session-lastday", "track",
                      ["most-popular", "recently-played", "sknn", "sr", "gru4rec", "gru4rec+repeat", "sasrec",
                       "sasrec+repeat", "nextitnet", "caser"]),
    "30music-artist": ("30music-200ks-test-slices", "30music", "session-lastday", "artist",
                       ["most-popular", "recently-played", "sknn", "sr", "gru4rec", "gru4rec+repeat", "sasrec",
                        "sasrec+repeat", "nextitnet", "caser"]),
    "hetrec": ("hetrec2011-lastfm-2k", "hetrec-lastfm-2k", "user-holdout", "artist",
               ["most-popular", "itemknn", "ease", "als", "multvae"]),
}
DEEP = {"gru4rec", "sasrec", "nextitnet", "caser", "multvae", "gru4rec+repeat", "sasrec+repeat"}
#: starting configurations of the deep models per protocol, found by hand on the validation
#: part (see the README); with --deep-trials > 0 Optuna searches around the model's space instead
DEEP_PARAMS: dict[str, dict[str, dict]] = {
    "30music-track": {
        "gru4rec": {"learning_rate": 0.01, "loss": "ce", "epochs": 10},
        "gru4rec+repeat": {"learning_rate": 0.01, "epochs": 10},
    },
    "30music-artist": {
        "gru4rec": {"learning_rate": 0.01, "loss": "ce", "epochs": 4},
        "gru4rec+repeat": {"learning_rate": 0.01, "epochs": 2},
        "sasrec": {"learning_rate": 0.003, "max_len": 20, "loss": "ce", "epochs": 5},
        "sasrec+repeat": {"learning_rate": 0.003, "max_len": 20, "epochs": 7},
    },
    "hetrec": {
        "multvae": {"anneal_cap": 1.0, "dropout": 0.7, "learning_rate": 0.003, "total_anneal_steps": 200, "epochs": 37},
    },
}
#: variants: (registry name, extra params)
VARIANTS = {"gru4rec+repeat": ("gru4rec", {"repeat_head": True, "loss": "ce"}),
            "sasrec+repeat": ("sasrec", {"repeat_head": True, "loss": "ce"})}
COLUMNS = {
    "session": ["hitrate@20", "mrr@20", "ndcg@10"],
    "user": ["precision@10", "recall@10", "f1@10", "ndcg@10", "precision@20", "recall@20", "f1@20", "ndcg@20"],
}


def n_parameters(model) -> int:
    if hasattr(model, "n_parameters"):
        return int(model.n_parameters())
    return int(sum(np.asarray(a).size for a in model._state().values()))


def run_one(split_dir: str, name: str, trials: int, params: dict, out: str, tune_timeout: float | None,
            threads: int) -> None:
    """Child process: tune + refit + evaluate one model, write JSON and per-row metrics."""
    import torch

    from musicrec.pipeline import compare
    from musicrec.preprocess.splitset import Split

    if threads:
        torch.set_num_threads(threads)
    split = Split.load(split_dir)
    ks = (10, 20)
    comp = compare(split, [name], ks=ks, trials=trials, params={name: params} if params else None,
                   log=lambda m: print(m, file=sys.stderr, flush=True), tune_timeout_s=tune_timeout)
    res, model = comp.results[0], comp.models[name]
    history = getattr(model, "history_", [])
    n_eval = res.info.get("n_prefixes") or res.info.get("n_users")
    summary = {
        "model": name, "metrics": res.metrics, "fit_s": res.info["fit_s"], "eval_s": res.info["eval_s"],
        "params": res.info["params"], "n_parameters": n_parameters(model),
        "train_examples_per_s": float(np.mean([h["examples_per_s"] for h in history])) if history else None,
        "epoch_s": float(np.mean([h["seconds"] for h in history])) if history else None,
        "epochs": len(history) or None,
        "score_per_s": n_eval / max(res.info["eval_s"], 1e-9), "n_eval": n_eval, "info": res.info,
        "tuning_s": comp.tuning[name].seconds if name in comp.tuning else 0.0,
        "trials_complete": sum(t["state"] == "complete" for t in comp.tuning[name].trials) if name in comp.tuning else 0,
        "trials_pruned": sum(t["state"].startswith("pruned") for t in comp.tuning[name].trials) if name in comp.tuning else 0,
        "threads": torch.get_num_threads(),
    }
    res.per_user.write_parquet(out + ".parquet")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, default=str)


def run_child(split_dir: str, name: str, trials: int, params: dict, out: str, timeout: float,
              tune_timeout: float | None = None, threads: int = 0) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", name, "--split", split_dir, "--trials", str(trials),
           "--json", out, "--params", json.dumps(params), "--threads", str(threads)]
    if tune_timeout:
        cmd += ["--tune-timeout", str(tune_timeout)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    deadline = start + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, rusage = os.wait4(proc.pid, 0)
            print(f"{name}: killed after {timeout:.0f}s", file=sys.stderr)
            return None
        time.sleep(0.5)
    if status != 0 or not os.path.exists(out):
        print(f"{name}: failed (status {status})", file=sys.stderr)
        return None
    with open(out, encoding="utf-8") as fh:
        summary = json.load(fh)
    summary["peak_rss_mb"] = rusage.ru_maxrss / 1024.0     # Linux: KiB
    summary["wall_s"] = time.perf_counter() - start
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, default=str)
    return summary


def significance(rows: list[dict], metric: str, id_cols: list[str]) -> str:
    """Paired t-test and Wilcoxon of the best deep model against the best baseline on ``metric``."""
    from scipy import stats

    deep = [r for r in rows if r["model"] in DEEP]
    base = [r for r in rows if r["model"] not in DEEP]
    if not deep or not base:
        return ""
    bd = max(deep, key=lambda r: r["metrics"][metric])
    bb = max(base, key=lambda r: r["metrics"][metric])
    a = pl.read_parquet(bd["per_row"]).select(*id_cols, pl.col(metric).alias("a"))
    b = pl.read_parquet(bb["per_row"]).select(*id_cols, pl.col(metric).alias("b"))
    j = a.join(b, on=id_cols).drop_nulls()
    diff = (j["a"] - j["b"]).to_numpy()
    p_t = stats.ttest_rel(j["a"].to_numpy(), j["b"].to_numpy()).pvalue if np.any(diff) else 1.0
    p_w = stats.wilcoxon(diff).pvalue if np.any(diff) else 1.0
    return (f"Best deep model **{bd['model']}** vs best baseline **{bb['model']}** on {metric}: "
            f"{j['a'].mean():.4f} vs {j['b'].mean():.4f} (diff {j['a'].mean() - j['b'].mean():+.4f}, "
            f"n = {j.height}, paired t-test p = {p_t:.3g}, Wilcoxon p = {p_w:.3g}).\n")


def trials_cell(r: dict) -> str:
    """Optuna trials that ran (complete + pruned), e.g. "20 (7 pruned)"; "–" when not tuned."""
    done, pruned = r.get("trials_complete"), r.get("trials_pruned")
    if done is None:
        n = r.get("info", {}).get("tuned_trials", 0)
        return str(n) if n else "–"
    if not done + pruned:
        return "–"
    return f"{done + pruned}" + (f" ({pruned} pruned)" if pruned else "")


def table(rows: list[dict], evaluation: str) -> str:
    cols = COLUMNS[evaluation]
    head = ["model", *cols, "trials", "fit s", "epoch s", "train ex/s", "score/s", "peak MB", "params"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    key = "mrr@20" if evaluation == "session" else "ndcg@10"
    for r in sorted(rows, key=lambda r: -r["metrics"][key]):
        f = lambda v, d=1: "–" if v is None else f"{v:,.{d}f}"  # noqa: E731
        lines.append("| " + " | ".join([
            r["model"] + (" (deep)" if r["model"] in DEEP else ""), *[f"{r['metrics'][c]:.4f}" for c in cols],
            trials_cell(r), f(r["fit_s"]), f(r["epoch_s"]), f(r["train_examples_per_s"], 0), f(r["score_per_s"], 0),
            f(r["peak_rss_mb"], 0), f"{r['n_parameters']:,}"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--trials", type=int, default=20, help="Optuna trials per baseline")
    ap.add_argument("--deep-trials", type=int, default=0,
                    help="Optuna trials per deep model (0: the DEEP_PARAMS configuration, early-stopped on valid)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--models", default="", help="comma-separated subset")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per model (tuning included); killed after")
    ap.add_argument("--tune-timeout", type=float, default=None,
                    help="stop a model's Optuna search after this many seconds (finished trials count)")
    ap.add_argument("--max-epochs", type=int, default=8, help="epoch cap of each deep tuning trial (--deep-trials > 0)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per model process (0: torch's default)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "deep"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--split", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        run_one(args.split, args.one, args.trials, json.loads(args.params), args.json, args.tune_timeout, args.threads)
        return 0

    from musicrec.pipeline import DEFAULT_PARAMS
    from musicrec.train.tune import search_space_keys
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path

    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="musicrec-deep-")
    only = {m for m in args.models.split(",") if m}
    sections = []
    for proto in [p for p in args.protocols.split(",") if p]:
        folder, reader, protocol, level, models = PROTOCOLS[proto]
        store = os.path.join(work, reader)
        if not os.path.isdir(store):
            ingest_path(reader, os.path.join(args.data, folder), store)
        split_dir = os.path.join(work, f"split-{proto}")
        split = make_split(store, protocol, item_level=level, seed=0, out=split_dir)
        rows = []
        for name in models:
            if only and name not in only:
                continue
            out = os.path.join(args.out, f"{proto}-{name}.json")
            model, extra = VARIANTS.get(name, (name, {}))
            hand = DEEP_PARAMS[proto].get(name, {})
            trials = args.deep_trials if name in DEEP else args.trials
            if name in DEEP and trials > 0:
                # Optuna searches the model's space; hand-found choices outside it (the loss) stay,
                # and ``epochs`` caps each trial (the refit uses the best trial's best epoch)
                space = search_space_keys(model)
                hand = {**{k: v for k, v in hand.items() if k not in space and k != "epochs"},
                        "epochs": args.max_epochs}
            params = {**DEFAULT_PARAMS.get(model, {}), **hand, **extra}
            r = run_child(split_dir, model, trials, params, out, args.timeout, args.tune_timeout, args.threads)
            if r:
                r["model"] = name
                r["per_row"] = out + ".parquet"
                rows.append(r)
                print(f"[{proto}] {name}: " + ", ".join(f"{k}={r['metrics'][k]:.4f}" for k in COLUMNS[split.evaluation]),
                      file=sys.stderr, flush=True)
        # models measured by earlier runs of this script (``--models`` subsets) join the table
        seen = {r["model"] for r in rows}
        for name in models:
            out = os.path.join(args.out, f"{proto}-{name}.json")
            if name not in seen and os.path.exists(out) and os.path.exists(out + ".parquet"):
                with open(out, encoding="utf-8") as fh:
                    r = json.load(fh)
                r.update(model=name, per_row=out + ".parquet")
                r.setdefault("peak_rss_mb", None)
                rows.append(r)
        metric = "mrr@20" if split.evaluation == "session" else "ndcg@10"
        id_cols = ["session_id", "position"] if split.evaluation == "session" else ["user_id"]
        if args.deep_trials:
            budget = f"up to {args.deep_trials} Optuna trials of at most {args.max_epochs} epochs"
            if args.tune_timeout:
                budget += f" within {args.tune_timeout / 60:.0f} min of tuning each (the trials column says how many ran)"
        else:
            budget = "hand-tuned on validation"
        text = (f"### {proto} ({protocol}, {level} level; baselines {args.trials} Optuna trials, deep models "
                f"{budget})\n\n") + table(rows, split.evaluation)
        text += "\n" + significance(rows, metric, id_cols)
        text += "\nParameters: " + "; ".join(f"{r['model']} {json.dumps(r['params'])}" for r in rows) + "\n"
        sections.append(text)
        with open(os.path.join(args.out, "deep.md"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(sections))
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
