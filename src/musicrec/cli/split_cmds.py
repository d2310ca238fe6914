"""``musicrec split``: make a train / valid / test split from a store, or import one.

Typer cannot give one group both a positional STORE and a sub-command ``import``, so this
is one command whose first argument is either the store or the word ``import``::

    musicrec split STORE --protocol user-holdout --out SPLIT [--engine ray]
    musicrec split import STORE --train F --test F [--valid F] --out SPLIT

STORE and SPLIT may be local folders or fsspec URLs (``s3://bucket/split``).
"""

from __future__ import annotations

from typing import Optional

import typer


def _summary(split, out: str) -> None:
    """Print rows / users / items / sessions per part, then what the steps dropped."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{split.meta.get('protocol')} split ({split.meta.get('item_level')} level, "
                        f"{split.evaluation} evaluation) -> {out}")
    for col in ("part", "rows", "users", "items", "sessions"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for name in ("train", "valid", "test"):
        part = getattr(split, name)
        if part is None:
            continue
        sessions = part["session_id"].drop_nulls().n_unique()
        table.add_row(name, f"{part.height:,}", f"{part['user_id'].n_unique():,}",
                      f"{part['item_id'].n_unique():,}", f"{sessions:,}" if sessions else "-")
    console = Console()
    console.print(table)

    meta = split.meta
    dropped = {}
    pre = meta.get("preprocess") or {}
    for key in ("dropped_duplicates", "dropped_short", "dropped_no_item", "dropped_k_core"):
        if key in pre:
            dropped[key.removeprefix("dropped_").replace("_", " ")] = pre[key]
    for part, n in (meta.get("removed_unseen") or {}).items():
        if getattr(split, part) is not None and (meta.get("params") or {}).get("drop_unseen") is not False:
            dropped[f"{part} rows of items unseen in train"] = n
    kept = {part: n for part, n in (meta.get("unseen_in_train") or {}).items()
            if n and not (meta.get("removed_unseen") or {}).get(part) and getattr(split, part) is not None}
    if kept:
        console.print("kept (standard protocol; they count as misses, --drop-unseen removes them): "
                      + "; ".join(f"{part} rows of items unseen in train: {n:,}" for part, n in kept.items()))
    if dropped:
        console.print("dropped: " + "; ".join(f"{k}: {v:,}" for k, v in dropped.items()))
    unknown = meta.get("unknown") or {}
    if unknown.get("users") or unknown.get("items"):
        console.print(f"unknown to the store (kept, with negative ids): {unknown['users']:,} users in "
                      f"{unknown['rows_with_unknown_user']:,} rows, {unknown['items']:,} items in "
                      f"{unknown['rows_with_unknown_item']:,} rows")
    if meta.get("slices"):
        console.print(f"{len(meta['slices'])} time slice(s): " + ", ".join(
            f"{s['start'][:10]}..{s['end'][:10]} ({s['test_sessions']} test sessions)" for s in meta["slices"]))


def register(app: typer.Typer) -> None:
    @app.command(name="split")
    def split(
        target: str = typer.Argument(..., metavar="STORE|import",
                                     help="the store folder/URL, or `import` to import external split files"),
        store_arg: Optional[str] = typer.Argument(None, metavar="[STORE]", help="with `import`: the store"),
        out: str = typer.Option(..., "--out", help="split folder to write"),
        protocol: Optional[str] = typer.Option(
            None, "--protocol",
            help="user-holdout | leave-last-out | temporal | session-lastday | item-coldstart | user-coldstart"),
        item: Optional[str] = typer.Option(None, "--item", help="artist | track (default: track when plays have tracks)"),
        seed: int = typer.Option(0, "--seed", help="random seed (user-holdout)"),
        test_frac: Optional[float] = typer.Option(None, "--test-frac", help="user-holdout / temporal test fraction"),
        valid_frac: Optional[float] = typer.Option(None, "--valid-frac", help="user-holdout / temporal validation fraction"),
        test_days: Optional[float] = typer.Option(None, "--test-days", help="session-lastday: days at the end of each slice"),
        last_n: Optional[int] = typer.Option(None, "--last-n", help="leave-last-out: distinct items held out per user"),
        n_seeds: Optional[int] = typer.Option(None, "--n-seeds", help="user-coldstart: seed items each new listener gives"),
        no_valid: bool = typer.Option(False, "--no-valid", help="leave-last-out / session-lastday: no validation part"),
        drop_unseen: bool = typer.Option(
            False, "--drop-unseen",
            help="user-holdout / leave-last-out / temporal: remove held-out rows of items absent from train "
                 "(default: keep them, as RecBole does; they count as misses)"),
        min_ms: int = typer.Option(30_000, "--min-ms", help="drop plays shorter than this many milliseconds (0 = keep)"),
        session_gap: float = typer.Option(1800, "--session-gap", help="seconds of pause that start a new session"),
        k_core_user: int = typer.Option(0, "--k-core-user", help="keep users with at least N distinct items"),
        k_core_item: int = typer.Option(0, "--k-core-item", help="keep items with at least N distinct users"),
        source: Optional[list[str]] = typer.Option(
            None, "--source", help="reader name(s) to use from the store; with import: whose ids the files hold"),
        train: Optional[str] = typer.Option(None, "--train", help="import: train file (TSV/CSV/Parquet)"),
        test: Optional[str] = typer.Option(None, "--test", help="import: test file"),
        valid: Optional[str] = typer.Option(None, "--valid", help="import: validation file"),
        engine: str = typer.Option("local", "--engine",
                                   help="local | ray: where the per-listener cleaning runs (one task per play partition)"),
        ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                  help="with --engine ray: a running cluster (default: start Ray here)"),
    ):
        """Split a store's plays into train / valid / test, or import external split files.

        A store named `import` can be given as ./import.
        """
        from musicrec.cli.common import fail

        if target == "import":
            if store_arg is None:
                fail("split import needs a STORE: musicrec split import STORE --train F --test F --out SPLIT")
            if protocol is not None:
                fail("--protocol does not apply to split import")
            if train is None or test is None:
                fail("split import needs --train and --test files")
            if source and len(source) > 1:
                fail("split import takes one --source")
            if engine != "local" or ray_address:
                fail("--engine / --ray-address do not apply to split import")
            from musicrec.preprocess.import_split import import_split

            result = import_split(store_arg, train, test, valid=valid, item_level=item,
                                  source=source[0] if source else None, out=out)
        else:
            if store_arg is not None:
                fail(f"unexpected argument {store_arg!r} (did you mean `musicrec split import {target} {store_arg}`?)")
            if any(f is not None for f in (train, test, valid)):
                fail("--train/--test/--valid belong to `musicrec split import`")
            if protocol is None:
                fail("--protocol is required: user-holdout, leave-last-out, temporal, session-lastday, "
                     "item-coldstart or user-coldstart")
            from musicrec.preprocess.split import make_split

            given = dict(test_frac=test_frac, valid_frac=valid_frac, test_days=test_days, n=last_n,
                         valid=False if no_valid else None, n_seeds=n_seeds, drop_unseen=drop_unseen or None)
            params = {k: v for k, v in given.items() if v is not None}
            flags = {"test_frac": "--test-frac", "valid_frac": "--valid-frac", "test_days": "--test-days",
                     "n": "--last-n", "valid": "--no-valid", "n_seeds": "--n-seeds", "drop_unseen": "--drop-unseen"}
            from musicrec.preprocess.split import PROTOCOLS

            if protocol in PROTOCOLS:
                import inspect

                accepted = inspect.signature(PROTOCOLS[protocol]).parameters
                wrong = [flags[k] for k in params if k not in accepted]
                if wrong:
                    fail(f"{', '.join(wrong)} do(es) not apply to protocol {protocol}")
            from musicrec.cli.common import engine_from_options

            with engine_from_options(engine, ray_address) as runner:
                result = make_split(target, protocol, out=out, item_level=item, seed=seed, min_ms=min_ms,
                                    session_gap_s=session_gap, k_core_user=k_core_user, k_core_item=k_core_item,
                                    sources=source or None, engine=runner, **params)
        _summary(result, out)
