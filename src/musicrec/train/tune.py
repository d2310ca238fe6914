"""Hyperparameter tuning with Optuna on the validation part of a split.

Each model declares its search space next to its config (``Model.search_space(trial)``). A
trial fits on ``train`` and scores ``valid`` with the same full-ranking protocol as the final
test, so tuning never sees test data. TPE sampling; deep models report their validation metric
every epoch so the median pruner stops hopeless trials early, and the best epoch of the best
trial becomes ``epochs`` for the final refit on train + valid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from musicrec import MusicrecError
from musicrec.models.registry import model_class
from musicrec.preprocess.splitset import Split
from musicrec.train.fit import default_metric, fit_model


@dataclass
class TuneResult:
    model: str
    metric: str
    best_params: dict                 # includes "epochs" = best epoch for deep models
    best_value: float
    trials: list[dict] = field(default_factory=list)   # params, value, fit_s, state per trial
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"model": self.model, "metric": self.metric, "params": self.best_params,
                "value": self.best_value, "seconds": round(self.seconds, 1), "trials": self.trials}


def search_space_keys(name: str) -> set[str]:
    """Hyperparameters that ``name``'s search space sets (empty: nothing to tune)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return set(model_class(name).search_space(optuna.create_study().ask()))


def tunable(name: str) -> bool:
    """Whether ``name`` declares a non-empty search space."""
    return bool(search_space_keys(name))


def tune(name: str, split: Split, n_trials: int = 20, metric: str | None = None, ks=(10, 20),
         base_params: dict | None = None, seed: int = 0, timeout_s: float | None = None,
         progress: bool = False) -> TuneResult:
    """Search ``name``'s space for the params maximising ``metric`` on ``split``'s validation data."""
    import optuna

    from musicrec.evaluate.protocols import evaluate
    from musicrec.models.neural import NeuralRecommender

    if split.valid is None or split.valid.height == 0:
        raise MusicrecError("tuning needs a split with validation data (make it with a valid fraction)")
    cls = model_class(name)
    if not tunable(name):
        raise MusicrecError(f"{name} has no hyperparameters to tune")
    metric = metric or default_metric(split)
    if "@" not in metric:
        raise MusicrecError(f"metric must look like ndcg@10, got {metric!r}")
    ks = sorted({*ks, int(metric.split("@")[1])})
    deep = issubclass(cls, NeuralRecommender)
    log: list[dict] = []

    def objective(trial) -> float:
        params = {**cls.search_space(trial), **(base_params or {})}
        entry = {"number": trial.number, "params": params, "value": None, "state": "running"}
        log.append(entry)

        def on_epoch(epoch: int, value) -> None:
            if value is not None:
                trial.report(value, epoch)
                if trial.should_prune():
                    entry["state"] = f"pruned at epoch {epoch}"
                    raise optuna.TrialPruned()

        model, fit_s = fit_model(name, split, params, metric=metric, on_epoch=on_epoch if deep else None)
        if deep:
            params["epochs"] = int(model.best_epoch_)
            value = max(h["value"] for h in model.history_ if h["value"] is not None)
        else:
            value = float(evaluate(model, split, ks=ks, on="valid").metrics[metric])
        entry.update(value=value, fit_s=round(fit_s, 3), state="complete")
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
    start = time.perf_counter()
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"tuning {name} ({metric} on valid)", total=n_trials)
            study.optimize(objective, n_trials=n_trials, timeout=timeout_s,
                           callbacks=[lambda study, trial: bar.advance(task)])
    else:
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
    done = [e for e in log if e["state"] == "complete"]
    if not done:
        raise MusicrecError(f"no {name} trial completed (timeout too short?)")
    best = max(done, key=lambda e: e["value"])
    return TuneResult(name, metric, dict(best["params"]), float(best["value"]), log, time.perf_counter() - start)
