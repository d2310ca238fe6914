"""Writing into a store: one ingest, or one batch of posted plays, as Delta commits.

An ingest reads its input chunk by chunk (``incoming.Incoming``), then commits, in this order:

1. the entity tables (users, artists, tracks): existing rows keep their ids, new keys get
   ``max + 1, ...`` in key order, each table in one ``merge`` commit. A concurrent writer that
   added rows meanwhile makes the commit fail, and the ids are computed again on the new snapshot:
   two writers never hand out one id twice;
2. tags and friends (when the input has any);
3. the plays: each touched bucket's stored and incoming plays are merged (``merge_bucket``, mapped
   over the buckets by an engine, so on Ray too) and the buckets replaced in one commit; a
   concurrent commit into one of those buckets makes it fail and the merge runs again;
4. one row in the ``ingests`` table (what came from where).

Plays reference only entity rows committed before them, so a reader never sees a play without
its listener, artist or track, and a kill at any moment leaves the old or the new plays (at
worst some entity rows nobody plays yet). Posted plays (:func:`append_plays`) take a shorter
path: their new rows are appended (cost O(new rows)), duplicates checked against the stored
plays of the same listeners, and a bucket's small files compacted once they pile up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field

import fsspec
import polars as pl

from musicrec import MusicrecError, fsio, schema
from musicrec.ingest.archive import shown_path
from musicrec.ingest.base import REJECTS_SCHEMA, Rejects
from musicrec.store import delta
from musicrec.store.buckets import by_bucket, user_bucket
from musicrec.store.incoming import Incoming
from musicrec.store.merge import (PLAY_KEY, _ids, _semi, _with_occurrence, merge_entities, merge_plays,
                                  sort_plays)

#: a bucket's files after which a posted batch compacts it (many tiny files slow every read)
COMPACT_FILES = 32
INGESTS = {"ingested_at": schema.UTC_US, "source": pl.String, "entry": pl.String}


@dataclass
class IngestReport:
    """What one ingest did. ``counts``: rows per table in the store afterwards; ``added``: rows
    this ingest added per table; ``skipped``: rows the reader left out on purpose (not errors)."""

    source: str
    plays_added: int
    plays_duplicate: int
    rejected: int
    rejects_path: str | None
    counts: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    #: keys of this ingest resolved to an artist/track already known, by rule (``store.resolve``)
    matched: dict[str, int] = field(default_factory=dict)


# ---- entities ------------------------------------------------------------------------------------

def commit_entities(store, name: str, incoming) -> tuple[pl.DataFrame, int]:
    """Merge ``incoming()`` (a LazyFrame with ``key`` and attribute columns) into entity table
    ``name``; returns (the table as committed, its rows before)."""
    sch = store.schema_of(name)
    id_col = next(iter(sch))

    def attempt():
        table = delta.ensure_table(store.uri(name), sch)
        old = delta.read(table, sch)
        merged = merge_entities(old.lazy(), incoming(), id_col, sch)
        changed = merged.join(old, on=list(sch), how="anti", nulls_equal=True)
        if changed.height:
            delta.merge_by_key(table, changed)
        return merged, old.height

    return delta.retrying(f"the store's {name} table", attempt)


def commit_replacing(store, name: str, combine) -> tuple[pl.DataFrame, int]:
    """Replace table ``name`` by ``combine(old)`` (tags, friends), re-run on a concurrent change."""
    sch = store.schema_of(name)

    def attempt():
        table = delta.ensure_table(store.uri(name), sch)
        old = delta.read(table, sch)
        new = combine(old)
        if not new.equals(old):
            delta.replace_all(table, new)
        return new, old.height

    return delta.retrying(f"the store's {name} table", attempt)


def check_anonymous(store, inc: Incoming) -> None:
    """Refuse a listener a reader made up ("me": the export names nobody) when the store already
    has them from other input: two people's exports would merge. The same files again are fine."""
    if not inc.anonymous or not store.exists():
        return
    users = store.table("users")
    taken = users.filter(pl.col("key").is_in(sorted(inc.anonymous)))
    if not taken.height:
        return
    log = delta.read(store.latest("ingests"), INGESTS)["entry"]
    logged = {f.get("sha256") for e in log for f in json.loads(e).get("files", [])} - {None}
    if inc.files and {fingerprint(f)["sha256"] for f in inc.files} <= logged:
        return
    name = taken["source_id"][0] or taken["key"][0]
    raise MusicrecError(f"the store already has listener {name!r} from another export that names no listener; "
                        f"give this one its listener's name: --user NAME")


# ---- plays ---------------------------------------------------------------------------------------

