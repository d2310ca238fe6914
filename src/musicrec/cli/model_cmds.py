"""Commands that train, evaluate and apply models: train, tune, evaluate, compare, recommend,
similar, quickstart."""

from __future__ import annotations

import json
import os
from typing import Optional

import typer

from musicrec import MusicrecError, fsio

QUICK_METRICS = ["ndcg@10", "ndcg@20", "recall@10", "recall@20", "precision@10", "map@10", "coverage@10"]


def _console():
    from rich.console import Console

    return Console()


def _params(items: list[str] | None) -> dict:
    from musicrec.train.fit import parse_param

    return dict(parse_param(p) for p in (items or []))


def _load_split(path: str):
    from musicrec.preprocess.splitset import Split

    if fsio.is_local(path) and not os.path.isdir(fsio.filesystem(path)[1]):
        raise MusicrecError(f"{path}: no such split folder; make one with `musicrec split`")
    return Split.load(path)


def _write_out(target: str, write_local) -> str:
    """Run ``write_local(path)`` on ``target`` when local; for an fsspec URL write into a temporary
    local folder first and upload it (a file or a whole folder). Returns ``target``."""
    import tempfile

    if fsio.is_local(target):
        write_local(target)
        return target
    with tempfile.TemporaryDirectory(prefix="musicrec-out-") as tmp:
        local = os.path.join(tmp, "out")
        write_local(local)
        if os.path.isdir(local):
            for root, _, files in os.walk(local):
                for name in files:
                    src = os.path.join(root, name)
                    rel = os.path.relpath(src, local).replace(os.sep, "/")
                    with open(src, "rb") as fh:
                        data = fh.read()
                    fsio.atomic_write(fsio.join(target, rel), lambda out, data=data: out.write(data))
        else:
            with open(local, "rb") as fh:
                data = fh.read()
            fsio.atomic_write(target, lambda out: out.write(data))
    return target


def _checkpoints(out: str, resume: bool) -> str | None:
    """OUT/checkpoints for a local model folder; deep-model checkpoints stay local, so a remote
    OUT trains without them (and cannot --resume)."""
    from musicrec.train.distributed import default_checkpoints

    if fsio.is_local(out):
        return default_checkpoints(out)
    if resume:
        raise MusicrecError(f"--resume needs a local model folder (checkpoints are local files), not {out}")
    return None


def _ks(ctx: typer.Context, k: list[int]) -> list[int]:
    """``--k 10 20`` arrives as ``--k 10`` plus an extra argument ``20``; accept both spellings."""
    extra = []
    for arg in ctx.args:
        if not (arg.isascii() and arg.isdigit()):
            raise MusicrecError(f"unexpected argument {arg!r}")
        extra.append(int(arg))
    ks = sorted({*k, *extra})
    if not ks or min(ks) < 1:
        raise MusicrecError(f"--k values must be integers >= 1, got {', '.join(map(str, ks))}")
    return ks


def _check_k(k: int) -> None:
    if k < 1:
        raise MusicrecError(f"-k must be at least 1, got {k}")


