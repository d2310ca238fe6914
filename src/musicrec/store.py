"""The canonical store: every source's listening data as plain Parquet tables with stable ids.

Layout (a local folder or any fsspec URL, e.g. ``memory://x`` or ``s3://bucket/store``)::

    <store>/plays/part-0000.parquet ... part-NNNN.parquet
                              plays, split into buckets by listener: a play of user ``u`` is in
                              bucket ``user_bucket(u, n)`` (splitmix64 of the user id, mod ``n``);
                              ``n`` is fixed when the store is created (``partitions=``, default
                              16) and recorded in the manifest. Rows of a bucket are sorted by
                              (user_id, timestamp), nulls first.
    <store>/artists.parquet   <store>/tracks.parquet   <store>/users.parquet
    <store>/tags.parquet      <store>/friends.parquet
    <store>/manifest.json     schema version, the plays layout (``plays_layout.buckets``), row
                              counts, one entry per ingest (source, input file sizes and sha256,
                              rows added / duplicate / rejected, rejects file)
    <store>/rejects/<source>-<UTC time>.csv   rows a reader refused: source, file, record, reason, raw
    <store>/_staging/<ingest id>/             an ingest's staged plays; removed when it ends

A store written before buckets (schema version 1) keeps its plays in one ``<store>/plays.parquet``;
it is read as it is and moved into buckets by its next ingest.

Tables (``musicrec.schema.STORE_*``; every timestamp is microseconds UTC):

=========  ==========================================================================================
plays      user_id, artist_id, track_id (null for artist-level data), timestamp (null for aggregated
           counts), play_count, ms_played, skipped, session_key (the source's own session id, or
           null), source (reader name, e.g. ``"hetrec-lastfm-2k"``)
artists    artist_id, key, source_id, name
tracks     track_id, key, source_id, artist_id, name, duration_ms
users      user_id, key, source_id (the listener's id in its source)
tags       artist_id, tag (lower-case), user_id (who tagged, or null), timestamp, weight
friends    user_id, friend_id
=========  ==========================================================================================

``Store.table("plays")`` and ``Store.scan("plays")`` give the plays in one canonical order:
sorted by (user_id, timestamp), null timestamps first, ties in stored order -- the order a
single-file store had. Per-bucket work reads ``Store.play_partitions()`` one at a time.

``key`` is the reader's namespaced string key (``hetrec:51``, ``mbid:<uuid>``, ``name:radiohead``,
``spotify:track:<id>``; see ``musicrec.schema``), so two sources that share an id scheme share rows.
Ids are int64, assigned once and never changed: a new key gets ``max(id) + 1, ...`` in key order
(over everything one ingest reads, however many chunks it comes in).
For names and other attributes the first non-null value wins; rows are never dropped.

Ingesting is idempotent. A play is identified by (user_id, artist_id, track_id, timestamp,
session_key, source) plus its occurrence number among identical plays, so re-reading a file or
an overlapping file adds nothing, while true repeats inside one file (two identical scrobbles)
are kept. Aggregated rows (no timestamp, e.g. HetRec counts) are replaced by a later ingest.
Every join key holds ``user_id``, so the merge runs per bucket.

An ingest runs in two phases. Phase 1, in this process, reads the input chunk by chunk (a file,
or a slice of a big Parquet file), collects the entity keys, assigns ids once all chunks are
read, and stages the plays, now carrying ids, split by bucket. Phase 2 merges each bucket's
stored and staged plays with :func:`merge_bucket`, mapped over the buckets by an engine
(``musicrec.engine``: in this process or as Ray tasks; the result is the same). Memory is bounded
by one chunk plus one bucket, not by the whole input.

Each table and bucket is written to a temporary name and renamed; the manifest is written last.
Tables are plain Parquet, readable by any tool:
``duckdb.sql("select count(*) from '<store>/plays/*.parquet'")``. One writer at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Iterable

import fsspec
import numpy as np
import polars as pl

from musicrec import MusicrecError, fsio, schema
from musicrec.ingest.base import REJECTS_SCHEMA, Rejects, SourceTables

SCHEMA_VERSION = 2          # 2: plays in user-hash buckets (1: one plays.parquet)
DEFAULT_BUCKETS = 16
TABLES = {
    "plays": schema.STORE_PLAYS,
    "artists": schema.STORE_ARTISTS,
    "tracks": schema.STORE_TRACKS,
    "users": schema.STORE_USERS,
    "tags": schema.STORE_TAGS,
    "friends": schema.STORE_FRIENDS,
}
PLAY_KEY = ["user_id", "artist_id", "track_id", "timestamp", "session_key", "source"]
TAG_KEY = ["user_id", "artist_id", "tag", "timestamp"]
PLAY_ORDER = ["user_id", "timestamp"]
#: plays buffered in memory during phase 1 before they go to staged files
SPILL_ROWS = 2_000_000
REDUCE_ROWS = 1 << 20   # entity rows gathered from chunks before they are folded together


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


# ---- buckets ------------------------------------------------------------------------------------

def user_bucket(user_ids, n_buckets: int) -> np.ndarray:
    """Bucket of each user id: the splitmix64 finaliser of the id, mod ``n_buckets``.

    A fixed function of the id alone (no per-process hash seed), so every process, machine and
    version puts a listener in the same bucket. Null ids go to bucket ``user_bucket(0)``.

    Parameters
    ----------
    user_ids : array-like of int, shape (n,)
    n_buckets : int

    Returns
    -------
    ndarray of int64, shape (n,), values in ``[0, n_buckets)``
    """
    s = pl.Series(user_ids, dtype=pl.Int64) if not isinstance(user_ids, pl.Series) else user_ids.cast(pl.Int64)
    x = s.fill_null(0).to_numpy().astype(np.uint64)   # two's complement for negative ids
    with np.errstate(over="ignore"):                   # the multiplications wrap mod 2**64 on purpose
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_buckets)).astype(np.int64)


def by_bucket(plays: pl.DataFrame, n_buckets: int) -> dict[int, pl.DataFrame]:
    """``plays`` split by :func:`user_bucket` (bucket -> its rows, in their order); empty
    buckets are left out."""
    tagged = plays.with_columns(_b=pl.Series(user_bucket(plays["user_id"], n_buckets)))
    parts = tagged.partition_by("_b", as_dict=True, maintain_order=True)
    return {key[0]: part.drop("_b") for key, part in parts.items()}


def bucket_file(bucket: int) -> str:
    """File name of a plays bucket: ``part-NNNN.parquet``."""
    return f"part-{bucket:04d}.parquet"


# ---- merge logic (pure functions over LazyFrames) ---------------------------------------------

def _first_non_null(lf: pl.LazyFrame, key: str) -> pl.LazyFrame:
    others = [c for c in lf.collect_schema().names() if c != key]
    return (lf.filter(pl.col(key).is_not_null())
            .group_by(key, maintain_order=True).agg([pl.col(c).drop_nulls().first() for c in others]))


def merge_entities(existing: pl.LazyFrame, incoming: pl.LazyFrame, id_col: str, table: dict) -> pl.DataFrame:
    """Existing rows keep their ids and fill their null attributes from ``incoming``; new keys get
    ids ``max + 1, ...`` in key order. ``incoming`` has ``key`` and attribute columns."""
    attrs = [c for c in table if c not in (id_col, "key")]
    incoming = _first_non_null(incoming, "key")
    max_id = existing.select(pl.col(id_col).max()).collect().item()
    start = -1 if max_id is None else max_id
    updated = existing.join(incoming, on="key", how="left", suffix="_in", maintain_order="left").with_columns(
        [pl.coalesce(c, f"{c}_in").alias(c) for c in attrs])
    new = (incoming.join(existing.select("key"), on="key", how="anti").sort("key")
           .with_row_index("_i").with_columns((pl.col("_i").cast(pl.Int64) + start + 1).alias(id_col)))
    return pl.concat([updated.select(list(table)), new.select(list(table))]).collect()


def _with_occurrence(lf: pl.LazyFrame, key: list[str]) -> pl.LazyFrame:
    return lf.with_columns(_occ=pl.int_range(pl.len()).over(key))


def _semi(a: pl.LazyFrame, b: pl.LazyFrame, on: list[str], how: str = "semi") -> pl.LazyFrame:
    # order kept explicitly: per-bucket merges must give each user's rows in the same order as a
    # merge over the whole table
    return a.join(b.select(on), on=on, how=how, nulls_equal=True, maintain_order="left")


def merge_plays(existing: pl.LazyFrame, incoming: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Merged plays and the incoming plays that were already there (duplicates).

    Timestamped plays: an incoming play whose (key, occurrence) is stored is a duplicate and
    dropped. Aggregated plays (null timestamp): the incoming row replaces the stored one.
    Every key holds ``user_id``, so merging bucket by bucket gives the rows of merging it all.
    """
    on = PLAY_KEY + ["_occ"]
    ex, inc = _with_occurrence(existing, PLAY_KEY), _with_occurrence(incoming, PLAY_KEY)
    timed = pl.col("timestamp").is_not_null()
    dup = _semi(inc, ex, on)
    keep_in = pl.concat([inc.filter(~timed), _semi(inc.filter(timed), ex.filter(timed), on, "anti")])
    keep_ex = pl.concat([ex.filter(timed), _semi(ex.filter(~timed), inc.filter(~timed), on, "anti")])
    merged = (pl.concat([keep_ex, keep_in]).drop("_occ")
              .sort(PLAY_ORDER, nulls_last=False, maintain_order=True))
    return merged, dup.drop("_occ")


