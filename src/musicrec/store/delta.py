"""The store's tables as Delta Lake tables (delta-rs): reading a snapshot, and commits that see
concurrent writers.

Every write here is one Delta commit, checked against what committed since the snapshot it was
computed from: a ``merge`` or an ``overwrite`` with a predicate fails with ``CommitFailedError``
when another writer added rows it would have read, and :func:`retrying` then recomputes it on
the new snapshot. (A plain ``overwrite`` without a predicate is not checked by delta-rs and
would drop a concurrent append, so every overwrite here carries one.)

Plays buckets are replaced file by file (:func:`replace_files`): the commit removes exactly the
files the merge read and adds the merged file. Plays appended meanwhile (posted to the server)
stay, in their own files; a second writer replacing the same files fails and retries. Every
bucket holds at least one file from the table's creation on (an empty one at first), so two
writers filling an empty bucket also meet.

Rows are read by listing the snapshot's files (``get_add_actions``) and reading them with
Polars, in the order they were written (modification time, then path).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Callable, Iterable, TypeVar

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, create_table_with_add_actions

from musicrec import MusicrecError, fsio, schema

PARTITION = "bucket"
#: commit attempts before a writer gives up (each waits a little longer, with jitter)
RETRIES = 12
#: no size limit on a compacted file: one file per bucket
ONE_FILE = 1 << 40
#: plays-table versions kept readable behind the newest. Every posted batch is a commit, and
#: delta-rs lists the whole ``_delta_log`` folder on each commit, so an unbounded log makes every
#: post slower (measured: 10 ms with a short log, 56 ms after 2,500 commits); older entries go once
#: a checkpoint covers them, which bounds how far back a time-travelling read reaches
LOG_KEEP = 100
CHECKPOINT_EVERY = 100

T = TypeVar("T")


def storage_options(url: str) -> dict | None:
    """delta-rs options for ``url``: credentials and endpoints come from the environment
    (``AWS_*``); a plain-HTTP endpoint (a local S3-compatible server) is allowed, and S3 commits
    use conditional puts so concurrent writers cannot overwrite each other's log entries."""
    if not url.startswith(("s3://", "s3a://")):
        return None
    opts = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    if "AWS_S3_LOCKING_PROVIDER" not in os.environ and "AWS_S3_ALLOW_UNSAFE_RENAME" not in os.environ:
        opts["conditional_put"] = "etag"
    return opts


def to_arrow(df: pl.DataFrame):
    """``df`` as an Arrow table with the types delta-rs writes (large strings, not string views)."""
    return df.to_arrow(compat_level=pl.CompatLevel.oldest())


def arrow_schema(sch: dict, partitioned: bool = False):
    """The Arrow schema of a store table (plus the bucket partition column)."""
    df = schema.empty(sch)
    if partitioned:
        df = df.with_columns(pl.lit(None, pl.Int64).alias(PARTITION))
    return to_arrow(df).schema


def open_table(uri: str, version: int | None = None) -> DeltaTable | None:
    """The table at ``uri`` (at ``version``; latest when None), or None when there is none."""
    try:
        return DeltaTable(uri, version=version, storage_options=storage_options(uri))
    except TableNotFoundError:
        return None
    except DeltaError as exc:
        if version is not None and "version" in str(exc).lower():
            raise MusicrecError(f"{uri}: table version {version} is not there any more (vacuumed or "
                                f"cleaned up): {fsio.first_line(exc)}") from None
        raise MusicrecError(f"{uri}: unreadable Delta table ({fsio.first_line(exc)})") from None


def is_table(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri, storage_options=storage_options(uri))


def ensure_table(uri: str, sch: dict, partitioned: bool = False, description: str | None = None) -> DeltaTable:
    """The table at ``uri``, created empty with ``sch`` when absent (the first of two concurrent
    creators wins; the other reads its table)."""
    dt = open_table(uri)
    if dt is not None:
        return dt
    try:
        DeltaTable.create(uri, arrow_schema(sch, partitioned), partition_by=[PARTITION] if partitioned else None,
                          mode="error", description=description, storage_options=storage_options(uri))
    except DeltaError as exc:
        if "already exists" not in str(exc):
            raise
    return open_table(uri)


