"""The two-stage ranker against the best tuned single model, on three benchmarks.

    python benchmarks/ranker.py [--data ../shared/data] [--trials 20] [--only hetrec|30music-track|30music-artist]
                                [--deep gru4rec,sasrec]

1. HetRec 2011 Last.fm 2K, ``user-holdout`` (seed 0): NDCG@10 (headline) and Recall@20.
2. 30Music 200ks slices, ``session-lastday``, next track: MRR@20 (headline) and HR@20.
3. The same, next artist.

Every single model is tuned with Optuna on the validation part (``--trials`` each), refitted on
train + valid and scored once on test (``pipeline.compare``, the standard convention). The ranker
takes the tuned single models as its candidates (``candidate_params``), is fitted on train + valid
as well (it carves its own learning slice from that: see ``models/ranker.py``) and is scored once
on test. Paired tests (t-test and Wilcoxon) are over the same users / prefixes. Results go to
``benchmarks/results/ranker.md`` and ``ranker.json``. With ``--deep``, the ablation: the ranker
again with the deep models (default settings, ``--deep-epochs`` each, as there is no validation part
to stop on) added to its candidates, against the ranker without them (paired tests over the same
queries; ``ranker_deep.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

BENCHMARKS = {
    "hetrec": dict(source="hetrec-lastfm-2k", folder="hetrec2011-lastfm-2k", protocol="user-holdout", level=None,
                   singles=("most-popular", "itemknn", "ease", "als", "bpr"), head="ndcg@10", second="recall@20",
                   ks=(10, 20), candidates="ease,als,itemknn,bpr,most-popular"),
    "30music-track": dict(source="30music", folder="30music-200ks-test-slices", protocol="session-lastday",
                          level="track", singles=("most-popular", "recently-played", "itemknn", "sknn", "sr"),
                          head="mrr@20", second="hitrate@20", ks=(20,), candidates="sr,sknn,itemknn,recently-played"),
    "30music-artist": dict(source="30music", folder="30music-200ks-test-slices", protocol="session-lastday",
                           level="artist", singles=("most-popular", "recently-played", "itemknn", "sknn", "sr"),
                           head="mrr@20", second="hitrate@20", ks=(20,), candidates="recently-played,sknn,sr,itemknn"),
}


def run(name: str, spec: dict, data: str, work: str, trials: int, ranker_params: dict, log,
        deep: tuple = (), deep_epochs: int = 8) -> dict:
    from musicrec.evaluate.protocols import evaluate
    from musicrec.evaluate.stats import paired_test
    from musicrec.pipeline import compare
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path
    from musicrec.train.fit import fit_model

    store = os.path.join(work, spec["source"])
    if not os.path.exists(store):
        ingest_path(spec["source"], os.path.join(data, spec["folder"]), store)
    kwargs = {"item_level": spec["level"]} if spec["level"] else {}
    split = make_split(store, spec["protocol"], seed=0, **kwargs)
    t0 = time.perf_counter()
    comp = compare(split, spec["singles"], ks=spec["ks"], trials=trials, log=log)
    tune_s = time.perf_counter() - t0
    singles = sorted(comp.results, key=lambda r: -r.metrics[spec["head"]])
    best = singles[0]
    tuned = {r.model: r.info.get("params", {}) for r in comp.results}
    params = {"candidates": spec["candidates"], **ranker_params,
              "candidate_params": json.dumps({n: tuned.get(n, {}) for n in spec["candidates"].split(",")})}
    model, fit_s = fit_model("ranker", split, params, include_valid=True)
    t1 = time.perf_counter()
    ranked = evaluate(model, split, ks=spec["ks"], name="ranker", fit_s=fit_s)
    eval_s = time.perf_counter() - t1
    rows = []
    for metric in (spec["head"], spec["second"]):
        test = paired_test(ranked, best, metric)
        rows.append({"metric": metric, "ranker": ranked.metrics[metric], "best_single": best.model,
                     "single": best.metrics[metric], "gain": ranked.metrics[metric] / max(best.metrics[metric], 1e-12) - 1,
                     "p_t": test["p_value"], "p_wilcoxon": test["p_wilcoxon"], "n": test["n"]})
    imp = sorted(model.feature_importance().items(), key=lambda kv: -kv[1])
    ablation = ablate(split, spec, params, ranked, deep, deep_epochs) if deep else []
    return {"ablation": ablation, "benchmark": name, "rows": rows, "fit_s": fit_s, "eval_s": eval_s, "tune_s": tune_s,
            "n_queries": ranked.info.get("n_prefixes", ranked.info.get("n_users")),
            "singles": {r.model: {spec["head"]: r.metrics[spec["head"]], spec["second"]: r.metrics[spec["second"]]}
                        for r in singles},
            "importance": imp[:8], "params": {k: v for k, v in params.items() if k != "candidate_params"},
            "tuned": tuned}


def ablate(split, spec: dict, params: dict, without, deep: tuple, deep_epochs: int) -> list[dict]:
    """The ranker again with the deep models (default settings, ``deep_epochs`` epochs) added to its
    candidates; paired tests of with vs without on both metrics, over the same test queries."""
    from musicrec.evaluate.protocols import evaluate
    from musicrec.evaluate.stats import paired_test
    from musicrec.train.fit import fit_model

    # without a validation part to stop on, each deep candidate trains for a fixed number of epochs
    cand = {**json.loads(params["candidate_params"]), **{d: {"epochs": deep_epochs} for d in deep}}
    with_params = {**params, "candidates": params["candidates"] + "," + ",".join(deep),
                   "candidate_params": json.dumps(cand)}
    model, fit_s = fit_model("ranker", split, with_params, include_valid=True)
    ranked = evaluate(model, split, ks=spec["ks"], name="ranker+" + "+".join(deep), fit_s=fit_s)
    imp = sorted(model.feature_importance().items(), key=lambda kv: -kv[1])
    rows = []
    for metric in (spec["head"], spec["second"]):
        test = paired_test(ranked, without, metric)
        rows.append({"deep": "+".join(deep), "metric": metric, "with": ranked.metrics[metric],
                     "without": without.metrics[metric], "p_t": test["p_value"], "p_wilcoxon": test["p_wilcoxon"],
                     "n": test["n"], "fit_s": fit_s, "importance": imp[:8]})
    return rows


def markdown(results: list[dict], args) -> str:
    lines = ["| benchmark | metric | best tuned single | single | ranker | change | p (paired t) | p (Wilcoxon) | n |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['benchmark']} | {row['metric']} | {row['best_single']} | {row['single']:.4f} | "
                         f"{row['ranker']:.4f} | {row['gain']:+.1%} | {row['p_t']:.2g} | {row['p_wilcoxon']:.2g} | "
                         f"{row['n']} |")
    lines.append("")
    for r in results:
        singles = ", ".join(f"{m} {v[r['rows'][0]['metric']]:.4f}" for m, v in r["singles"].items())
        imp = ", ".join(f"{k} {v:.2f}" for k, v in r["importance"])
        lines += [f"- **{r['benchmark']}**: ranker {json.dumps(r['params'])}; fit {r['fit_s']:.0f} s "
                  f"(candidates fitted twice + LightGBM), scoring {r['eval_s']:.0f} s for {r['n_queries']} queries; "
                  f"tuning the singles {r['tune_s']:.0f} s. Singles ({r['rows'][0]['metric']}): {singles}. "
                  f"Top features by gain: {imp}."]
    ablation = [(r["benchmark"], a) for r in results for a in r.get("ablation", [])]
    if ablation:
        lines += ["", "Deep candidates (default settings) added to the ranker's candidates, same test queries:", "",
                  "| benchmark | deep candidates | metric | without | with | change | p (paired t) | p (Wilcoxon) | fit s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for bench, a in ablation:
            lines.append(f"| {bench} | {a['deep']} | {a['metric']} | {a['without']:.4f} | {a['with']:.4f} | "
                         f"{a['with'] / max(a['without'], 1e-12) - 1:+.1%} | {a['p_t']:.2g} | {a['p_wilcoxon']:.2g} | "
                         f"{a['fit_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--only", choices=list(BENCHMARKS), action="append")
    ap.add_argument("--param", action="append", default=[], help="ranker parameter name=value")
    ap.add_argument("--deep", default="", help="ablation: deep models (comma-separated) added to the candidates")
    ap.add_argument("--deep-epochs", type=int, default=8, help="epochs of each deep candidate (no validation)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    from musicrec.train.fit import parse_param

    ranker_params = dict(parse_param(p) for p in args.param)
    work = tempfile.mkdtemp(prefix="musicrec-ranker-")
    results = []
    deep = tuple(d for d in args.deep.split(",") if d)
    for name in args.only or list(BENCHMARKS):
        results.append(run(name, BENCHMARKS[name], args.data, work, args.trials, ranker_params,
                           lambda m: print(m, file=sys.stderr, flush=True), deep=deep,
                           deep_epochs=args.deep_epochs))
        print(markdown(results[-1:], args), flush=True)
    os.makedirs(args.out, exist_ok=True)
    tag = ("" if not args.only else "_" + "_".join(args.only)) + ("_deep" if args.deep else "")
    with open(os.path.join(args.out, f"ranker{tag}.md"), "w") as fh:
        fh.write(f"`python benchmarks/ranker.py --trials {args.trials}"
                 + "".join(f" --only {o}" for o in args.only or []) + "".join(f" --param {p}" for p in args.param)
                 + (f" --deep {args.deep} --deep-epochs {args.deep_epochs}" if args.deep else "")
                 + f"`; 2 CPUs; load average {os.getloadavg()[0]:.2f} at the end.\n\n" + markdown(results, args))
    with open(os.path.join(args.out, f"ranker{tag}.json"), "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