def merge_tags(existing: pl.LazyFrame, incoming: pl.LazyFrame) -> pl.LazyFrame:
    """Incoming tag rows replace stored ones with the same (user, artist, tag, time, occurrence)."""
    on = TAG_KEY + ["_occ"]
    ex, inc = _with_occurrence(existing, TAG_KEY), _with_occurrence(incoming, TAG_KEY)
    return pl.concat([_semi(ex, inc, on, "anti"), inc]).drop("_occ")


def _ids(lf: pl.LazyFrame, col: str, entities: pl.DataFrame, id_col: str, out: str) -> pl.LazyFrame:
    """Add column ``out``: the entity id of key column ``col`` (a lookup join; null for a null key)."""
    m = entities.lazy().select(pl.col("key").alias(col), pl.col(id_col).alias(out))
    return lf.join(m, on=col, how="left", maintain_order="left")


# ---- phase 1: what an ingest brings, gathered chunk by chunk ------------------------------------

_NULL_S = pl.lit(None, pl.String)
_PLAY_COLS = [c for c in schema.SOURCE_PLAYS if c != "source_row"]


class _KeyReducer:
    """One row per key (first non-null attribute wins) over frames added in order.

    Each added frame is reduced alone; the reduced parts are folded into the running result only
    when they outgrow it, so a long series of chunks costs O(rows log rows) rather than
    re-reducing the whole result per chunk (which made 100M plays in 100 files quadratic). The
    result equals reducing the concatenation of everything added.
    """

    def __init__(self):
        self._acc: pl.DataFrame | None = None
        self._parts: list[pl.DataFrame] = []

    def add(self, frame: pl.LazyFrame) -> None:
        self._parts.append(_first_non_null(frame, "key").collect())
        if sum(p.height for p in self._parts) > max(REDUCE_ROWS, 0 if self._acc is None else self._acc.height):
            self._fold()

    def _fold(self) -> None:
        frames = ([] if self._acc is None else [self._acc]) + self._parts
        if frames:
            self._acc = _first_non_null(pl.concat([f.lazy() for f in frames]), "key").collect()
        self._parts = []

    def frame(self) -> pl.DataFrame:
        self._fold()
        return self._acc


