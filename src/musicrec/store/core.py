"""The canonical store: every source's listening data as Delta Lake tables with stable ids.

Layout (a local folder, or ``s3://bucket/store``, ``gs://``, ``az://`` where delta-rs writes)::

    <store>/plays/      Delta table, partitioned by ``bucket``: a play of user ``u`` is in bucket
                        ``user_bucket(u, n)`` (splitmix64 of the user id, mod ``n``); ``n`` is fixed
                        when the store is created (``partitions=``, default 16) and kept in the
                        table's description
    <store>/artists/  tracks/  users/  tags/  friends/  aliases/      Delta tables
    <store>/ingests/    Delta table, one row per ingest (source, input files with sizes and
                        sha256, rows added / duplicate / rejected, rejects file)
    <store>/rejects/<source>-<UTC time>.csv   rows a reader refused: source, file, record, reason, raw
    <store>/_staging/<UTC time>-<id>/         an ingest's staged plays; removed when it ends

A store exists once its ``ingests`` table does. Tables (``musicrec.schema.STORE_*``; every
timestamp is microseconds UTC):

=========  ==========================================================================================
plays      user_id, artist_id, track_id (null for artist-level data), timestamp (null for aggregated
           counts), play_count, ms_played, skipped, session_key (the source's own session id, or
           null), source (reader name, e.g. ``"hetrec-lastfm-2k"``)
artists    artist_id, key, source_id, name
tracks     track_id, key, source_id, artist_id, name, duration_ms
users      user_id, key, source_id (the listener's id in its source)
tags       artist_id, tag (lower-case), user_id (who tagged, or null), timestamp, weight
friends    user_id, friend_id
aliases    entity (artist / track), key, id, source_id, name, rule: another source's key of a stored
           artist or track (``musicrec.store.resolve``)
=========  ==========================================================================================

``Store.table("plays")`` gives the plays in one canonical order: sorted by (user_id, timestamp),
null timestamps first, ties by the other columns (``merge.PLAY_SORT``). ``Store.snapshot()`` pins every table's version, so
reading several tables (as a split does) sees one state however many writers run, and the
versions it records bring that state back later (``Store(url, versions=...)``; time travel
until ``vacuum`` removes the files).

``key`` is the reader's namespaced string key (``hetrec:51``, ``mbid:<uuid>``, ``name:radiohead``,
``spotify:track:<id>``; see ``musicrec.schema``), so two sources that share an id scheme share
rows. Ids are int64, assigned once and never changed: new keys get ``max(id) + 1, ...`` in key
order. For names and other attributes the first non-null value wins; rows are never dropped.
Ingesting is idempotent (see ``musicrec.store.merge``), and every write is a Delta commit that
fails and is recomputed when a concurrent writer changed what it read (``musicrec.store.writer``):
several ingests and a server posting plays may run at once.

Tables are plain Delta, readable by any tool: ``polars.scan_delta("<store>/plays")``,
``duckdb.sql("select count(*) from delta_scan('<store>/plays')")``, Spark, Ray Data.
Stores written before (a ``manifest.json`` and Parquet files) are read as they are and moved
into Delta tables by ``musicrec store migrate`` or by their next ingest.
"""

from __future__ import annotations

import json
from typing import Iterable

import fsspec
import polars as pl

from musicrec import MusicrecError, fsio, schema
from musicrec.ingest.base import SourceTables
from musicrec.store import delta, legacy, writer
from musicrec.store.buckets import by_bucket
from musicrec.store.incoming import Incoming
from musicrec.store.merge import _ids, merge_tags, sort_plays
from musicrec.store import resolve
from musicrec.store.writer import IngestReport

SCHEMA_VERSION = 3          # 3: Delta tables (2: Parquet files in user-hash buckets; 1: one plays.parquet)
DEFAULT_BUCKETS = 16
TABLES = {
    "plays": schema.STORE_PLAYS,
    "artists": schema.STORE_ARTISTS,
    "tracks": schema.STORE_TRACKS,
    "users": schema.STORE_USERS,
    "tags": schema.STORE_TAGS,
    "friends": schema.STORE_FRIENDS,
    "aliases": schema.STORE_ALIASES,
}
ENTITIES = ("users", "artists", "tracks")