def _print_cards(console, cards: list[dict], title: str, as_json: bool = False) -> None:
    """Recommendation cards (``serve.service``) as a table, or as the JSON the HTTP API returns."""
    if as_json:
        typer.echo(json.dumps(cards, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title=title)
    for col in ("#", "name", "score", "why"):
        table.add_column(col)
    for r, card in enumerate(cards, 1):
        name = card["name"] if not card.get("artist") or card["artist"] == card["name"] else \
            f"{card['name']} — {card['artist']}"
        table.add_row(str(r), name, f"{card['score']:.4f}", card["reason"])
    console.print(table)


def register(app: typer.Typer) -> None:
    extra_args = {"allow_extra_args": True, "ignore_unknown_options": False}

    @app.command()
    def train(
        model: str = typer.Argument(..., help="model name (see `musicrec models`)"),
        split: str = typer.Option(..., "--split", help="split folder"),
        out: str = typer.Option(..., "--out", help="model folder to write"),
        param: Optional[list[str]] = typer.Option(None, "--param", help="name=value, repeatable"),
        config: Optional[str] = typer.Option(None, "--config", help="best.json from `musicrec tune --out`"),
        include_valid: bool = typer.Option(False, "--include-valid", help="train on train+valid (after tuning)"),
        resume: bool = typer.Option(False, "--resume", help="deep models: continue from OUT/checkpoints"),
        nproc: int = typer.Option(1, "--nproc", help="deep models: data-parallel (DDP) processes"),
        launcher: str = typer.Option("spawn", "--launcher", help="spawn (local processes) or ray (Ray Train)"),
    ):
        """Train one model on a split and save it (arrays + JSON, no pickles).

        Deep models early-stop on the validation part unless --include-valid is given, and
        checkpoint every epoch into OUT/checkpoints (resume an interrupted run with --resume).
        With --nproc N they train data-parallel (DDP; gloo on CPU, NCCL on GPUs) in N local
        processes or N Ray Train workers; under torchrun, run this command
        as the module `musicrec.cli.main` (see `musicrec.train.distributed`).
        """
        from musicrec.bundle import ModelBundle, bundle_meta
        from musicrec.train.fit import fit_model, read_tuned_params

        params = {}
        if config:
            cfg_model, params = read_tuned_params(config)
            if cfg_model and cfg_model != model:
                raise MusicrecError(f"{config} holds parameters of {cfg_model!r}, not {model!r}")
        params.update(_params(param))
        from musicrec.bundle import train_model
        from musicrec.train import distributed

        if distributed.under_torchrun():  # torchrun runs this same command once per rank
            me, done = distributed.run_in_group(train_model, model, split, out, params, include_valid,
                                                resume, True, _checkpoints(out, resume))
            if me == 0:
                typer.echo(f"trained {model} on {done['world_size']} processes (torchrun) in {done['fit_s']:.2f}s, "
                           f"best epoch {done['best_epoch']} -> {out}")
            return
        if nproc != 1 or launcher != "spawn":

            _load_split(split)              # a missing folder fails here, not in N workers
            done = distributed.launch(launcher, train_model, nproc, model, split, out, params,
                                      include_valid, resume, True, _checkpoints(out, resume))
            typer.echo(f"trained {model} on {done['world_size']} processes ({launcher}) in {done['fit_s']:.2f}s "
                       f"on {done['n_users']} users x {done['n_items']} items, best epoch {done['best_epoch']} -> {out}")
            return
        sp = _load_split(split)
        fitted, fit_s = fit_model(model, sp, params, include_valid=include_valid,
                                  checkpoint_dir=_checkpoints(out, resume), resume=resume, progress=True)
        ModelBundle(fitted, sp.items, sp.users,
                    bundle_meta(sp, split, include_valid, fit_s=fit_s, params=fitted.get_params())).save(out)
        extra = f", best epoch {fitted.best_epoch_}" if hasattr(fitted, "best_epoch_") else ""
        typer.echo(f"trained {model} in {fit_s:.2f}s on {fitted.train_.n_users} users x "
                   f"{fitted.train_.n_items} items{extra} -> {out}")

    @app.command()
    def models():
        """List the available models and their hyperparameters."""
        from musicrec.models.registry import MODELS

        for name, cls in MODELS.items():
            params = ", ".join(f"{k}={v!r}" for k, v in cls().get_params().items())
            typer.echo(f"{name:16s} {params}")

    @app.command(context_settings=extra_args)
    def evaluate(
        ctx: typer.Context,
        model_dir: str = typer.Argument(..., help="model folder from `musicrec train`"),
        split: str = typer.Option(..., "--split"),
        k: list[int] = typer.Option([10, 20], "--k", help="cut-offs, e.g. --k 10 20"),
        json_path: Optional[str] = typer.Option(None, "--json", help="write metrics JSON here"),
        on: str = typer.Option("test", "--on", help="test or valid"),
        allow_other_split: bool = typer.Option(
            False, "--allow-other-split", help="score the model on a split other than the one it was trained on"),
        relevant: str = typer.Option(
            "all", "--relevant", metavar="[all|reachable]",
            help="all: every held-out item is relevant, also those missing from training (the standard, "
                 "as RecBole/Elliot); reachable: only training-catalogue items (musicrec before issue 11)"),
    ):
        """Full-ranking evaluation of a trained model on a split's test (or valid) data.

        The split must be the one the model was trained on (its folder records a fingerprint of
        the training rows); --allow-other-split scores it on another one deliberately. By default
        each listener's relevant set is all their held-out items, and their training (and, for
        test, validation) items are left out of the ranking; --relevant reachable gives the old,
        inflated convention. The --json output counts unreachable items (`n_relevant_unreachable`).
        """
        from musicrec.bundle import check_split, read_meta
        from musicrec.evaluate.protocols import evaluate as run_eval
        from musicrec.evaluate.report import format_table, write_json
        from musicrec.models.registry import load_model

        ks = _ks(ctx, k)
        sp = _load_split(split)
        model = load_model(model_dir)
        meta = read_meta(model_dir)
        if not allow_other_split and not check_split(meta, sp, split):
            typer.echo(f"warning: {model_dir} does not record the split it was trained on (an older model "
                       "folder); cannot check that it is --split", err=True)
        if on == "valid" and meta.get("include_valid"):
            raise MusicrecError(f"{model_dir} was trained on train + validation (--include-valid), so its "
                                "validation scores would be measured on training data; evaluate it --on test")
        result = run_eval(model, sp, ks=ks, on=on, progress=True, relevant=relevant)
        _console().print(format_table([result], ks))
        if json_path:
            _write_out(json_path, lambda path: write_json(result, path))
            typer.echo(f"wrote {json_path}")

    @app.command()
    def tune(
        model: str = typer.Argument(...),
        split: str = typer.Option(..., "--split"),
        trials: int = typer.Option(20, "--trials"),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting trials after this many seconds"),
        metric: Optional[str] = typer.Option(None, "--metric", help="default ndcg@10 (users) / mrr@20 (sessions)"),
        param: Optional[list[str]] = typer.Option(None, "--param", help="fixed name=value, repeatable"),
        out: Optional[str] = typer.Option(None, "--out", help="folder (or URL) for best.json and trials.json"),
        engine: str = typer.Option("local", "--engine", help="local | ray: where the trials run"),
        parallel: Optional[int] = typer.Option(
            None, "--parallel", help="trials evaluated at once (default: 1 locally, the cluster's CPUs on Ray)"),
        ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                  help="with --engine ray: a running cluster (default: start Ray here)"),
    ):
        """Tune a model's hyperparameters with Optuna (TPE, median pruning) on the split's validation data.

        With --engine ray the trials run --parallel at a time as Ray tasks (no pruning there; see
        `musicrec.train.tune`). `musicrec train MODEL --config OUT/best.json --include-valid` then
        refits with the best ones.
        """
        from musicrec.cli.common import engine_from_options
        from musicrec.train.tune import default_parallel
        from musicrec.train.tune import tune as run_tune

        if trials < 1:
            raise MusicrecError("--trials must be at least 1")
        if parallel is not None and parallel < 1:
            raise MusicrecError("--parallel must be at least 1")
        sp = _load_split(split)
        with engine_from_options(engine, ray_address) as runner:
            n = parallel or default_parallel(runner)
            batched = engine != "local" or n > 1
            res = run_tune(model, sp, n_trials=trials, metric=metric, base_params=_params(param),
                           timeout_s=timeout, progress=True, engine=runner if batched else None, parallel=n,
                           split_url=fsio.absolute(split))
        done = sum(t["state"] == "complete" for t in res.trials)
        typer.echo(f"best {res.metric} on valid = {res.best_value:.4f} with {json.dumps(res.best_params)} "
                   f"({done} of {len(res.trials)} trials completed, {res.seconds:.0f}s)")
        if out:
            fsio.makedirs(out)
            summary = res.to_json()
            fsio.atomic_write_json(fsio.join(out, "trials.json"), summary)
            fsio.atomic_write_json(fsio.join(out, "best.json"), {k: summary[k] for k in ("model", "metric", "params", "value")})
            typer.echo(f"wrote {fsio.join(out, 'best.json')}")

    @app.command(context_settings=extra_args)
    def compare(
        ctx: typer.Context,
        split: str = typer.Option(..., "--split"),
        models: str = typer.Option("", "--models", help="comma-separated; default depends on the split"),
        trials: int = typer.Option(0, "--trials", help="Optuna trials per tunable model (0 = defaults)"),
        k: list[int] = typer.Option([10, 20], "--k"),
        out: Optional[str] = typer.Option(None, "--out", help="write a Markdown report folder here"),
    ):
        """Train, (tune,) and evaluate several models on one split; print a ranked table."""
        from musicrec.evaluate.report import format_table, write_report
        from musicrec.pipeline import SESSION_MODELS, USER_MODELS
        from musicrec.pipeline import compare as run_compare

        sp = _load_split(split)
        names = [m for m in models.split(",") if m] or list(SESSION_MODELS if sp.evaluation == "session" else USER_MODELS)
        ks = _ks(ctx, k)
        comp = run_compare(sp, names, ks=ks, trials=trials, log=typer.echo, progress=True)
        _console().print(format_table(comp.results, ks))
        if out:
            written = []
            _write_out(out, lambda path: written.append(write_report(comp.results, path)))
            typer.echo(f"report: {written[0] if '://' not in out else out.rstrip('/') + '/report.md'}")

    @app.command()
    def recommend(
        model_dir: str = typer.Argument(...),
        user: Optional[str] = typer.Option(None, "--user", help="listener's original id"),
        seed: Optional[list[str]] = typer.Option(None, "--seed", help="an artist/track name a new listener likes; repeatable"),
        tag: Optional[list[str]] = typer.Option(None, "--tag", help="a genre/tag a new listener likes; repeatable"),
        history: Optional[str] = typer.Option(None, "--history", help="your own listening history: a Spotify or "
                                                                      "ListenBrainz export or a CSV, zipped or not"),
        history_format: Optional[str] = typer.Option(None, "--history-format",
                                                     help="spotify-history, listenbrainz or csv (default: recognised)"),
        k: int = typer.Option(10, "-k", "--k"),
        include_seen: bool = typer.Option(False, "--include-seen",
                                          help="allow items the listener already played (or the seeds themselves)"),
        as_json: bool = typer.Option(False, "--json", help="print the items as JSON (as the HTTP API answers)"),
    ):
        """Recommend for a known listener (--user), a new one (--seed ARTIST ... or --tag GENRE ...) or
        anyone's own export (--history PATH: folded in without retraining), with reasons."""
        from musicrec.serve.service import Service

        if sum([user is not None, bool(seed), bool(tag), history is not None]) != 1:
            raise MusicrecError("give either --user ID, one or more --seed NAME, one or more --tag TAG, "
                                "or --history EXPORT")
        _check_k(k)
        # the same core as the HTTP API and the page: the same items and reasons
        svc = Service.load(model_dir, one_off=True)
        if history is not None:
            from musicrec.serve.history import history_of

            found = history_of(svc, history, history_format)
            cards = svc.recommend_history(found.items, found.plays, k=k, exclude_seen=not include_seen)
            _history_note(found, svc.item_level)
            title = f"top {k} for this listening history ({svc.model.name})"
        elif user is not None:
            cards = svc.recommend_user(user, k=k, exclude_seen=not include_seen)
            title = f"top {k} for listener {user} ({svc.model.name})"
        else:
            cards = svc.recommend_session([], list(seed or []), k=k, exclude_seen=not include_seen,
                                          seed_tags=list(tag or []))
            title = f"top {k} for a new listener who likes {', '.join(seed or tag)} ({svc.model.name})"
        _print_cards(_console(), cards, title, as_json)

    def _history_note(found, item_level: str) -> None:
        """How much of the export the model knows, on stderr (stdout stays the answer)."""
        kind = "artists" if item_level == "artist" else "tracks"
        note = (f"{found.source}: {found.n_plays:,} plays, {found.n_matched:,} "
                f"({found.n_matched / max(found.n_plays, 1):.0%}) of {kind} the model knows "
                f"({len(set(found.items.tolist())):,} {kind})")
        if found.unmatched:
            top = ", ".join(f"{n} ({c:,})" for n, c in found.unmatched[:5])
            note += f"; not in the catalogue: {len(found.unmatched):,} {kind}, most played {top}"
        typer.echo(note, err=True)

    @app.command()
    def similar(
        model_dir: str = typer.Argument(...),
        name: str = typer.Argument(..., help="artist (or track) name, store id or source id; forgiving match"),
        k: int = typer.Option(10, "-k", "--k"),
        as_json: bool = typer.Option(False, "--json", help="print the items as JSON (as the HTTP API answers)"),
    ):
        """Items most similar to one artist/track, each with why (listeners in common, shared tags)."""
        from musicrec.serve.service import Service

        _check_k(k)
        item, cards = Service.load(model_dir, one_off=True).similar(name, k=k)
        _print_cards(_console(), cards, f"similar to {item['name']}", as_json)

    @app.command()
    def quickstart(
        mirror: Optional[str] = typer.Option(None, "--from", help="local copy of the datasets (else $MUSICREC_DATA_MIRROR, else download)"),
        out: str = typer.Option("musicrec-report", "--out", help="report folder"),
        trials: int = typer.Option(20, "--trials", help="Optuna trials for each tunable model"),
        tune_budget: float = typer.Option(40.0, "--tune-budget", help="seconds of tuning per model: no trial starts after it (0: no limit)"),
        history: Optional[str] = typer.Option(None, "--history", help="your own export (Spotify, ListenBrainz, "
                                                                      "CSV; zipped or not): recommendations for it at the end"),
    ):
        """HetRec Last.fm 2K end to end: fetch, ingest, split, tune, evaluate, report, recommend."""
        from musicrec.cli.common import data_home, data_mirror
        from musicrec.evaluate.report import format_table
        from musicrec.pipeline import quickstart as run

        console = _console()
        if tune_budget < 0:
            raise MusicrecError(f"--tune-budget must be 0 (no limit) or positive seconds, got {tune_budget}")
        if history is not None:
            from musicrec.serve.history import detect

            detect(history)                 # a wrong path fails now, not after the whole run
        summary = run(data_home(), mirror or data_mirror(), out, trials=trials, log=console.print,
                      tune_budget_s=tune_budget or None)
        console.print(format_table(summary["results"], metrics=QUICK_METRICS))
        console.print(f"listener {summary['listener']} listens most to: {', '.join(summary['history'])}")
        recs = summary["recommendations"]
        held = summary["held_out"]
        for card in recs:
            if card["item_id"] in held:
                card["reason"] = (card["reason"] + " " if card["reason"] else "") + "[held-out hit]"
        _print_cards(console, recs, f"top 10 for listener {summary['listener']} ({summary['best']})")
        hits = sum(card["item_id"] in held for card in recs)
        console.print(f"held out for testing (never seen in training): {', '.join(summary['held_out_names'])}; "
                      f"{hits} of them in this top 10")
        console.print(f"report: {summary['report']}  model: {summary['bundle']}  "
                      f"({summary['seconds']:.0f}s in all)")
        if history is not None:
            from musicrec.serve.history import history_of
            from musicrec.serve.service import Service

            svc = Service.load(summary["bundle"], one_off=True)
            found = history_of(svc, history)
            _history_note(found, svc.item_level)
            _print_cards(console, svc.recommend_history(found.items, found.plays, k=10),
                         f"top 10 for your listening history ({summary['best']})")
            console.print(f"browse them: musicrec serve {summary['bundle']}  then open http://127.0.0.1:8000 and "
                          f"upload the export under \"Your listening history\"")
