"""Column schemas shared by readers, the store and splits.

Readers emit *source tables* keyed by string keys (``SOURCE_*`` schemas). A key is a
namespaced original id: ``"hetrec:51"``, ``"30music:228054"``, ``"mbid:<uuid>"``,
``"spotify:track:<id>"`` or ``"name:<normalised name>"`` when a source only has names, so
the same artist from two sources that share an id scheme (MusicBrainz, names) merges.
The store maps keys to stable int64 ids (``STORE_*`` schemas).
"""

from __future__ import annotations

import polars as pl

UTC_US = pl.Datetime("us", "UTC")

# ---- reader output (keys are strings; every column listed is always present) ----
SOURCE_PLAYS = {
    "user_key": pl.String,      # e.g. "lastfm1k:user_000001"
    "artist_key": pl.String,    # may be null only when the source has no artist at all
    "track_key": pl.String,     # null for artist-level data (HetRec)
    "timestamp": UTC_US,        # null for aggregated counts (HetRec)
    "play_count": pl.Int64,     # 1 for a single listen; the count for aggregated rows
    "ms_played": pl.Int64,      # milliseconds listened, null when unknown
    "skipped": pl.Boolean,      # null when unknown
    "session_key": pl.String,   # source-given session id, null when none
    "source_row": pl.Int64,     # 1-based line / record number in the source file
}
SOURCE_ARTISTS = {"artist_key": pl.String, "source_id": pl.String, "name": pl.String}
SOURCE_TRACKS = {
    "track_key": pl.String,
    "artist_key": pl.String,
    "source_id": pl.String,
    "name": pl.String,
    "duration_ms": pl.Int64,
}
SOURCE_USERS = {"user_key": pl.String, "source_id": pl.String}
SOURCE_TAGS = {
    "artist_key": pl.String,
    "tag": pl.String,           # normalised: lower-case, stripped
    "user_key": pl.String,      # who tagged, null when unknown
    "timestamp": UTC_US,        # when, null when unknown
    "weight": pl.Float64,       # 1.0 per assignment unless the source gives counts
}
SOURCE_FRIENDS = {"user_key": pl.String, "friend_key": pl.String}

# ---- canonical store (Parquet; ids are stable across re-ingests) ----
STORE_PLAYS = {
    "user_id": pl.Int64,
    "artist_id": pl.Int64,
    "track_id": pl.Int64,       # null for artist-level data
    "timestamp": UTC_US,
    "play_count": pl.Int64,
    "ms_played": pl.Int64,
    "skipped": pl.Boolean,
    "session_key": pl.String,
    "source": pl.String,        # reader name, e.g. "hetrec-lastfm-2k"
}
STORE_ARTISTS = {"artist_id": pl.Int64, "key": pl.String, "source_id": pl.String, "name": pl.String}
STORE_TRACKS = {
    "track_id": pl.Int64,
    "key": pl.String,
    "source_id": pl.String,
    "artist_id": pl.Int64,
    "name": pl.String,
    "duration_ms": pl.Int64,
}
STORE_USERS = {"user_id": pl.Int64, "key": pl.String, "source_id": pl.String}
STORE_TAGS = {
    "artist_id": pl.Int64,
    "tag": pl.String,
    "user_id": pl.Int64,
    "timestamp": UTC_US,
    "weight": pl.Float64,
}
STORE_FRIENDS = {"user_id": pl.Int64, "friend_id": pl.Int64}
# another source's key for a stored artist/track (``musicrec.store.resolve``): the entity tables keep
# one row per id, this table every other key with that source's own id and name, and the match rule
STORE_ALIASES = {"entity": pl.String, "key": pl.String, "id": pl.Int64, "source_id": pl.String,
                 "name": pl.String, "rule": pl.String}

# ---- split files (train / valid / test) ----
# item_id is a store artist_id or track_id depending on the split's item level.
SPLIT_EVENTS = {
    "user_id": pl.Int64,
    "item_id": pl.Int64,
    "weight": pl.Float64,       # play count (or given weight)
    "timestamp": UTC_US,        # may be null
    "session_id": pl.Int64,     # may be null; session protocols need it
}
# items.parquet inside a split: names for display and tags for diversity metrics.
SPLIT_ITEMS = {"item_id": pl.Int64, "source_id": pl.String, "name": pl.String, "artist_name": pl.String}
SPLIT_USERS = {"user_id": pl.Int64, "source_id": pl.String}
SPLIT_ITEM_TAGS = {"item_id": pl.Int64, "tag": pl.String, "weight": pl.Float64}


def empty(schema: dict) -> pl.DataFrame:
    """An empty frame with ``schema``."""
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict) -> pl.DataFrame:
    """Select ``schema``'s columns in order, cast to its types, adding missing ones as null."""
    cols = [
        (pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t)).alias(c)
        for c, t in schema.items()
    ]
    return df.select(cols)