def stage_plays(inc: Incoming, users, artists, tracks, n_buckets: int) -> dict[int, list[str]]:
    """Give the incoming plays their ids and write them to ``<staging>/b-NNNN/NNNNNN.parquet``,
    one file per input part and bucket, in input order. Returns bucket -> its staged files."""
    staged: dict[int, list[str]] = {}
    for i, part in enumerate(inc.play_parts()):
        p = with_ids(part.lazy(), users, artists, tracks, inc.source).collect()
        for b, df in by_bucket(p, n_buckets).items():
            path = f"{inc.staging}/b-{b:04d}/{i:06d}.parquet"
            inc.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with inc.fs.open(path, "wb") as f:
                df.write_parquet(f)
            staged.setdefault(b, []).append(inc.fs.unstrip_protocol(path))
    return staged


def with_ids(plays: pl.LazyFrame, users, artists, tracks, source: str) -> pl.LazyFrame:
    p = _ids(plays, "user_key", users, "user_id", "user_id")
    p = _ids(p, "artist_key", artists, "artist_id", "artist_id")
    p = _ids(p, "track_key", tracks, "track_id", "track_id")
    return p.with_columns(source=pl.lit(source)).select(list(schema.STORE_PLAYS))


def ensure_plays(store, n_buckets: int) -> None:
    """Create the plays table with one empty file per bucket, unless it exists (the first of
    two concurrent creators wins)."""
    uri = store.uri("plays")
    if delta.open_table(uri) is not None:
        return
    empty = schema.empty(schema.STORE_PLAYS)
    files = [delta.write_bucket_file(uri, b, empty) for b in range(n_buckets)]
    try:
        delta.create_with_files(uri, schema.STORE_PLAYS, files, json.dumps({"buckets": n_buckets}))
    except delta.DeltaError as exc:
        delta.discard(uri, files)
        if "exists" not in str(exc):
            raise


def merge_bucket(bucket: int, table: str, version: int, staged: dict):
    """Merge one bucket's staged plays with its stored plays at ``version`` into a new file of
    the table, not yet committed (runs anywhere the URLs can be read: here or as a Ray task).

    Returns (rows after, incoming plays already stored, rows before, the new file's add action).
    """
    stored = delta.open_table(table, version)
    existing = delta.read(stored, schema.STORE_PLAYS, buckets=[bucket])
    incoming = pl.concat([schema.conform(fsio.read_parquet(u), schema.STORE_PLAYS) for u in staged[bucket]])
    if existing.height == 0:        # a new bucket: what merge_plays gives, without its joins
        merged, n_dup = sort_plays(incoming), 0
    else:
        merged, dup = merge_plays(existing.lazy(), incoming.lazy())
        merged, n_dup = pl.collect_all([merged, dup.select(pl.len())])
        n_dup = n_dup.item()
    return merged.height, n_dup, existing.height, delta.write_bucket_file(table, bucket, merged)


def commit_plays(store, staged: dict[int, list[str]], engine, source: str) -> tuple[int, int, int]:
    """Merge the staged plays bucket by bucket and swap the merged files for the ones read, in
    one commit. Returns (plays in the store after, incoming duplicates, plays before)."""
    buckets = sorted(staged)

    def attempt():
        table = store.plays_table()
        version = table.version()
        results = engine.map(merge_bucket, buckets, table=store.uri("plays"), version=version, staged=staged)
        files = delta.actions(table)
        old = files.filter(pl.col("bucket").is_in(buckets))
        delta.replace_files(table, old, [r[3] for r in results], {"source": source, "read_version": version})
        untouched = files["rows"].sum() - old["rows"].sum()
        return (untouched + sum(r[0] for r in results), sum(r[1] for r in results),
                untouched + sum(r[2] for r in results))

    return delta.retrying("the store's plays", attempt)


def append_plays(store, new: pl.DataFrame, source: str) -> dict[int, int]:
    """Append the plays of ``new`` (``schema.STORE_PLAYS`` plus ``_post``: which post each came
    from; timestamped) not stored yet, in one commit; returns the plays added per post.
    Duplicates are checked against the stored plays of the same listeners, and against earlier
    posts of the batch, so a group commit gives what the posts one by one would."""
    new = new.with_columns(pl.Series(delta.PARTITION, user_bucket(new["user_id"], store.n_buckets)))
    wanted = new["user_id"].unique()
    lo, hi = wanted.min(), wanted.max()
    on = PLAY_KEY + ["_occ"]
    # occurrences count within a post; across posts a repeated (play, occurrence) is a resend
    numbered = _with_occurrence(new.lazy(), PLAY_KEY + ["_post"]).collect()

    def attempt():
        table = store.plays_table()
        all_files = delta.actions(table, new[delta.PARTITION].unique().to_list())
        files = all_files.filter(pl.col("min_user").is_null()
                                 | ((pl.col("min_user") <= hi) & (pl.col("max_user") >= lo)))
        stored = delta.read_files(files["path"].to_list(), schema.STORE_PLAYS).filter(
            pl.col("user_id").is_in(wanted.implode()))
        fresh = (_semi(numbered.lazy(), _with_occurrence(stored.lazy(), PLAY_KEY), on, "anti")
                 .unique(on, keep="first", maintain_order=True).collect())
        if fresh.height:
            rows = fresh.drop("_occ", "_post")
            files = [delta.write_bucket_file(store.uri("plays"), b, part.drop(delta.PARTITION))
                     for (b,), part in rows.partition_by(delta.PARTITION, as_dict=True, maintain_order=True).items()]
            delta.replace_files(table, all_files.head(0), files, {"source": source, "read_version": table.version()})
        return fresh, all_files, table

    fresh, files, table = delta.retrying("the store's plays", attempt)
    if fresh.height:
        delta.tidy_log(table)
    counts = files.group_by("bucket").len()
    for b in fresh[delta.PARTITION].unique().to_list():
        if counts.filter(pl.col("bucket") == b)["len"].sum() + 1 >= COMPACT_FILES:
            compact(store, b)
    return dict(fresh.group_by("_post").len().iter_rows())