class _Incoming:
    """Everything an ingest reads, gathered chunk by chunk without holding all plays.

    Entity candidates are reduced to one row per key as they come (first non-null attribute
    wins, so the result is that of one concatenated input); ids are assigned only once every
    chunk is read, so a chunked ingest gives the ids of a one-shot ingest. Plays wait in memory
    up to ``SPILL_ROWS`` rows, then go to staged Parquet files (still keyed by strings).
    """

    def __init__(self, fs, staging: str):
        self.fs, self.staging = fs, staging
        self.source: str | None = None
        self.users, self.artists = _KeyReducer(), _KeyReducer()
        self.tracks_listed, self.tracks_played = _KeyReducer(), _KeyReducer()
        self.tags: list[pl.DataFrame] = []
        self.friends: list[pl.DataFrame] = []
        self.rejects = Rejects()
        self.files: list[str] = []
        self.skipped: dict[str, int] = {}
        self.pending: list[pl.DataFrame] = []
        self.spilled: list[str] = []
        self.n_plays = 0

    def add(self, t: SourceTables) -> None:
        if self.source is None:
            self.source = t.source
        elif t.source != self.source:
            raise MusicrecError(f"one ingest reads one source; got chunks of {self.source!r} and {t.source!r}")
        plays, tags, friends = t.plays.lazy(), t.tags.lazy(), t.friends.lazy()
        self.users.add(pl.concat([
            t.users.lazy().select(key="user_key", source_id="source_id"),
            *[lf.select(key=c, source_id=_NULL_S) for lf, c in
              ((plays, "user_key"), (tags, "user_key"), (friends, "user_key"), (friends, "friend_key"))],
        ]))
        self.artists.add(pl.concat([
            t.artists.lazy().select(key="artist_key", source_id="source_id", name="name"),
            *[lf.select(key="artist_key", source_id=_NULL_S, name=_NULL_S)
              for lf in (t.tracks.lazy(), plays, tags)],
        ]))
        # listed tracks come before played ones (as in one concatenated input): two reductions
        self.tracks_listed.add(t.tracks.lazy().select(
            key="track_key", artist_key="artist_key", source_id="source_id", name="name", duration_ms="duration_ms"))
        self.tracks_played.add(plays.select(key="track_key", artist_key="artist_key"))
        if t.tags.height:
            self.tags.append(t.tags)
        if t.friends.height:
            self.friends.append(t.friends)
        self.rejects.rows.extend(t.rejects.rows)
        self.files.extend(f for f in t.files if f not in self.files)
        for kind, n in t.skipped.items():
            self.skipped[kind] = self.skipped.get(kind, 0) + n
        if t.plays.height:
            self.pending.append(t.plays.select(_PLAY_COLS))
            self.n_plays += t.plays.height
            if sum(p.height for p in self.pending) > SPILL_ROWS:
                self._spill()

    def _spill(self) -> None:
        for df in self.pending:
            path = f"{self.staging}/keyed/{len(self.spilled):06d}.parquet"
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(path, "wb") as f:
                df.write_parquet(f)
            self.spilled.append(path)
        self.pending = []

    def play_parts(self) -> Iterable[pl.DataFrame]:
        """The incoming plays in input order, one staged file or buffered frame at a time."""
        for path in self.spilled:
            with self.fs.open(path, "rb") as f:
                yield pl.read_parquet(f)
        yield from self.pending

    def tracks_in(self) -> pl.LazyFrame:
        cols = {"key": pl.String, "artist_key": pl.String, "source_id": pl.String, "name": pl.String,
                "duration_ms": pl.Int64}
        listed, played = self.tracks_listed.frame(), self.tracks_played.frame()
        return pl.concat([schema.conform(df, cols).lazy() for df in (listed, played)])

    def tags_in(self) -> pl.LazyFrame:
        return pl.concat(self.tags).lazy() if self.tags else schema.empty(schema.SOURCE_TAGS).lazy()

    def friends_in(self) -> pl.LazyFrame:
        return pl.concat(self.friends).lazy() if self.friends else schema.empty(schema.SOURCE_FRIENDS).lazy()


