"""Hyperparameter tuning with Optuna on the validation part of a split.

Each model declares its search space next to its config (``Model.search_space(trial)``). A
trial fits on ``train`` and scores ``valid`` with the same full-ranking protocol as the final
test, so tuning never sees test data. TPE sampling; deep models report their validation metric
every epoch so the median pruner stops hopeless trials early, and the best epoch of the best
trial becomes ``epochs`` for the final refit on train + valid.

Parallel tuning (``engine`` and/or ``parallel > 1``, e.g. ``musicrec tune --engine ray``): Optuna
stays in the driver and asks for ``parallel`` trials at a time (TPE with the constant liar, so a
batch spreads out); each batch is evaluated by ``engine.map(run_trial, ...)``, one trial per Ray
task, which fits and validates one configuration in its worker (reading the split from its URL)
and the values are told back. What is lost against the sequential run: pruning — a worker cannot
ask the driver's study whether to stop, so deep-model trials run until their own early stopping
instead of being cut by the median pruner — and TPE sees the results of a batch only after the
whole batch, so ``parallel`` trials cost more than one sequential trial's worth of information.
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass, field

from musicrec import MusicrecError
from musicrec.models.base import check_k
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


def default_parallel(engine) -> int:
    """Trials at once when ``--parallel`` is not given: the CPUs of a Ray cluster, else 1."""
    if getattr(engine, "name", "local") != "ray":
        return 1
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# (split URL, tuning run) -> Split: a worker process reads the split once per tuning run; the
# run's token keeps a long-lived worker from reusing a split rewritten at the same URL
_SPLIT_CACHE: dict = {}


def _split_for(split: Split | None, split_url: str | None, token: str | None) -> Split:
    if split is not None:
        return split
    key = (split_url, token)
    if key not in _SPLIT_CACHE:
        _SPLIT_CACHE.clear()
        _SPLIT_CACHE[key] = Split.load(split_url)
    return _SPLIT_CACHE[key]


def run_trial(params: dict, name: str, metric: str, ks, split: Split | None = None,
              split_url: str | None = None, token: str | None = None) -> dict:
    """Fit ``name`` with ``params`` on the split's train part and score its validation part.

    Runs inside an engine worker (one tuning trial); the split comes as an object or is read
    from ``split_url`` (local path or fsspec URL). Returns ``{"value", "params", "fit_s"}``
    (``params["epochs"]`` = best epoch for deep models) or ``{"error": message}`` for a user
    error, so that the driver reports it as one line.
    """
    try:
        params = dict(params)
        value, fit_s = fit_and_score(name, _split_for(split, split_url, token), params, metric, ks)
    except MusicrecError as exc:
        return {"error": str(exc)}
    return {"value": float(value), "params": params, "fit_s": round(fit_s, 3)}


def fit_and_score(name: str, split: Split, params: dict, metric: str, ks, on_epoch=None) -> tuple[float, float]:
    """One trial: fit ``name`` with ``params`` on train, score ``metric`` on valid; returns
    (value, fit seconds). Deep models report their best epoch's value, and ``params["epochs"]``
    is set to that epoch (the refit on train + valid trains that long)."""
    from musicrec.evaluate.protocols import evaluate
    from musicrec.models.neural import NeuralRecommender

    model, fit_s = fit_model(name, split, params, metric=metric, on_epoch=on_epoch)
    if isinstance(model, NeuralRecommender):
        params["epochs"] = int(model.best_epoch_)
        return max(h["value"] for h in model.history_ if h["value"] is not None), fit_s
    return float(evaluate(model, split, ks=ks, on="valid").metrics[metric]), fit_s


def _tune_batches(study, cls, name: str, split: Split, split_url: str | None, n_trials: int, metric: str,
                  ks, base_params: dict | None, timeout_s: float | None, engine, parallel: int,
                  advance, on_trial) -> list[dict]:
    """Ask ``parallel`` trials, evaluate them with ``engine.map(run_trial)``, tell, repeat."""
    import optuna

    log: list[dict] = []
    start = time.perf_counter()
    # a URL travels to the workers instead of the frames (each worker reads the split once)
    shared = {"split_url": split_url, "token": uuid.uuid4().hex} if split_url is not None else {"split": split}
    while len(log) < n_trials and (timeout_s is None or time.perf_counter() - start < timeout_s):
        trials = [study.ask() for _ in range(min(parallel, n_trials - len(log)))]
        batch = [{**cls.search_space(t), **(base_params or {})} for t in trials]
        results = engine.map(run_trial, batch, name=name, metric=metric, ks=ks, **shared)
        for trial, params, res in zip(trials, batch, results):
            if "error" in res:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise MusicrecError(res["error"])
            study.tell(trial, res["value"])
            log.append({"number": trial.number, "params": res["params"], "value": res["value"],
                        "state": "complete", "fit_s": res["fit_s"]})
            _report(on_trial, log, n_trials)
        advance(len(trials))
    return log


def _report(on_trial, log: list[dict], n_trials: int) -> None:
    """Call ``on_trial(entry, done, n_trials, best)`` for the trial that just ended (if a callback)."""
    if on_trial is None:
        return
    values = [e["value"] for e in log if e["state"] == "complete"]
    on_trial(log[-1], len(log), n_trials, max(values) if values else None)


def tune(name: str, split: Split, n_trials: int = 20, metric: str | None = None, ks=(10, 20),
         base_params: dict | None = None, seed: int = 0, timeout_s: float | None = None,
         progress: bool = False, engine=None, parallel: int = 1, split_url: str | None = None,
         on_trial=None) -> TuneResult:
    """Search ``name``'s space for the params maximising ``metric`` on ``split``'s validation data.

    Parameters
    ----------
    timeout_s : float, optional
        Time budget in seconds: no trial *starts* after it (a running trial finishes), so a run
        ends within ``timeout_s`` plus one trial's time.
    on_trial : callable, optional
        ``on_trial(entry, done, n_trials, best)`` after each trial ends (completed or pruned):
        ``entry`` has ``number``, ``params``, ``value``, ``state``, ``fit_s``; ``best`` is the best
        completed value so far (None before the first).
    engine : engine or None
        ``musicrec.engine`` engine that evaluates the trials (see the module docstring). None
        with ``parallel == 1``: trials run one after the other in this process, with pruning.
    parallel : int
        Trials evaluated at once (batch size of the ask/tell loop).
    split_url : str, optional
        Where the workers read ``split`` from (a local path every worker can see, or an fsspec
        URL such as ``s3://bucket/split``); without it the split is shipped to them.
    """
    import optuna

    from musicrec.models.neural import NeuralRecommender

    if split.valid is None or split.valid.height == 0:
        raise MusicrecError("tuning needs a split with validation data (make it with a valid fraction)")
    cls = model_class(name)
    if not tunable(name):
        raise MusicrecError(f"{name} has no hyperparameters to tune")
    metric = metric or default_metric(split)
    if "@" not in metric:
        raise MusicrecError(f"metric must look like ndcg@10, got {metric!r}")
    at = metric.split("@")[1]
    at = int(at) if at.lstrip("-").isascii() and at.lstrip("-").isdigit() else at
    for k in (*ks, at):
        check_k(k)
    ks = sorted({*ks, at})
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

        start = time.perf_counter()
        try:
            value, fit_s = fit_and_score(name, split, params, metric, ks, on_epoch=on_epoch if deep else None)
        except optuna.TrialPruned:
            entry["fit_s"] = round(time.perf_counter() - start, 3)
            _report(on_trial, log, n_trials)
            raise
        entry.update(value=value, fit_s=round(fit_s, 3), state="complete")
        _report(on_trial, log, n_trials)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if parallel < 1:
        raise MusicrecError(f"parallel must be at least 1, got {parallel}")
    if engine is not None or parallel > 1:
        from musicrec.engine import LocalEngine

        with warnings.catch_warnings():     # constant_liar is flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        start = time.perf_counter()
        run = dict(study=study, cls=cls, name=name, split=split, split_url=split_url, n_trials=n_trials,
                   metric=metric, ks=ks, base_params=base_params, timeout_s=timeout_s,
                   engine=engine or LocalEngine(), parallel=parallel, on_trial=on_trial)
        if progress:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"tuning {name} ({metric} on valid, {parallel} at a time)", total=n_trials)
                log = _tune_batches(**run, advance=lambda n: bar.advance(task, n))
        else:
            log = _tune_batches(**run, advance=lambda n: None)
        if not log:
            raise MusicrecError(f"no {name} trial completed (timeout too short?)")
        best = max(log, key=lambda e: e["value"])
        return TuneResult(name, metric, dict(best["params"]), float(best["value"]), log,
                          time.perf_counter() - start)

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
