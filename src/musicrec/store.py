"""The canonical store: every source's listening data as plain Parquet tables with stable ids.

Layout (a local folder or any fsspec URL, e.g. ``memory://x`` or ``s3://bucket/store``)::

    <store>/plays.parquet     one row per listen, or per (user, artist) count for aggregated data
    <store>/artists.parquet   <store>/tracks.parquet   <store>/users.parquet
    <store>/tags.parquet      <store>/friends.parquet
    <store>/manifest.json     schema version, row counts, one entry per ingest (source, input file
                              sizes and sha256, rows added / duplicate / rejected, rejects file)
    <store>/rejects/<source>-<UTC time>.csv   rows a reader refused: source, file, record, reason, raw

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

``key`` is the reader's namespaced string key (``hetrec:51``, ``mbid:<uuid>``, ``name:radiohead``,
``spotify:track:<id>``; see ``musicrec.schema``), so two sources that share an id scheme share rows.
Ids are int64, assigned once and never changed: a new key gets ``max(id) + 1, ...`` in key order.
For names and other attributes the first non-null value wins; rows are never dropped.

Ingesting is idempotent. A play is identified by (user_id, artist_id, track_id, timestamp,
session_key, source) plus its occurrence number among identical plays, so re-reading a file or
an overlapping file adds nothing, while true repeats inside one file (two identical scrobbles)
are kept. Aggregated rows (no timestamp, e.g. HetRec counts) are replaced by a later ingest.
Every join key holds ``user_id``, so the merge can run per user partition.

Each table is written to a temporary name and renamed. Tables are plain Parquet, readable by
any tool: ``duckdb.sql("select count(*) from '<store>/plays.parquet'")``. One writer at a time.
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

from musicrec import MusicrecError, schema
from musicrec.ingest.base import REJECTS_SCHEMA, SourceTables

SCHEMA_VERSION = 1
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


def merge_plays(existing: pl.LazyFrame, incoming: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Merged plays and the incoming plays that were already there (duplicates).

    Timestamped plays: an incoming play whose (key, occurrence) is stored is a duplicate and
    dropped. Aggregated plays (null timestamp): the incoming row replaces the stored one.
    """
    on = PLAY_KEY + ["_occ"]
    ex, inc = _with_occurrence(existing, PLAY_KEY), _with_occurrence(incoming, PLAY_KEY)
    timed = pl.col("timestamp").is_not_null()
    dup = inc.join(ex.select(on), on=on, how="semi", nulls_equal=True)
    keep_in = pl.concat([inc.filter(~timed),
                         inc.filter(timed).join(ex.filter(timed).select(on), on=on, how="anti", nulls_equal=True)])
    keep_ex = pl.concat([ex.filter(timed),
                         ex.filter(~timed).join(inc.filter(~timed).select(on), on=on, how="anti", nulls_equal=True)])
    merged = (pl.concat([keep_ex, keep_in]).drop("_occ")
              .sort(["user_id", "timestamp"], nulls_last=False, maintain_order=True))
    return merged, dup.drop("_occ")


def merge_tags(existing: pl.LazyFrame, incoming: pl.LazyFrame) -> pl.LazyFrame:
    """Incoming tag rows replace stored ones with the same (user, artist, tag, time, occurrence)."""
    on = TAG_KEY + ["_occ"]
    ex, inc = _with_occurrence(existing, TAG_KEY), _with_occurrence(incoming, TAG_KEY)
    return pl.concat([ex.join(inc.select(on), on=on, how="anti", nulls_equal=True), inc]).drop("_occ")


def _ids(lf: pl.LazyFrame, col: str, entities: pl.DataFrame, id_col: str, out: str) -> pl.LazyFrame:
    """Add column ``out``: the entity id of key column ``col`` (a lookup join; null for a null key)."""
    m = entities.lazy().select(pl.col("key").alias(col), pl.col(id_col).alias(out))
    return lf.join(m, on=col, how="left", maintain_order="left")


