"""What one ingest brings, gathered chunk by chunk with bounded memory."""

from __future__ import annotations

from typing import Iterable

import polars as pl

from musicrec import MusicrecError, schema
from musicrec.ingest.base import Rejects, SourceTables
from musicrec.store.merge import _first_non_null

#: plays buffered in memory before they go to staged files
SPILL_ROWS = 2_000_000
REDUCE_ROWS = 1 << 20   # entity rows gathered from chunks before they are folded together
_NULL_S = pl.lit(None, pl.String)
_PLAY_COLS = [c for c in schema.SOURCE_PLAYS if c != "source_row"]


class KeyReducer:
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


class Incoming:
    """Everything an ingest reads, gathered chunk by chunk without holding all plays.

    Entity candidates are reduced to one row per key as they come (first non-null attribute
    wins, so the result is that of one concatenated input); ids are assigned only once every
    chunk is read, so a chunked ingest gives the ids of a one-shot ingest. Plays wait in memory
    up to ``SPILL_ROWS`` rows, then go to staged Parquet files (still keyed by strings).
    """

    def __init__(self, fs, staging: str):
        self.fs, self.staging = fs, staging
        self.source: str | None = None
        self.users, self.artists = KeyReducer(), KeyReducer()
        self.tracks_listed, self.tracks_played = KeyReducer(), KeyReducer()
        self.tags: list[pl.DataFrame] = []
        self.friends: list[pl.DataFrame] = []
        self.rejects = Rejects()
        self.files: list[str] = []
        self.anonymous: set[str] = set()
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
        self.anonymous.update(t.anonymous_users)
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