# ---- the store --------------------------------------------------------------------------------

class Store:
    """A canonical store at ``url`` (local path or fsspec URL); see the module docstring."""

    def __init__(self, url: str):
        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/") or root
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols or "local" in protocols
        self.in_memory = "memory" in protocols

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _display(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)

    def exists(self) -> bool:
        """Whether anything was ever ingested here."""
        return self.fs.exists(self._path("manifest.json"))

    def manifest(self) -> dict:
        """The manifest (an empty one when the store does not exist yet)."""
        if not self.exists():
            return {"schema_version": SCHEMA_VERSION, "tables": {}, "sources": []}
        with self.fs.open(self._path("manifest.json"), "r", encoding="utf-8") as f:
            return json.load(f)

    @staticmethod
    def _buckets_of(manifest: dict) -> int | None:
        return (manifest.get("plays_layout") or {}).get("buckets")

    @property
    def n_buckets(self) -> int | None:
        """Number of plays buckets (None for an empty store or a single-file store)."""
        return self._buckets_of(self.manifest())

    def play_partitions(self) -> list[str]:
        """URLs of the Parquet files holding the plays, bucket by bucket; each listener's plays
        are all in one file, so per-user work can run one partition at a time (see
        ``musicrec.engine``). Read one with :func:`read_play_partition`. A single-file store
        (schema version 1) has one partition, its ``plays.parquet``."""
        return [self.fs.unstrip_protocol(p) for p in self._play_paths()]

    def _play_paths(self) -> list[str]:
        n = self.n_buckets
        if n is not None:
            return [self._path("plays", bucket_file(b)) for b in range(n)]
        legacy = self._path("plays.parquet")
        return [legacy] if self.fs.exists(legacy) else []

    def table(self, name: str) -> pl.DataFrame:
        """Table ``name`` (an empty frame with its schema when absent). Plays come in the
        canonical order (user_id, timestamp; null timestamps first; ties in stored order)."""
        sch = self._schema(name)
        if name == "plays":
            parts = self.play_partitions()
            if not parts:
                return schema.empty(sch)
            df = pl.concat([read_play_partition(u) for u in parts])
            return df.sort(PLAY_ORDER, nulls_last=False, maintain_order=True) if len(parts) > 1 else df
        path = self._path(f"{name}.parquet")
        if not self.fs.exists(path):
            return schema.empty(sch)
        try:
            return schema.conform(fsio.read_parquet(self.fs.unstrip_protocol(path)), sch)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise MusicrecError(f"store table {self._display(path)} is unreadable "
                                f"({fsio.first_line(exc)})") from None

    def scan(self, name: str, ordered: bool = True) -> pl.LazyFrame:
        """Table ``name`` lazily: a real Parquet scan for local stores (over every plays
        bucket), read through fsspec for others. ``ordered=False`` leaves plays in bucket order
        (each bucket sorted by user and time) instead of the canonical order of :meth:`table`,
        sparing a sort of the whole table."""
        sch = self._schema(name)
        if not self.local:
            return self.table(name).lazy()
        if name != "plays":
            path = self._path(f"{name}.parquet")
            return pl.scan_parquet(path).select(list(sch)) if self.fs.exists(path) else schema.empty(sch).lazy()
        parts = self._play_paths()
        if not parts:
            return schema.empty(sch).lazy()
        lf = pl.scan_parquet(parts).select(list(sch))
        return lf.sort(PLAY_ORDER, nulls_last=False, maintain_order=True) if ordered and len(parts) > 1 else lf

    @staticmethod
    def _schema(name: str) -> dict:
        if name not in TABLES:
            raise MusicrecError(f"unknown store table {name!r}; tables: {', '.join(TABLES)}")
        return TABLES[name]

    def _write(self, name: str, df: pl.DataFrame) -> None:
        _write_parquet(self.fs.unstrip_protocol(self._path(f"{name}.parquet")), df)

    def _write_json(self, rel: str, obj: dict) -> None:
        path = self._path(rel)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
        self.fs.mv(tmp, path)

    def ingest(self, tables: SourceTables, engine=None, partitions: int | None = None) -> IngestReport:
        """Merge one reader's output into the store (idempotent; see the module docstring).

        Parameters
        ----------
        tables : SourceTables
        engine : ``musicrec.engine`` engine or None
            Where the per-bucket merges run (None: in this process). Ray workers read and write
            the store themselves, so on a cluster of several machines the store must be at a URL
            they all reach (``s3://...``, a shared folder); a ``memory://`` store is refused.
        partitions : int or None
            Plays buckets of a new store (default ``DEFAULT_BUCKETS``); an existing store keeps
            its own number, and a different one is an error.
        """
        return self.ingest_chunks([tables], engine=engine, partitions=partitions)

    def ingest_chunks(self, chunks: Iterable[SourceTables], engine=None,
                      partitions: int | None = None) -> IngestReport:
        """Merge a reader's output that comes in chunks (e.g. one per file, or per slice of a
        big Parquet file; see ``musicrec.ingest.readers.read_chunks``) into the store.

        The result equals ``ingest`` of all chunks concatenated, while only one chunk's plays
        (up to ``SPILL_ROWS`` rows) and one bucket at a time are held in memory. Chunks must all
        come from one source. An error from ``chunks`` leaves the store as it was. ``engine``
        and ``partitions`` as in :meth:`ingest`.
        """
        from musicrec.engine import LocalEngine

        manifest = self.manifest()
        version = manifest.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise MusicrecError(f"store {self.url} has schema version {version}; this musicrec writes "
                                f"{SCHEMA_VERSION} (upgrade musicrec)")
        n_buckets = self._buckets_of(manifest)
        if partitions is not None and (not isinstance(partitions, int) or partitions < 1):
            raise MusicrecError(f"partitions must be a positive integer, got {partitions!r}")
        if n_buckets is not None and partitions is not None and partitions != n_buckets:
            raise MusicrecError(f"store {self.url} has {n_buckets} plays partitions, fixed when it was created; "
                                f"drop --partitions or use a new store")
        n_buckets = n_buckets or partitions or DEFAULT_BUCKETS
        engine = engine or LocalEngine()
        if self.in_memory and getattr(engine, "name", "local") != "local":
            raise MusicrecError(f"a memory:// store lives in this process only; --engine {engine.name} needs a "
                                "folder or an object-store URL every worker can reach")
        legacy = self._buckets_of(manifest) is None and self.fs.exists(self._path("plays.parquet"))
        staging = self._path("_staging", uuid.uuid4().hex)
        try:
            incoming = _Incoming(self.fs, staging)
            for chunk in chunks:
                incoming.add(chunk)
            if incoming.source is None:
                raise MusicrecError("nothing to ingest (no chunks)")
            return self._ingest(incoming, engine, n_buckets, legacy)
        finally:
            if self.fs.exists(staging):
                self.fs.rm(staging, recursive=True)
            parent = self._path("_staging")
            if self.fs.exists(parent) and not self.fs.ls(parent):
                self.fs.rm(parent, recursive=True)

    def _ingest(self, inc: _Incoming, engine, n_buckets: int, legacy: bool) -> IngestReport:
        src = inc.source
        self.fs.makedirs(self.root, exist_ok=True)
        old = {name: self.table(name) for name in TABLES if name != "plays"}
        before = {name: df.height for name, df in old.items()}

        users = merge_entities(old["users"].lazy(), inc.users.frame().lazy(), "user_id", schema.STORE_USERS)
        artists = merge_entities(old["artists"].lazy(), inc.artists.frame().lazy(), "artist_id", schema.STORE_ARTISTS)
        tracks_in = _ids(inc.tracks_in(), "artist_key", artists, "artist_id", "artist_id").select(
            "key", "source_id", "artist_id", "name", "duration_ms")
        tracks = merge_entities(old["tracks"].lazy(), tracks_in, "track_id", schema.STORE_TRACKS)

        t = _ids(inc.tags_in(), "artist_key", artists, "artist_id", "artist_id")
        t = _ids(t, "user_key", users, "user_id", "user_id").select(list(schema.STORE_TAGS))
        tags = merge_tags(old["tags"].lazy(), t.filter(pl.col("artist_id").is_not_null())).collect()
        f = _ids(inc.friends_in(), "user_key", users, "user_id", "user_id")
        f = _ids(f, "friend_key", users, "user_id", "friend_id").select(list(schema.STORE_FRIENDS))
        friends = pl.concat([old["friends"].lazy(), f]).unique(maintain_order=True).collect()

        new = {"users": users, "artists": artists, "tracks": tracks, "tags": tags, "friends": friends}
        rejects_path = self._write_rejects(src, inc.rejects)
        for name in ("users", "artists", "tracks", "tags", "friends"):   # plays after: ids exist first
            self._write(name, new[name])

        if legacy:
            self._split_legacy(n_buckets)
        staged = self._stage_plays(inc, users, artists, tracks, n_buckets)
        results = engine.map(merge_bucket, list(range(n_buckets)), store=self.fs.unstrip_protocol(self.root),
                             staging=self.fs.unstrip_protocol(staged))
        rows_after = sum(r[0] for r in results)
        n_dup = sum(r[1] for r in results)
        before["plays"] = sum(r[2] for r in results)

        counts = {name: new[name].height if name != "plays" else rows_after for name in TABLES}
        report = IngestReport(
            source=src, plays_added=inc.n_plays - n_dup, plays_duplicate=n_dup,
            rejected=len(inc.rejects), rejects_path=rejects_path, counts=counts,
            added={name: counts[name] - before[name] for name in TABLES}, skipped=dict(inc.skipped))
        self._update_manifest(report, inc.files, n_buckets)
        if self.fs.exists(self._path("plays.parquet")):     # moved into buckets (legacy store)
            self.fs.rm(self._path("plays.parquet"))
        return report

    def _split_legacy(self, n_buckets: int) -> None:
        """Move a single-file store's plays into buckets. The manifest still names the old
        layout until the ingest ends, so a failure here leaves a readable store."""
        df = read_play_partition(self.fs.unstrip_protocol(self._path("plays.parquet")))
        parts = by_bucket(df, n_buckets)
        self.fs.makedirs(self._path("plays"), exist_ok=True)
        for b in range(n_buckets):
            part = parts.get(b, schema.empty(schema.STORE_PLAYS))
            _write_parquet(self.fs.unstrip_protocol(self._path("plays", bucket_file(b))),
                           part.sort(PLAY_ORDER, nulls_last=False, maintain_order=True))

    def _stage_plays(self, inc: _Incoming, users: pl.DataFrame, artists: pl.DataFrame, tracks: pl.DataFrame,
                     n_buckets: int) -> str:
        """Give the incoming plays their ids and write them to ``<staging>/b-NNNN/NNNNNN.parquet``,
        one file per input part and bucket, in input order. Returns the staging folder."""
        folder = f"{inc.staging}/buckets"
        for i, part in enumerate(inc.play_parts()):
            p = _ids(part.lazy(), "user_key", users, "user_id", "user_id")
            p = _ids(p, "artist_key", artists, "artist_id", "artist_id")
            p = _ids(p, "track_key", tracks, "track_id", "track_id")
            p = p.with_columns(source=pl.lit(inc.source)).select(list(schema.STORE_PLAYS)).collect()
            for b, df in by_bucket(p, n_buckets).items():
                path = f"{folder}/b-{b:04d}/{i:06d}.parquet"
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                with self.fs.open(path, "wb") as f:
                    df.write_parquet(f)
        return folder

    def append_plays(self, plays: pl.DataFrame, source: str = "api") -> IngestReport:
        """Add plays named by store ids (e.g. posted to the HTTP API) through ``ingest``.

        Parameters
        ----------
        plays : DataFrame with columns
            ``user_id`` (store id; null for a listener not in the store yet), ``user`` (the
            listener's own id; their key becomes ``"<source>:<user>"`` when ``user_id`` is null),
            ``artist_id`` (null when ``track_id`` is given: the track's artist is used),
            ``track_id`` (null for artist-level plays), ``timestamp`` (UTC), and optionally
            ``play_count`` (default 1) and ``ms_played``.
        source : str
            Reader name recorded on the plays and in the manifest.

        Ids are turned back into the entities' keys, so re-sending the same timed plays adds
        nothing (``ingest`` is idempotent). Unknown ids raise MusicrecError.
        """
        want = {"user_id": pl.Int64, "user": pl.String, "artist_id": pl.Int64, "track_id": pl.Int64,
                "timestamp": schema.UTC_US, "play_count": pl.Int64, "ms_played": pl.Int64}
        df = schema.conform(plays, want).with_columns(pl.col("play_count").fill_null(1))
        tracks = self.table("tracks").select("track_id", track_key="key", track_artist="artist_id")
        artists = self.table("artists").select("artist_id", artist_key="key")
        users = self.table("users").select("user_id", store_user_key="key")
        df = (df.join(tracks, on="track_id", how="left", maintain_order="left")
              .with_columns(pl.coalesce("artist_id", "track_artist").alias("artist_id"))
              .join(artists, on="artist_id", how="left", maintain_order="left")
              .join(users, on="user_id", how="left", maintain_order="left"))
        problems = {
            "track": df.filter(pl.col("track_id").is_not_null() & pl.col("track_key").is_null())["track_id"],
            "artist": df.filter(pl.col("artist_id").is_not_null() & pl.col("artist_key").is_null())["artist_id"],
            "user": df.filter(pl.col("user_id").is_not_null() & pl.col("store_user_key").is_null())["user_id"],
        }
        for what, ids in problems.items():
            if len(ids):
                raise MusicrecError(f"unknown {what} id(s) in the store {self.url}: "
                                    f"{', '.join(map(str, ids.unique().sort().head(5)))}")
        if df.filter(pl.col("artist_id").is_null()).height:
            raise MusicrecError("every play needs an artist_id or a track_id")
        if df.filter(pl.col("user_id").is_null() & pl.col("user").is_null()).height:
            raise MusicrecError("every play needs a user_id or a user")
        df = df.with_columns(user_key=pl.coalesce("store_user_key", pl.lit(f"{source}:") + pl.col("user")))
        new_users = df.filter(pl.col("user_id").is_null()).select("user_key", source_id="user").unique("user_key")
        source_plays = df.with_row_index("source_row", offset=1).with_columns(
            pl.col("source_row").cast(pl.Int64), skipped=pl.lit(None, pl.Boolean), session_key=pl.lit(None, pl.String))
        return self.ingest(SourceTables(source=source, plays=source_plays, users=new_users))

    def _write_rejects(self, src: str, rejects: Rejects) -> str | None:
        if not len(rejects):
            return None
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = self._path("rejects", f"{src}-{stamp}.csv")
        table = rejects.frame().select(list(REJECTS_SCHEMA))
        fsio.atomic_write(self.fs.unstrip_protocol(path), lambda f: table.write_csv(f))
        return self._display(path)

    def _update_manifest(self, report: IngestReport, files: list[str], n_buckets: int) -> None:
        manifest = self.manifest()
        manifest["schema_version"] = SCHEMA_VERSION
        manifest["plays_layout"] = {"buckets": n_buckets, "bucket": "splitmix64(user_id) mod buckets",
                                    "files": "plays/part-NNNN.parquet"}
        manifest["tables"] = report.counts
        manifest["sources"].append({
            "source": report.source,
            "ingested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": [fingerprint(f) for f in files],
            "plays_added": report.plays_added, "plays_duplicate": report.plays_duplicate,
            "rejected": report.rejected, "rejects_path": report.rejects_path, "skipped": report.skipped,
        })
        self._write_json("manifest.json", manifest)


