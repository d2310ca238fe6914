"""End-to-end jobs built from the stage modules: compare models on a split, and the quickstart."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from musicrec.preprocess.splitset import Split

#: models of the quickstart, in table order. Session models (sknn, sr) need session data.
USER_MODELS = ("most-popular", "itemknn", "ease", "als", "bpr")
SESSION_MODELS = ("most-popular", "recently-played", "itemknn", "sknn", "sr")
#: fixed settings that are not tuned, by model name; none today: each model's own defaults hold
DEFAULT_PARAMS: dict[str, dict] = {}


@dataclass
class Comparison:
    results: list = field(default_factory=list)     # EvalResult per model, test data
    models: dict = field(default_factory=dict)      # name -> fitted Recommender (refit on train+valid)
    tuning: dict = field(default_factory=dict)      # name -> TuneResult


def compare(split: Split, models=USER_MODELS, ks=(10, 20), trials: int = 0, params: dict | None = None,
            progress: bool = False, log=print, seed: int = 0, tune_timeout_s: float | dict | None = None,
            trial_lines: bool = False) -> Comparison:
    """Tune (when ``trials`` > 0 and the split has validation data), refit on train+valid, score test.

    ``params`` maps model name -> fixed params that override defaults and tuning; for a deep model a
    fixed ``epochs`` is the most each tuning trial may run, and the refit uses the best trial's best
    epoch. ``tune_timeout_s`` (seconds; one number for every model, or a dict by model name) stops
    *starting* a model's tuning trials after that long (finished trials count). ``trial_lines``
    logs one line per tuning trial instead of a progress bar.
    """
    from musicrec.evaluate.protocols import evaluate
    from musicrec.models.base import check_k
    from musicrec.models.neural import NeuralRecommender
    from musicrec.models.registry import model_class
    from musicrec.train.fit import fit_model
    from musicrec.train.tune import tunable, tune

    for k in ks:
        check_k(k)
    out = Comparison()
    has_valid = split.valid is not None and split.valid.height > 0
    for name in models:
        fixed = {**DEFAULT_PARAMS.get(name, {}), **((params or {}).get(name, {}))}
        chosen = dict(fixed)
        deep = issubclass(model_class(name), NeuralRecommender)
        if trials > 0 and has_valid and tunable(name):
            budget = tune_timeout_s.get(name) if isinstance(tune_timeout_s, dict) else tune_timeout_s
            result = tune(name, split, n_trials=trials, ks=ks, base_params=fixed, seed=seed,
                          progress=progress and not trial_lines, timeout_s=budget,
                          on_trial=_trial_logger(name, log) if trial_lines else None)
            out.tuning[name] = result
            chosen = {**result.best_params, **fixed}
            if deep:
                chosen["epochs"] = result.best_params["epochs"]
            log(f"tuned {name}: {result.metric}={result.best_value:.4f} on valid with {chosen} "
                f"({len(result.trials)} trials, {result.seconds:.1f}s)")
        elif deep and has_valid and "epochs" not in fixed:
            # untuned deep model: one early-stopped run on train finds the epoch count for the refit
            probe, _ = fit_model(name, split, chosen, progress=progress)
            chosen["epochs"] = int(probe.best_epoch_)
        model, fit_s = fit_model(name, split, chosen, include_valid=has_valid, progress=progress)
        res = evaluate(model, split, ks=ks, on="test", progress=progress)
        res.info.update({"fit_s": round(fit_s, 3), "params": chosen,
                         "tuned_trials": len(out.tuning[name].trials) if name in out.tuning else 0})
        out.results.append(res)
        out.models[name] = model
        headline = ("hitrate", "mrr") if split.evaluation == "session" else ("ndcg", "recall")
        log(f"{name}: fit {fit_s:.1f}s, test " + ", ".join(f"{k}={v:.4f}" for k, v in res.metrics.items()
                                                         if k.split("@")[0] in headline))
    return out


def _trial_logger(name: str, log):
    """An ``on_trial`` callback for ``tune`` that logs one line per trial."""
    def on_trial(entry: dict, done: int, n_trials: int, best) -> None:
        value = f"{entry['value']:.4f}" if entry.get("value") is not None else entry["state"]
        best_s = f", best {best:.4f}" if best is not None else ""
        log(f"  {name} trial {done}/{n_trials}: {value} in {entry.get('fit_s') or 0:.1f}s{best_s}")
    return on_trial


#: quickstart tuning budget per model, seconds: no trial starts after it. Chosen so that the
#: whole quickstart stays under 5 minutes on 2 cores shared with one other busy process
#: (measured by benchmarks/quickstart_time.py); on an idle machine every trial usually fits.
QUICKSTART_TUNE_BUDGET_S = 40.0


def quickstart(home: str, mirror: str | None, out_dir: str, trials: int = 20, log=print,
               progress: bool = True, tune_budget_s: float | None = QUICKSTART_TUNE_BUDGET_S) -> dict:
    """HetRec 2011 Last.fm 2K end to end: fetch, ingest, split, tune, evaluate, report, recommend.

    ``tune_budget_s`` caps each model's tuning (seconds; None: no cap); one line is logged per trial.
    Returns a summary dict (paths, metrics, sample recommendations).
    """
    from musicrec.bundle import ModelBundle, bundle_meta
    from musicrec.evaluate.report import write_report
    from musicrec.ingest.datasets import fetch
    from musicrec.preprocess.split import make_split
    from musicrec.serve.service import Service
    from musicrec.store import ingest_path

    t0 = time.perf_counter()
    data = fetch("hetrec-lastfm-2k", home, mirror=mirror, progress=progress)
    log(f"dataset: {data}")
    store = os.path.join(home, "stores", "hetrec-lastfm-2k")
    report = ingest_path("hetrec-lastfm-2k", data, store)
    log(f"store: {store} ({report.plays_added} plays added, {report.plays_duplicate} already there, "
        f"{report.rejected} rejected)")
    split_dir = os.path.join(home, "splits", "hetrec-lastfm-2k-user-holdout")
    split = make_split(store, "user-holdout", out=split_dir, seed=0)
    log(f"split: {split_dir} (train {split.train.height}, valid {split.valid.height if split.valid is not None else 0}, "
        f"test {split.test.height} rows)")

    comp = compare(split, USER_MODELS, ks=(10, 20), trials=trials, log=log, progress=progress,
                   tune_timeout_s=tune_budget_s, trial_lines=True)
    comp.results.sort(key=lambda r: -r.metrics["ndcg@10"])
    os.makedirs(out_dir, exist_ok=True)
    best = comp.results[0]
    ran = ", ".join(f"{name} {len(res.trials)}" for name, res in comp.tuning.items())
    budget = f" (at most {tune_budget_s:.0f} s of tuning per model)" if tune_budget_s else ""
    extra = (f"Data: HetRec 2011 Last.fm 2K, protocol user-holdout (seed 0), up to {trials} Optuna trials per "
             f"tunable model{budget}; trials run: {ran}.\n")
    report_path = write_report(comp.results, out_dir, title="musicrec quickstart: HetRec 2011 Last.fm 2K", extra_md=extra)

    bundle_dir = os.path.join(out_dir, "models", best.model)
    # compare refits every model on train + valid
    bundle = ModelBundle(comp.models[best.model], split.items, split.users,
                         bundle_meta(split, split_dir, include_valid=True, fit_s=best.info.get("fit_s"),
                                     params=best.info.get("params", {})))
    bundle.save(bundle_dir)
    listener = sample_listener(split)
    recs = Service(bundle, bundle_dir, one_off=True).recommend_user(listener, k=10)   # what the server answers
    held_out = set(split.test.filter(split.test["user_id"] == int(_store_user(split, listener)))["item_id"].to_list())
    names = dict(zip(split.items["item_id"].to_list(), split.items["name"].to_list()))
    return {"report": report_path, "results": comp.results, "best": best.model, "bundle": bundle_dir,
            "listener": listener, "recommendations": recs, "held_out": held_out,
            "held_out_names": sorted(names.get(i, str(i)) for i in held_out),
            "history": _top_history(bundle, listener), "seconds": time.perf_counter() - t0}


def sample_listener(split: Split) -> str:
    """A deterministic example listener: the lowest original id among test users."""
    test_users = set(split.test["user_id"].unique().to_list())
    users = split.users.filter(split.users["user_id"].is_in(list(test_users)))
    if users.height and users["source_id"].null_count() < users.height:
        ids = users.drop_nulls("source_id")["source_id"].to_list()
        return sorted(ids, key=lambda s: (len(s), s))[0]
    return str(min(test_users))


def _store_user(split: Split, listener: str) -> int:
    match = split.users.filter(split.users["source_id"] == listener)
    return int(match["user_id"][0]) if match.height else int(listener)


def _top_history(bundle, listener: str, n: int = 5) -> list[str]:
    import numpy as np

    u = bundle.user_index(listener)
    row = bundle.model.train_.matrix[u]
    order = np.argsort(-row.data, kind="stable")[:n]
    return [bundle.display[int(row.indices[o])] for o in order]