def actions(dt: DeltaTable, buckets: Iterable[int] | None = None) -> pl.DataFrame:
    """The snapshot's data files: ``path`` (full URL or local path), ``rel`` (path in the table),
    ``size``, ``rows``, ``bucket`` (or null), ``min_user``/``max_user`` (null without stats), in
    written order."""
    raw = pl.DataFrame(dt.get_add_actions(flatten=True))
    if raw.is_empty():
        return pl.DataFrame(schema={"path": pl.String, "rel": pl.String, "size": pl.Int64, "rows": pl.Int64,
                                    "bucket": pl.Int64, "min_user": pl.Int64, "max_user": pl.Int64})
    base = dt.table_uri.rstrip("/")
    if base.startswith("file://"):
        base = base[len("file://"):]
    col = lambda c, t: pl.col(c).cast(t) if c in raw.columns else pl.lit(None, t)   # noqa: E731
    out = raw.sort(["modification_time", "path"]).select(
        path=pl.lit(base + "/") + pl.col("path"), rel="path", size=col("size_bytes", pl.Int64),
        rows=col("num_records", pl.Int64),
        bucket=col(f"partition.{PARTITION}", pl.Int64),
        min_user=col("min.user_id", pl.Int64), max_user=col("max.user_id", pl.Int64))
    if buckets is not None:
        out = out.filter(pl.col("bucket").is_in(list(buckets)))
    return out


def row_count(dt: DeltaTable | None) -> int:
    """Rows in the snapshot, from the file statistics (0 for no table)."""
    return int(actions(dt)["rows"].sum()) if dt is not None else 0


def read_files(paths: list[str], sch: dict, columns: list[str] | None = None) -> pl.DataFrame:
    """The rows of ``paths`` in order, conformed to ``sch`` (only ``columns`` when given)."""
    sch = sch if not columns else {c: sch[c] for c in columns}
    if not paths:
        return schema.empty(sch)
    try:
        if "://" not in paths[0]:
            df = pl.read_parquet(paths, columns=list(sch))
        else:
            df = pl.concat([fsio.read_parquet(p, columns=list(sch)) for p in paths])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise MusicrecError(f"store table file unreadable ({fsio.first_line(exc)})") from None
    return schema.conform(df, sch)


def read(dt: DeltaTable | None, sch: dict, buckets: Iterable[int] | None = None,
         columns: list[str] | None = None) -> pl.DataFrame:
    if dt is None:
        return schema.empty(sch if not columns else {c: sch[c] for c in columns})
    return read_files(actions(dt, buckets)["path"].to_list(), sch, columns)


def _stale(exc: DeltaError) -> bool:
    """A commit whose read version's log entries were pruned meanwhile (recompute, as for a conflict)."""
    text = str(exc).lower()
    return any(s in text for s in ("not found", "no such file", "invalid table version", "version"))


def retrying(what: str, attempt: Callable[[], T]) -> T:
    """``attempt()`` until its commit is not beaten by a concurrent writer (``RETRIES`` tries)."""
    for i in range(RETRIES):
        try:
            return attempt()
        except CommitFailedError:
            pass
        except DeltaError as exc:
            if not _stale(exc) or i == RETRIES - 1:
                raise MusicrecError(f"writing {what} failed: {fsio.first_line(exc)}") from None
        time.sleep(min(2.0, 0.02 * 2 ** i) * (0.5 + random.random()))
    raise MusicrecError(f"gave up writing {what} after {RETRIES} tries: other writers kept changing it at the "
                        f"same time; nothing of this run was half-written, run it again")