# ---- phase 2: one bucket, anywhere ---------------------------------------------------------------

def _write_parquet(url: str, df: pl.DataFrame) -> None:
    fsio.atomic_write(url, lambda f: df.write_parquet(f))


def _parquet_rows(fs, path: str) -> int:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def merge_bucket(bucket: int, store: str, staging: str) -> tuple[int, int, int]:
    """Merge the staged plays of one bucket into the store's bucket file (phase 2 of an ingest).

    Runs anywhere the URLs can be read (in this process or as a Ray task). The bucket file is
    rewritten only when plays were staged for it, atomically.

    Parameters
    ----------
    bucket : int
        Bucket number.
    store : str
        URL of the store (``file://...``, ``s3://...``).
    staging : str
        URL of the ingest's staging folder, holding ``b-NNNN/*.parquet`` (plays with store ids,
        in input order).

    Returns
    -------
    (rows, duplicates, rows_before) : the bucket's plays after the merge, incoming plays that
        were already stored, and the bucket's plays before.
    """
    fs, root = fsspec.core.url_to_fs(store)
    target = f"{root.rstrip('/')}/plays/{bucket_file(bucket)}"
    sfs, sroot = fsspec.core.url_to_fs(staging)
    folder = f"{sroot.rstrip('/')}/b-{bucket:04d}"
    staged = sorted(sfs.find(folder)) if sfs.exists(folder) else []
    exists = fs.exists(target)
    if not staged:
        if not exists:
            _write_parquet(fs.unstrip_protocol(target), schema.empty(schema.STORE_PLAYS))
            return 0, 0, 0
        n = _parquet_rows(fs, target)
        return n, 0, n
    existing = read_play_partition(fs.unstrip_protocol(target)) if exists else schema.empty(schema.STORE_PLAYS)
    parts = []
    for path in staged:
        with sfs.open(path, "rb") as f:
            parts.append(schema.conform(pl.read_parquet(f), schema.STORE_PLAYS))
    incoming = pl.concat(parts)
    del parts
    if existing.height == 0:        # a new bucket: what merge_plays gives, without its joins
        merged, n_dup = incoming.sort(PLAY_ORDER, nulls_last=False, maintain_order=True), 0
    else:
        merged, dup = merge_plays(existing.lazy(), incoming.lazy())
        merged, n_dup = pl.collect_all([merged, dup.select(pl.len())])
        n_dup = n_dup.item()
    del incoming
    _write_parquet(fs.unstrip_protocol(target), merged)
    return merged.height, n_dup, existing.height