# ---- the store --------------------------------------------------------------------------------

class Store:
    """A canonical store at ``url`` (local path or fsspec URL); see the module docstring."""

    def __init__(self, url: str):
        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/") or root
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

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

    def table(self, name: str) -> pl.DataFrame:
        """Table ``name`` (an empty frame with its schema when absent)."""
        sch = self._schema(name)
        path = self._path(f"{name}.parquet")
        if not self.fs.exists(path):
            return schema.empty(sch)
        try:
            with self.fs.open(path, "rb") as f:
                return schema.conform(pl.read_parquet(f), sch)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise MusicrecError(f"store table {self._display(path)} is unreadable "
                                f"({str(exc).splitlines()[0]})") from None

    def scan(self, name: str) -> pl.LazyFrame:
        """Table ``name`` lazily (a real Parquet scan for local stores)."""
        sch = self._schema(name)
        path = self._path(f"{name}.parquet")
        if self.local and self.fs.exists(path):
            return pl.scan_parquet(path).select(list(sch))
        return self.table(name).lazy()

    def play_partitions(self) -> list[str]:
        """URLs of the Parquet files holding the plays, in a fixed order; each listener's plays
        are all in one file, so per-user work can run one partition at a time (see
        ``musicrec.engine``). Read one with :func:`read_play_partition`."""
        path = self._path("plays.parquet")
        return [self.fs.unstrip_protocol(path)] if self.fs.exists(path) else []

    @staticmethod
    def _schema(name: str) -> dict:
        if name not in TABLES:
            raise MusicrecError(f"unknown store table {name!r}; tables: {', '.join(TABLES)}")
        return TABLES[name]

    def _write(self, name: str, df: pl.DataFrame) -> None:
        path = self._path(f"{name}.parquet")
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as f:
            df.write_parquet(f)
        self.fs.mv(tmp, path)

    def _write_json(self, rel: str, obj: dict) -> None:
        path = self._path(rel)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
        self.fs.mv(tmp, path)

    def ingest(self, tables: SourceTables) -> IngestReport:
        """Merge one reader's output into the store (idempotent; see the module docstring)."""
        src = tables.source
        version = self.manifest().get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise MusicrecError(f"store {self.url} has schema version {version}; this musicrec writes "
                                f"{SCHEMA_VERSION} (upgrade musicrec)")
        self.fs.makedirs(self.root, exist_ok=True)
        old = {name: self.table(name) for name in TABLES}
        before = {name: df.height for name, df in old.items()}
        plays_in, tags_in, friends_in = tables.plays.lazy(), tables.tags.lazy(), tables.friends.lazy()
        null = lambda t: pl.lit(None, t)  # noqa: E731

        users_in = pl.concat([
            tables.users.lazy().select(key="user_key", source_id="source_id"),
            *[lf.select(key=c, source_id=null(pl.String)) for lf, c in
              ((plays_in, "user_key"), (tags_in, "user_key"), (friends_in, "user_key"), (friends_in, "friend_key"))],
        ])
        users = merge_entities(old["users"].lazy(), users_in, "user_id", schema.STORE_USERS)

        artists_in = pl.concat([
            tables.artists.lazy().select(key="artist_key", source_id="source_id", name="name"),
            *[lf.select(key="artist_key", source_id=null(pl.String), name=null(pl.String))
              for lf in (tables.tracks.lazy(), plays_in, tags_in)],
        ])
        artists = merge_entities(old["artists"].lazy(), artists_in, "artist_id", schema.STORE_ARTISTS)

        tracks_in = pl.concat([
            tables.tracks.lazy().select("track_key", "artist_key", "source_id", "name", "duration_ms"),
            plays_in.select("track_key", "artist_key", source_id=null(pl.String), name=null(pl.String),
                            duration_ms=null(pl.Int64)),
        ])
        tracks_in = _ids(tracks_in, "artist_key", artists, "artist_id", "artist_id").select(
            key="track_key", source_id="source_id", artist_id="artist_id", name="name", duration_ms="duration_ms")
        tracks = merge_entities(old["tracks"].lazy(), tracks_in, "track_id", schema.STORE_TRACKS)

        p = _ids(plays_in, "user_key", users, "user_id", "user_id")
        p = _ids(p, "artist_key", artists, "artist_id", "artist_id")
        p = _ids(p, "track_key", tracks, "track_id", "track_id")
        p = p.with_columns(source=pl.lit(src)).select(list(schema.STORE_PLAYS))
        plays, dup = merge_plays(old["plays"].lazy(), p)
        plays, n_dup = pl.collect_all([plays, dup.select(pl.len())])
        n_dup = n_dup.item()

        t = _ids(tags_in, "artist_key", artists, "artist_id", "artist_id")
        t = _ids(t, "user_key", users, "user_id", "user_id").select(list(schema.STORE_TAGS))
        tags = merge_tags(old["tags"].lazy(), t.filter(pl.col("artist_id").is_not_null())).collect()

        f = _ids(friends_in, "user_key", users, "user_id", "user_id")
        f = _ids(f, "friend_key", users, "user_id", "friend_id").select(list(schema.STORE_FRIENDS))
        friends = pl.concat([old["friends"].lazy(), f]).unique(maintain_order=True).collect()

        new = {"users": users, "artists": artists, "tracks": tracks, "tags": tags, "friends": friends,
               "plays": plays}
        rejects_path = self._write_rejects(src, tables)
        for name in ("users", "artists", "tracks", "tags", "friends", "plays"):  # plays last: ids exist first
            self._write(name, new[name])

        counts = {name: df.height for name, df in new.items()}
        report = IngestReport(
            source=src, plays_added=tables.plays.height - n_dup, plays_duplicate=n_dup,
            rejected=len(tables.rejects), rejects_path=rejects_path, counts=counts,
            added={name: counts[name] - before[name] for name in TABLES}, skipped=dict(tables.skipped))
        self._update_manifest(report, tables)
        return report

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

    def _write_rejects(self, src: str, tables: SourceTables) -> str | None:
        if not len(tables.rejects):
            return None
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.fs.makedirs(self._path("rejects"), exist_ok=True)
        path = self._path("rejects", f"{src}-{stamp}.csv")
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as f:
            tables.rejects.frame().select(list(REJECTS_SCHEMA)).write_csv(f)
        self.fs.mv(tmp, path)
        return self._display(path)

    def _update_manifest(self, report: IngestReport, tables: SourceTables) -> None:
        manifest = self.manifest()
        manifest["schema_version"] = SCHEMA_VERSION
        manifest["tables"] = report.counts
        manifest["sources"].append({
            "source": report.source,
            "ingested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": [fingerprint(f) for f in tables.files],
            "plays_added": report.plays_added, "plays_duplicate": report.plays_duplicate,
            "rejected": report.rejected, "rejects_path": report.rejects_path, "skipped": report.skipped,
        })
        self._write_json("manifest.json", manifest)


def read_play_partition(url: str, columns: list[str] | None = None) -> pl.DataFrame:
    """One partition of a store's plays (``schema.STORE_PLAYS``), e.g. inside a Ray task."""
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as f:
        df = schema.conform(pl.read_parquet(f), schema.STORE_PLAYS)
    return df.select(columns) if columns else df


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


def ingest_path(source: str, path, store_url: str, /, **options) -> IngestReport:
    """Read ``path`` with reader ``source`` (see ``musicrec.ingest.readers``) and ingest it into
    the store at ``store_url``; ``options`` go to the reader (e.g. ``user=``, ``columns=``)."""
    from musicrec.ingest.readers import read

    return Store(store_url).ingest(read(source, path, **options))
