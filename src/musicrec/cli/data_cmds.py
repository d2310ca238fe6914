"""Commands that bring data in and keep the store: ``datasets``, ``ingest``, ``store``."""

from __future__ import annotations

from typing import Optional

import typer

from musicrec import MusicrecError


def _fail(exc: MusicrecError) -> None:
    from musicrec.cli.common import fail

    fail(str(exc))


def parse_map(items: list[str] | None) -> dict[str, str]:
    """``["user=listener", "artist=band"]`` -> ``{"user": "listener", "artist": "band"}``."""
    out = {}
    for item in items or []:
        canonical, sep, column = item.partition("=")
        if not sep or not canonical.strip() or not column.strip():
            raise MusicrecError(f"--map wants canonical=column, got {item!r}")
        out[canonical.strip()] = column.strip()
    return out


def register(app: typer.Typer) -> None:
    datasets = typer.Typer(no_args_is_help=True, help="Public datasets: list and fetch (with verification).")
    app.add_typer(datasets, name="datasets")

    @datasets.command("list")
    def datasets_list():
        """List the known datasets: official URL, licence, files, row counts, and whether each is
        fetched into the data home."""
        from musicrec.cli.common import data_home
        from musicrec.ingest.datasets import DATASETS, is_cached

        home = data_home()
        typer.echo(f"datasets (data home: {home})")
        for name, ds in DATASETS.items():
            rows = [f.rows for f in ds.files if f.rows is not None]
            typer.echo(f"\n{name}  (fetched: {'yes' if is_cached(name, home) else 'no'})")
            typer.echo(f"  {ds.description}")
            typer.echo(f"  url:      {ds.url}")
            typer.echo(f"  licence:  {ds.licence}")
            typer.echo(f"  files:    {len(ds.files)}, {f'{sum(rows):,}' if rows else '?'} rows in all")
            typer.echo(f"  cite:     {ds.citation}")

    @datasets.command("fetch")
    def datasets_fetch(
        name: str = typer.Argument(..., help="dataset name (see `musicrec datasets list`)"),
        from_: Optional[str] = typer.Option(None, "--from", help="local mirror folder (else $MUSICREC_DATA_MIRROR, "
                                                                   "else the official URL)"),
    ):
        """Fetch a dataset into the data home, verify it, and print its folder."""
        from musicrec.cli.common import data_home, data_mirror
        from musicrec.ingest.datasets import fetch

        try:
            path = fetch(name, data_home(), mirror=from_ or data_mirror(), progress=True)
        except MusicrecError as exc:
            _fail(exc)
        typer.echo(path)

    @app.command()
    def ingest(
        source: str = typer.Argument(..., help="reader: hetrec-lastfm-2k, lastfm-1k, 30music, listenbrainz, "
                                               "spotify-history, csv, parquet; or a dataset name"),
        path: Optional[str] = typer.Argument(None, help="file or folder to read (a dataset: default its fetched "
                                                        "copy in the data home)"),
        store: str = typer.Option(..., "--store", help="store folder or fsspec URL (created when absent)"),
        user: Optional[str] = typer.Option(None, "--user", help="listener name for single-user exports"),
        map_: Optional[list[str]] = typer.Option(None, "--map", help="canonical=column (csv/parquet), repeatable"),
        source_name: Optional[str] = typer.Option(None, "--source-name",
                                                  help="key prefix and source label (csv/parquet; default csv)"),
        partitions: Optional[int] = typer.Option(None, "--partitions", min=1,
                                                 help="plays buckets (by listener) of a new store (default 16)"),
        keep_apart: Optional[list[str]] = typer.Option(
            None, "--keep-apart", help="an artist name never matched by name to another source's artist "
                                       "(a wrong match; repeatable)"),
        engine: str = typer.Option("local", "--engine", help="where the per-bucket merges run: local or ray"),
        ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                  help="Ray cluster to join (--engine ray; default: start one)"),
    ):
        """Read a listening log and merge it into the store's Delta tables (idempotent, one atomic commit).

        `musicrec ingest hetrec-lastfm-2k --store S` reads the copy `musicrec datasets fetch`
        put in the data home. CSV and Parquet input is read file by file (a big Parquet file in
        slices), so memory stays bounded however large the log. A zipped export is read as delivered.
        Artists and tracks another source already brought in get that source's ids (by MusicBrainz
        id, else by normalised name); the counts are printed.
        """
        from rich.console import Console

        from musicrec.cli.common import data_home, engine_from_options
        from musicrec.ingest.datasets import reader_and_path
        from musicrec.ingest.readers import read_chunks
        from musicrec.names import identity_key
        from musicrec.store import Store

        err = Console(stderr=True)
        try:
            source, path = reader_and_path(source, path, data_home())
            options = {"user": user, "source": source_name, "columns": parse_map(map_) or None}
            chunks = read_chunks(source, path, **options)
            with engine_from_options(engine, ray_address) as eng, \
                    err.status(f"ingesting {path} ({source}) into {store}…"):
                target = Store(store)
                target.keep_apart = frozenset(identity_key(n) for n in keep_apart or [])
                report = target.ingest_chunks(chunks, engine=eng, partitions=partitions)
        except MusicrecError as exc:
            _fail(exc)
        a, c = report.added, report.counts
        typer.echo(f"plays: {report.plays_added:,} added, {report.plays_duplicate:,} already there, "
                   f"{report.rejected:,} rejected")
        for name in ("users", "artists", "tracks", "tags", "friends"):
            typer.echo(f"{name}: {a.get(name, 0):,} new, {c.get(name, 0):,} in store")
        if report.matched:
            typer.echo("matched to artists/tracks already in the store: "
                       + ", ".join(f"{n:,} {rule}" for rule, n in report.matched.items()))
        for kind, n in report.skipped.items():
            typer.echo(f"skipped (not music): {n:,} {kind}")
        if report.rejects_path:
            typer.echo(f"rejected rows: {report.rejects_path}")

    store_app = typer.Typer(no_args_is_help=True, help="Store upkeep: migrate, compact, vacuum, info.")
    app.add_typer(store_app, name="store")

    def _on_store(url: str, action):
        """``action(Store(url))``; a missing store or a MusicrecError ends in one line."""
        from musicrec.store import Store

        try:
            s = Store(url)
            if not s.exists():
                raise MusicrecError(f"{url}: no musicrec store here; create one with `musicrec ingest`")
            return action(s)
        except MusicrecError as exc:
            _fail(exc)

    @store_app.command("info")
    def store_info(url: str = typer.Argument(..., help="store folder or URL")):
        """Format, plays buckets, rows and current version of every table, and the ingests."""
        m = _on_store(url, lambda s: s.manifest())
        typer.echo(f"store {url}: schema version {m.get('schema_version')}, {m.get('format', 'parquet')} tables, "
                   f"{(m.get('plays_layout') or {}).get('buckets', 1)} plays buckets")
        for name, n in (m.get("tables") or {}).items():
            version = (m.get("versions") or {}).get(name)
            typer.echo(f"  {name:8s} {n:>12,} rows" + (f"  (version {version})" if version is not None else ""))
        for e in m.get("sources", []):
            typer.echo(f"  ingest {e.get('ingested_at')}: {e.get('source')}, {e.get('plays_added', 0):,} plays added")

    @store_app.command("migrate")
    def store_migrate(url: str = typer.Argument(..., help="store folder or URL")):
        """Move a store written before Delta Lake (manifest.json + Parquet files) into Delta tables,
        keeping every id and row."""
        done = _on_store(url, lambda s: s.migrate())
        typer.echo(f"{url}: migrated to Delta tables" if done else f"{url}: already Delta tables, nothing to do")

    @store_app.command("compact")
    def store_compact(url: str = typer.Argument(..., help="store folder or URL")):
        """Rewrite each table's small files (e.g. from posted plays) into few; rows are unchanged."""
        removed = _on_store(url, lambda s: s.compact())
        typer.echo(f"{url}: compacted ({sum(removed.values()):,} small files merged)")

    @store_app.command("vacuum")
    def store_vacuum(url: str = typer.Argument(..., help="store folder or URL"),
                     retain_hours: float = typer.Option(168.0, "--retain-hours", min=0.0,
                                                        help="keep what table versions younger than this need")):
        """Delete files that no table version younger than --retain-hours needs (splits that
        recorded older versions can then no longer be re-read from the store)."""
        n = _on_store(url, lambda s: s.vacuum(retain_hours))
        typer.echo(f"{url}: {n:,} files deleted")
