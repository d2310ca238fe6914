"""What every reader returns: source tables keyed by strings, plus the rows it rejected."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from musicrec import schema

REJECTS_SCHEMA = {"source": pl.String, "file": pl.String, "record": pl.Int64, "reason": pl.String, "raw": pl.String}


@dataclass
class Rejects:
    """Collects malformed input rows with where they came from and why they were refused."""

    rows: list[dict] = field(default_factory=list)

    def add(self, source: str, file: str, record: int, reason: str, raw: str = "") -> None:
        """Record one rejected row; ``record`` is the 1-based line or JSON record number."""
        self.rows.append({"source": source, "file": file, "record": record, "reason": reason, "raw": raw[:500]})

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=REJECTS_SCHEMA) if self.rows else schema.empty(REJECTS_SCHEMA)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SourceTables:
    """Canonical tables from one source, still keyed by string keys (see ``musicrec.schema``).

    Every frame conforms to its ``schema.SOURCE_*`` schema; ``source`` is the reader name.
    """

    source: str
    plays: pl.DataFrame
    artists: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_ARTISTS))
    tracks: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_TRACKS))
    users: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_USERS))
    tags: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_TAGS))
    friends: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_FRIENDS))
    rejects: Rejects = field(default_factory=Rejects)

    def __post_init__(self) -> None:
        self.plays = schema.conform(self.plays, schema.SOURCE_PLAYS)
        self.artists = schema.conform(self.artists, schema.SOURCE_ARTISTS)
        self.tracks = schema.conform(self.tracks, schema.SOURCE_TRACKS)
        self.users = schema.conform(self.users, schema.SOURCE_USERS)
        self.tags = schema.conform(self.tags, schema.SOURCE_TAGS)
        self.friends = schema.conform(self.friends, schema.SOURCE_FRIENDS)


def name_key(name: str | None) -> str | None:
    """Key for an entity known only by name: case- and whitespace-insensitive."""
    if name is None:
        return None
    norm = " ".join(name.casefold().split())
    return f"name:{norm}" if norm else None