def read_play_partition(url: str, columns: list[str] | None = None) -> pl.DataFrame:
    """One partition of a store's plays (``schema.STORE_PLAYS``, or ``columns`` of it), e.g.
    inside a Ray task; see :meth:`Store.play_partitions`."""
    try:
        df = fsio.read_parquet(url, columns=columns)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise MusicrecError(f"plays partition {url} is unreadable ({fsio.first_line(exc)})") from None
    sch = schema.STORE_PLAYS if not columns else {c: schema.STORE_PLAYS[c] for c in columns}
    return schema.conform(df, sch)


def fingerprint(path: str) -> dict:
    """``{"path", "size", "sha256"}`` of a local input file (size/sha256 null when unreadable)."""
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {"path": os.path.abspath(path), "size": os.path.getsize(path), "sha256": h.hexdigest()}
    except OSError:
        return {"path": str(path), "size": None, "sha256": None}


def ingest_path(source: str, path, store_url: str, /, engine=None, partitions: int | None = None,
                **options) -> IngestReport:
    """Read ``path`` with reader ``source`` (see ``musicrec.ingest.readers``) and ingest it into
    the store at ``store_url``; ``options`` go to the reader (e.g. ``user=``, ``columns=``).

    CSV and Parquet input is read chunk by chunk (per file, and per slice of a big Parquet
    file), so memory stays bounded however large the input. ``engine`` (a ``musicrec.engine``
    engine, or ``"local"``/``"ray"``) runs the per-bucket merges; ``partitions`` sets the plays
    buckets of a new store.
    """
    from musicrec.engine import using
    from musicrec.ingest.readers import read_chunks

    with using(engine) as runner:
        return Store(store_url).ingest_chunks(read_chunks(source, path, **options), engine=runner,
                                              partitions=partitions)
