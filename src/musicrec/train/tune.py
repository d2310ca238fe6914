"""Hyperparameter tuning with Optuna on the validation part of a split.

Each model has a search space below; a trial fits on ``train`` and scores ``valid`` with the
same full-ranking protocol as the final test, so tuning never sees test data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from musicrec import MusicrecError
from musicrec.preprocess.splitset import Split
from musicrec.train.fit import fit_model

# name -> function(trial) -> params. Ranges follow the papers' and libraries' usual settings.
SEARCH_SPACES: dict[str, Callable] = {
    "ease": lambda t: {"l2": t.suggest_float("l2", 10.0, 5000.0, log=True)},
    "als": lambda t: {
        "factors": t.suggest_categorical("factors", [32, 64, 128]),
        "regularization": t.suggest_float("regularization", 1e-3, 10.0, log=True),
        "alpha": t.suggest_float("alpha", 0.5, 50.0, log=True),
        "iterations": 15,
    },
    "bpr": lambda t: {
        "factors": t.suggest_categorical("factors", [32, 64, 128]),
        "learning_rate": t.suggest_float("learning_rate", 1e-3, 0.1, log=True),
        "regularization": t.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": t.suggest_categorical("iterations", [50, 100, 200]),
    },
    "itemknn": lambda t: {
        "neighbors": t.suggest_int("neighbors", 20, 1000, log=True),
        "shrink": t.suggest_float("shrink", 0.0, 200.0),
    },
    "sknn": lambda t: {
        "k": t.suggest_int("k", 20, 500, log=True),
        "sample_size": t.suggest_int("sample_size", 200, 5000, log=True),
    },
    "sr": lambda t: {"steps": t.suggest_int("steps", 1, 15)},
    "recently-played": lambda t: {"decay": t.suggest_float("decay", 0.3, 1.0)},
}


@dataclass
class TuneResult:
    model: str
    metric: str
    best_params: dict
    best_value: float
    trials: list[dict] = field(default_factory=list)   # params, value, fit_s per trial
    seconds: float = 0.0


def tune(name: str, split: Split, n_trials: int = 20, metric: str | None = None, ks=(10, 20),
         base_params: dict | None = None, seed: int = 0, timeout_s: float | None = None,
         progress: bool = False) -> TuneResult:
    """Search ``name``'s space for the params maximising ``metric`` on ``split``'s validation data."""
    import optuna

    from musicrec.evaluate.protocols import evaluate

    if split.valid is None or split.valid.height == 0:
        raise MusicrecError("tuning needs a split with validation data (make it with a valid fraction)")
    if name not in SEARCH_SPACES:
        raise MusicrecError(f"no search space for {name!r}; tunable: {', '.join(SEARCH_SPACES)}")
    metric = metric or ("mrr@20" if split.evaluation == "session" else "ndcg@10")
    ks = sorted({*ks, int(metric.split("@")[1])})
    log: list[dict] = []

    def objective(trial) -> float:
        params = {**(base_params or {}), **SEARCH_SPACES[name](trial)}
        model, fit_s = fit_model(name, split, params)
        result = evaluate(model, split, ks=ks, on="valid")
        value = float(result.metrics[metric])
        log.append({"params": params, "value": value, "fit_s": round(fit_s, 3)})
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    start = time.perf_counter()
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"tuning {name} ({metric} on valid)", total=n_trials)
            study.optimize(objective, n_trials=n_trials, timeout=timeout_s,
                           callbacks=[lambda study, trial: bar.advance(task)])
    else:
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
    best = {**(base_params or {}), **log[study.best_trial.number]["params"]}
    return TuneResult(name, metric, best, float(study.best_value), log, time.perf_counter() - start)