class Store:
    """A canonical store at ``url`` (local path or object-store URL); see the module docstring.

    ``versions`` (table name -> Delta version, as :meth:`snapshot` records) pins what is read.
    """

    def __init__(self, url: str, versions: dict[str, int] | None = None):
        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/") or root
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols or "local" in protocols
        self.in_memory = "memory" in protocols
        self.versions = dict(versions) if versions else None
        self._handles: dict = {}        # table name -> DeltaTable, brought up to date on use
        self._frames: dict = {}         # entity table name -> (version, rows): versions never change
        self._delta = False             # once Delta, always Delta
        self._buckets: int | None = None
        #: identity keys (``names.identity_key``) an ingest never matches by name: a user's correction
        self.keep_apart: frozenset[str] = frozenset()

    # ---- where things are ----------------------------------------------------------------------
    def uri(self, name: str) -> str:
        """URL (or absolute local path) of table ``name``."""
        return fsio.join(fsio.absolute(self.url), name)

    @staticmethod
    def schema_of(name: str) -> dict:
        if name not in TABLES:
            raise MusicrecError(f"unknown store table {name!r}; tables: {', '.join(TABLES)}")
        return TABLES[name]

    @property
    def format(self) -> str | None:
        """``"delta"``, ``"legacy"`` (Parquet files and a manifest) or None (nothing here yet)."""
        if self._delta:
            return "delta"
        if not self.in_memory and delta.is_table(self.uri("ingests")):
            self._delta = True
            return "delta"
        return "legacy" if self.fs.exists(f"{self.root}/manifest.json") else None

    def exists(self) -> bool:
        """Whether anything was ever ingested here."""
        return self.format is not None

    def _table(self, name: str):
        """The Delta table ``name`` at this store's pinned version (latest when unpinned), or None."""
        if self.versions is not None:
            version = self.versions.get(name)
            return None if version is None else delta.open_table(self.uri(name), version)
        return self.latest(name)

    def latest(self, name: str):
        """Table ``name`` at its latest version (None when absent); a handle kept by this
        object is brought up to date by reading only the commits since."""
        table = self._handles.get(name)
        if table is None:
            table = delta.open_table(self.uri(name))
            if table is not None:
                self._handles[name] = table
            return table
        table.update_incremental()
        return table

    def plays_table(self):
        """The plays table, latest version."""
        table = self.latest("plays")
        if table is None:
            raise MusicrecError(f"store {self.url} has no plays table yet")
        return table

    def snapshot(self) -> "Store":
        """This store pinned at the current version of every table (``.versions``)."""
        if self.format != "delta":
            return self
        versions = {}
        for name in (*TABLES, "ingests"):
            table = delta.open_table(self.uri(name))
            if table is not None:
                versions[name] = table.version()
        return Store(self.url, versions)

    # ---- reading ---------------------------------------------------------------------------------
    def manifest(self) -> dict:
        """Schema version, plays layout, rows per table and one entry per ingest (empty when
        nothing was ingested)."""
        fmt = self.format
        if fmt == "legacy":
            return legacy.manifest(self.fs, self.root)
        if fmt is None:
            return {"schema_version": SCHEMA_VERSION, "tables": {}, "sources": []}
        counts = {}
        for name in TABLES:
            table = self._table(name)
            counts[name] = delta.row_count(table)
        log = delta.read(self._table("ingests"), writer.INGESTS)
        return {"schema_version": SCHEMA_VERSION, "format": "delta",
                "plays_layout": {"buckets": self.n_buckets, "bucket": "splitmix64(user_id) mod buckets",
                                 "partition_column": delta.PARTITION},
                "tables": counts, "sources": [json.loads(e) for e in log.sort("ingested_at")["entry"]],
                "versions": self.snapshot().versions if self.versions is None else self.versions}

    @property
    def n_buckets(self) -> int | None:
        """Number of plays buckets (None for an empty store or a single-file store)."""
        if self.format == "legacy":
            return legacy.buckets(legacy.manifest(self.fs, self.root))
        if self._buckets is None:
            table = None if self.in_memory else self.latest("plays")
            if table is None:
                return None
            self._buckets = int(json.loads(table.metadata().description or "{}").get("buckets") or DEFAULT_BUCKETS)
        return self._buckets

    def play_partitions(self) -> list[str]:
        """One string per plays bucket naming its rows at one table version; each listener's
        plays are all in one, so per-user work can run one partition at a time (see
        ``musicrec.engine``). Read one with :func:`read_play_partition`."""
        fmt = self.format
        if fmt == "legacy":
            return [self.fs.unstrip_protocol(p) for p in
                    legacy.play_paths(self.fs, self.root, legacy.manifest(self.fs, self.root))]
        table = self._table("plays")
        if fmt is None or table is None:
            return []
        return [f"{self.uri('plays')}#version={table.version()}&bucket={b}" for b in range(self.n_buckets)]

    def table(self, name: str) -> pl.DataFrame:
        """Table ``name`` (an empty frame with its schema when absent). Plays come in the
        canonical order (user_id, timestamp; null timestamps first; ties by the other columns);
        users, artists and tracks by id."""
        sch = self.schema_of(name)
        if name == "plays":
            parts = self.play_partitions()
            if not parts:
                return schema.empty(sch)
            df = pl.concat([read_play_partition(u) for u in parts])
            return sort_plays(df) if len(parts) > 1 else df
        if self.format == "legacy":
            return legacy.read_table(self.fs, self.root, name, sch)
        if self.format != "delta":
            return schema.empty(sch)
        table = self._table(name)
        if table is None:
            return schema.empty(sch)
        cached = self._frames.get(name)
        if cached is not None and cached[0] == table.version():
            return cached[1]
        df = delta.read(table, sch)
        # by id; tags and friends by every column: written order is not kept by Delta writers
        df = df.sort(next(iter(sch))) if name in ENTITIES else df.sort(pl.all(), nulls_last=False)
        if name in ENTITIES:
            self._frames[name] = (table.version(), df)
        return df

    def scan(self, name: str, ordered: bool = True) -> pl.LazyFrame:
        """Table ``name`` lazily. ``ordered=False`` leaves plays in bucket order (each bucket
        sorted by user and time) instead of the canonical order of :meth:`table`."""
        sch = self.schema_of(name)
        if name == "plays" and not ordered:
            parts = self.play_partitions()
            return pl.concat([read_play_partition(u).lazy() for u in parts]) if parts else schema.empty(sch).lazy()
        return self.table(name).lazy()

    # ---- writing -----------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.versions is not None:
            raise MusicrecError("a store pinned at table versions (a snapshot) is read-only")
        if self.in_memory:
            raise MusicrecError(f"{self.url}: a store needs a folder or an object-store URL (s3://, gs://, az://); "
                                "memory:// cannot hold its Delta tables")

    def ingest(self, tables: SourceTables, engine=None, partitions: int | None = None) -> IngestReport:
        """Merge one reader's output into the store (idempotent; see the module docstring).

        Parameters
        ----------
        tables : SourceTables
        engine : ``musicrec.engine`` engine or None
            Where the per-bucket merges run (None: in this process). Ray workers read the store
            and write merged buckets themselves, so on a cluster of several machines the store
            must be at a URL they all reach (``s3://...``, a shared folder).
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
        and one bucket at a time are held in memory. Chunks must all come from one source. An
        error from ``chunks`` leaves the store as it was.
        """
        from musicrec.engine import LocalEngine

        self._writable()
        if partitions is not None and (not isinstance(partitions, int) or partitions < 1):
            raise MusicrecError(f"partitions must be a positive integer, got {partitions!r}")
        if self.format == "legacy":
            self.migrate()
        n_buckets = self.n_buckets
        if n_buckets is not None and partitions is not None and partitions != n_buckets:
            raise MusicrecError(f"store {self.url} has {n_buckets} plays partitions, fixed when it was created; "
                                f"drop --partitions or use a new store")
        engine = engine or LocalEngine()
        staging = writer.new_staging(self)
        try:
            incoming = Incoming(self.fs, staging)
            for chunk in chunks:
                incoming.add(chunk)
            if incoming.source is None:
                raise MusicrecError("nothing to ingest (no chunks)")
            writer.ensure_plays(self, n_buckets or partitions or DEFAULT_BUCKETS)
            return self._ingest(incoming, engine)
        finally:
            writer.remove_staging(self.fs, staging)

    def _ingest(self, inc: Incoming, engine) -> IngestReport:
        writer.check_anonymous(self, inc)
        ent, ids, matched = resolve.commit_entities(self, inc, self.keep_apart)
        users, artists, tracks = (ids[n] for n in ENTITIES)
        new, before = {n: ent[n][0].height for n in ENTITIES}, {n: ent[n][1] for n in ENTITIES}
        if inc.tags:
            t = _ids(inc.tags_in(), "artist_key", artists, "artist_id", "artist_id")
            t = _ids(t, "user_key", users, "user_id", "user_id").select(list(schema.STORE_TAGS))
            t = t.filter(pl.col("artist_id").is_not_null()).collect()
            tags, before["tags"] = writer.commit_replacing(self, "tags", lambda old: merge_tags(old.lazy(), t.lazy()).collect())
            new["tags"] = tags.height
        if inc.friends:
            f = _ids(inc.friends_in(), "user_key", users, "user_id", "user_id")
            f = _ids(f, "friend_key", users, "user_id", "friend_id").select(list(schema.STORE_FRIENDS)).collect()
            friends, before["friends"] = writer.commit_replacing(
                self, "friends", lambda old: pl.concat([old, f]).unique(maintain_order=True))
            new["friends"] = friends.height
        for name in ("tags", "friends"):
            if name not in new:
                new[name] = before[name] = delta.row_count(self.latest(name))
        rejects_path = writer.write_rejects(self, inc.source, inc.rejects)
        staged = writer.stage_plays(inc, users, artists, tracks, self.n_buckets)
        if staged:
            new["plays"], n_dup, before["plays"] = writer.commit_plays(self, staged, engine, inc.source)
        else:
            new["plays"] = before["plays"] = delta.row_count(self.plays_table())
            n_dup = 0
        report = IngestReport(
            source=inc.source, plays_added=inc.n_plays - n_dup, plays_duplicate=n_dup,
            rejected=len(inc.rejects), rejects_path=rejects_path, counts=dict(new),
            added={name: new[name] - before[name] for name in TABLES if name in new},
            skipped=dict(inc.skipped), matched=matched)
        writer.log_ingest(self, report, inc.files)
        return report

    def append_plays(self, plays: pl.DataFrame, source: str = "api") -> IngestReport:
        """Append plays named by store ids (e.g. posted to the HTTP API): one commit of the new
        rows, O(rows posted), not a rewrite.

        Parameters
        ----------
        plays : DataFrame with columns
            ``user_id`` (store id; null for a listener not in the store yet), ``user`` (the
            listener's own id; their key becomes ``"<source>:<user>"`` when ``user_id`` is null),
            ``artist_id`` (null when ``track_id`` is given: the track's artist is used),
            ``track_id`` (null for artist-level plays), ``timestamp`` (UTC, required), and
            optionally ``play_count`` (default 1) and ``ms_played``.
        source : str
            Reader name recorded on the plays.

        Ids are turned back into the entities' keys, so re-sending the same plays adds nothing.
        Unknown ids raise MusicrecError.
        """
        return self.append_play_batches([plays], source)[0]

    def append_play_batches(self, batches: list[pl.DataFrame], source: str = "api") -> list[IngestReport]:
        """``append_plays`` for several posts in one commit (group commit); one report per post.

        The result is that of appending the posts one after another: a play of a later post that
        an earlier one holds (same listener, item, time; counted by occurrence) is a duplicate.
        """
        self._writable()
        if self.format != "delta":
            if self.format is None:
                raise MusicrecError(f"{self.url}: no musicrec store here; create one with `musicrec ingest`")
            self.migrate()
        want = {"user_id": pl.Int64, "user": pl.String, "artist_id": pl.Int64, "track_id": pl.Int64,
                "timestamp": schema.UTC_US, "play_count": pl.Int64, "ms_played": pl.Int64}
        df = pl.concat([schema.conform(b, want).with_columns(_post=pl.lit(n, pl.Int64)) for n, b in enumerate(batches)])
        df = df.with_columns(pl.col("play_count").fill_null(1))
        try:        # ids are never taken back: rows seen before are still right, so look there first
            df = self._with_keys(df, cached=True)
        except MusicrecError:
            df = self._with_keys(df, cached=False)
        if df["timestamp"].null_count():
            raise MusicrecError("every posted play needs a timestamp")
        df = df.with_columns(user_key=pl.coalesce("store_user_key", pl.lit(f"{source}:") + pl.col("user")))
        new_users = (df.filter(pl.col("user_id").is_null()).select(key="user_key", source_id="user", _post="_post")
                     .unique("key", keep="first", maintain_order=True))
        if new_users.height:        # listeners not in the store yet get ids first (one commit)
            users, before = writer.commit_entities(self, "users", lambda: new_users.drop("_post").lazy())
            n_new = users.height - before       # new ids are max + 1, ...: the highest n_new ids
            first_new = users["user_id"].max() - n_new + 1
            new_users = new_users.join(users.select(key="key", _id="user_id"), on="key").filter(pl.col("_id") >= first_new)
            df = df.join(users.select(user_key="key", _id="user_id"), on="user_key", how="left",
                         maintain_order="left").with_columns(pl.coalesce("user_id", "_id").alias("user_id"))
        plays = schema.conform(df.with_columns(source=pl.lit(source)), schema.STORE_PLAYS | {"_post": pl.Int64})
        added = writer.append_plays(self, plays, source)
        posted, users_new = dict(plays.group_by("_post").len().iter_rows()), new_users["_post"].to_list()
        return [IngestReport(source=source, plays_added=added.get(n, 0), plays_duplicate=posted.get(n, 0) - added.get(n, 0),
                             rejected=0, rejects_path=None, added={"plays": added.get(n, 0), "users": users_new.count(n)})
                for n in range(len(batches))]

    def _with_keys(self, df: pl.DataFrame, cached: bool) -> pl.DataFrame:
        """Posted plays with their track, artist and listener keys; MusicrecError for unknown ids."""
        def rows(name):
            hit = self._frames.get(name) if cached else None
            return hit[1] if hit is not None else self.table(name)

        tracks = rows("tracks").select("track_id", track_key="key", track_artist="artist_id")
        artists = rows("artists").select("artist_id", artist_key="key")
        users = rows("users").select("user_id", store_user_key="key")
        df = (df.join(tracks, on="track_id", how="left", maintain_order="left")
              .with_columns(pl.coalesce("artist_id", "track_artist").alias("artist_id"))
              .join(artists, on="artist_id", how="left", maintain_order="left")
              .join(users, on="user_id", how="left", maintain_order="left"))
        writer.check_ids(self, df)
        return df

    # ---- upkeep ------------------------------------------------------------------------------------
    def migrate(self) -> bool:
        """Move a store written before Delta Lake into Delta tables, keeping every id and row
        (True), or nothing to do (False). Safe to re-run after an interruption: the old files
        go only once every table and the ingests log are written."""
        self._writable()
        if self.format != "legacy":
            return False
        m = legacy.manifest(self.fs, self.root)
        n = legacy.buckets(m) or DEFAULT_BUCKETS
        for name in TABLES:
            if name == "plays":
                continue
            table = delta.ensure_table(self.uri(name), TABLES[name])
            delta.replace_all(table, legacy.read_table(self.fs, self.root, name, TABLES[name]))
        # plays, bucket by bucket, then swapped in for what a killed earlier run may have left
        writer.ensure_plays(self, n)
        plays = self.plays_table()
        n = int(json.loads(plays.metadata().description or "{}").get("buckets") or n)
        frames = [legacy.read_plays(self.fs.unstrip_protocol(p), schema.STORE_PLAYS)
                  for p in legacy.play_paths(self.fs, self.root, m)]
        parts = by_bucket(pl.concat(frames) if frames else schema.empty(schema.STORE_PLAYS), n)
        del frames
        uri = self.uri("plays")
        files = [delta.write_bucket_file(uri, b, sort_plays(parts.pop(b, schema.empty(schema.STORE_PLAYS))))
                 for b in range(n)]
        delta.replace_files(plays, delta.actions(plays), files, {"migrated_from": m.get("schema_version")})
        entries = [dict(e, ingested_at=e.get("ingested_at")) for e in m.get("sources", [])]
        writer.write_log(self, entries or [{"source": "migrated", "ingested_at": None}])
        legacy.remove(self.fs, self.root, m, [t for t in TABLES if t != "plays"])
        return True

    def compact(self) -> dict[str, int]:
        """Rewrite each table's small files into few (rows unchanged); files removed per table."""
        self._writable()
        out = {}
        for name in (*TABLES, "ingests"):
            table = delta.open_table(self.uri(name))
            if table is not None:
                metrics = delta.retrying(f"the store's {name} table", lambda t=table: t.optimize.compact())
                out[name] = int(metrics.get("numFilesRemoved", 0))
                table.create_checkpoint()
        return out

    def vacuum(self, retain_hours: float = 168.0) -> int:
        """Delete files no table version younger than ``retain_hours`` needs (older versions
        can no longer be read); returns how many files went."""
        self._writable()
        n = 0
        for name in (*TABLES, "ingests"):
            table = delta.open_table(self.uri(name))
            if table is not None:
                n += len(table.vacuum(retention_hours=int(retain_hours), dry_run=False,
                                      enforce_retention_duration=False))
                table.cleanup_metadata()
        return n


def read_play_partition(spec: str, columns: list[str] | None = None) -> pl.DataFrame:
    """One partition of a store's plays (``schema.STORE_PLAYS``, or ``columns`` of it), each
    listener's rows in the canonical order; e.g. inside a Ray task. ``spec`` is
    one of :meth:`Store.play_partitions`."""
    if "#version=" not in spec:
        return legacy.read_plays(spec, schema.STORE_PLAYS, columns)
    uri, frag = spec.rsplit("#", 1)
    params = dict(p.split("=", 1) for p in frag.split("&"))
    table = delta.open_table(uri, int(params["version"]))
    df = sort_plays(delta.read(table, schema.STORE_PLAYS, buckets=[int(params["bucket"])]))
    return df.select(columns) if columns else df


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