def compact(store, bucket: int) -> None:
    """Rewrite a bucket's files into one (skipped when a concurrent writer gets there first:
    compaction changes no row)."""
    table = store.plays_table()
    try:
        table.optimize.compact(partition_filters=[(delta.PARTITION, "=", str(bucket))], target_size=delta.ONE_FILE)
    except (delta.CommitFailedError, delta.DeltaError):
        pass


# ---- the ingests log and rejects -------------------------------------------------------------------

def fingerprint(path: str) -> dict:
    """``{"path", "size", "sha256"}`` of a local input file (size/sha256 null when unreadable)."""
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {"path": shown_path(os.path.abspath(path)), "size": os.path.getsize(path), "sha256": h.hexdigest()}
    except OSError:
        return {"path": str(path), "size": None, "sha256": None}


def log_ingest(store, report: IngestReport, files: list[str]) -> None:
    entry = {"source": report.source, "files": [fingerprint(f) for f in files], "plays_added": report.plays_added,
             "plays_duplicate": report.plays_duplicate, "rejected": report.rejected,
             "rejects_path": report.rejects_path, "skipped": report.skipped,
             "ingested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    write_log(store, [entry])


def write_log(store, entries: list[dict]) -> None:
    rows = pl.DataFrame({"ingested_at": [dt.datetime.fromisoformat(e["ingested_at"]) if e.get("ingested_at")
                                         else None for e in entries],
                         "source": [e.get("source") for e in entries],
                         "entry": [json.dumps(e, default=str) for e in entries]}, schema=INGESTS)
    table = delta.ensure_table(store.uri("ingests"), INGESTS)
    delta.retrying("the store's ingests log", lambda: delta.append(table, rows, {}, partitioned=False))


def write_rejects(store, src: str, rejects: Rejects) -> str | None:
    if not len(rejects):
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    url = fsio.join(fsio.absolute(store.url), "rejects", f"{src}-{stamp}.csv")
    table = rejects.frame().select(list(REJECTS_SCHEMA))
    fsio.atomic_write(url, lambda f: table.write_csv(f))
    return url


def new_staging(store) -> str:
    """A fresh staging folder ``<store>/_staging/<UTC time>-<id>``; folders a killed ingest left
    more than a day ago are removed first."""
    fs, root = fsspec.core.url_to_fs(fsio.join(fsio.absolute(store.url), "_staging"))
    if fs.exists(root):
        cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%S")
        for path in fs.ls(root, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name[:15] < cutoff:
                fs.rm(path, recursive=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{root}/{stamp}-{uuid.uuid4().hex[:12]}"


def remove_staging(fs, staging: str) -> None:
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
    parent = staging.rsplit("/", 1)[0]
    if fs.exists(parent) and not fs.ls(parent):
        fs.rm(parent, recursive=True)


def check_ids(store, df: pl.DataFrame) -> None:
    """MusicrecError unless every play names a known track/artist/listener (posted plays)."""
    problems = {
        "track": df.filter(pl.col("track_id").is_not_null() & pl.col("track_key").is_null())["track_id"],
        "artist": df.filter(pl.col("artist_id").is_not_null() & pl.col("artist_key").is_null())["artist_id"],
        "user": df.filter(pl.col("user_id").is_not_null() & pl.col("store_user_key").is_null())["user_id"],
    }
    for what, ids in problems.items():
        if len(ids):
            raise MusicrecError(f"unknown {what} id(s) in the store {store.url}: "
                                f"{', '.join(map(str, ids.unique().sort().head(5)))}")
    if df.filter(pl.col("artist_id").is_null()).height:
        raise MusicrecError("every play needs an artist_id or a track_id")
    if df.filter(pl.col("user_id").is_null() & pl.col("user").is_null()).height:
        raise MusicrecError("every play needs a user_id or a user")