def merge_by_key(dt: DeltaTable, rows: pl.DataFrame) -> None:
    """Upsert ``rows`` by their ``key`` column (one commit; fails if others added rows meanwhile)."""
    (dt.merge(to_arrow(rows), predicate="t.key = s.key", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())


def replace_all(dt: DeltaTable, rows: pl.DataFrame) -> None:
    """Replace the whole table by ``rows`` (one commit; fails if others added rows meanwhile)."""
    write_deltalake(dt, to_arrow(rows), mode="overwrite", predicate="true", target_file_size=ONE_FILE)


def write_bucket_file(table_uri: str, bucket: int, df: pl.DataFrame) -> AddAction:
    """Write ``df`` (plays, without the partition column) as a new file of ``bucket`` in the
    table's folder, not yet committed; returns its add action (with user-id stats)."""
    rel = f"{PARTITION}={bucket}/part-{uuid.uuid4().hex}.parquet"
    url = fsio.join(table_uri, rel)
    fsio.atomic_write(url, lambda f: df.write_parquet(f))
    fs, path = fsio.filesystem(url)
    stats = {"numRecords": df.height}
    ids = df["user_id"].drop_nulls()
    if len(ids):
        stats.update(minValues={"user_id": int(ids.min())}, maxValues={"user_id": int(ids.max())},
                     nullCount={"user_id": df["user_id"].null_count()})
    return AddAction(rel, int(fs.size(path)), {PARTITION: str(bucket)}, int(time.time() * 1000), True,
                     json.dumps(stats))


def create_with_files(uri: str, sch: dict, files: list[AddAction], description: str) -> None:
    """Create the partitioned table at ``uri`` holding ``files`` (one commit; an error when a
    table is already there)."""
    from deltalake import Schema

    create_table_with_add_actions(uri, Schema.from_arrow(arrow_schema(sch, True)), files, mode="error",
                                  partition_by=[PARTITION], description=description,
                                  storage_options=storage_options(uri))


def replace_files(dt: DeltaTable, old: pl.DataFrame, new: list[AddAction], metadata: dict) -> None:
    """One commit removing the files ``old`` (rows of :func:`actions`) and adding ``new``; fails
    when a concurrent commit removed one of ``old``. The new files are deleted on failure."""
    now = int(time.time() * 1000)
    removes = [RemoveAction(rel, True, now, size, {PARTITION: str(b)})
               for rel, size, b in old.select("rel", "size", "bucket").iter_rows()]
    try:
        dt.create_write_transaction(removes + new, mode="append", schema=arrow_schema(schema.STORE_PLAYS, True),
                                    partition_by=[PARTITION], commit_properties=_props(metadata))
    except BaseException:
        discard(dt.table_uri, new)
        raise


def tidy_log(dt: DeltaTable, keep: int = LOG_KEEP) -> None:
    """Every ``CHECKPOINT_EVERY`` versions: write a checkpoint and delete the log entries (and
    older checkpoints) before the newest checkpoint that is at least ``keep`` versions old, so
    the log stays short however many commits came; versions before it can no longer be read."""
    version = dt.version()
    if version % CHECKPOINT_EVERY:
        return
    dt.create_checkpoint()
    base = dt.table_uri[len("file://"):] if dt.table_uri.startswith("file://") else dt.table_uri
    fs, log = fsio.filesystem(fsio.join(base, "_delta_log"))
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(log, detail=False)]
    versioned = [(int(n[:20]), n) for n in names if len(n) > 20 and n[:20].isdigit() and n[20] == "."]
    checkpoints = [v for v, n in versioned if n.endswith(".checkpoint.parquet") and v <= version - keep]
    if not checkpoints:
        return
    cut = max(checkpoints)
    for v, n in versioned:
        if v < cut:
            try:
                fs.rm(f"{log}/{n}")
            except OSError:
                pass


def discard(table_uri: str, files: list[AddAction]) -> None:
    """Delete uncommitted files (best effort: ``vacuum`` removes what is left)."""
    base = table_uri[len("file://"):] if table_uri.startswith("file://") else table_uri
    for a in files:
        try:
            fs, path = fsio.filesystem(fsio.join(base, a.path))
            if fs.exists(path):
                fs.rm(path)
        except OSError:
            pass


def append(dt: DeltaTable, rows: pl.DataFrame, metadata: dict, partitioned: bool = True) -> None:
    write_deltalake(dt, to_arrow(rows), mode="append", partition_by=[PARTITION] if partitioned else None,
                    commit_properties=_props(metadata))


def _props(metadata: dict) -> CommitProperties:
    return CommitProperties(custom_metadata={"musicrec": json.dumps(metadata, default=str)})
