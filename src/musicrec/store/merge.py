"""How an ingest's rows merge into the stored ones: pure functions over Polars frames.

Entities keep their ids and fill null attributes; new keys get ``max + 1, ...`` in key order.
A play is identified by ``PLAY_KEY`` plus its occurrence number among identical plays, so
re-reading a file adds nothing while true repeats inside one file stay; aggregated plays (null
timestamp) are replaced by a later ingest. Every play key holds ``user_id``, so merging bucket by
bucket gives the rows of merging it all.
"""

from __future__ import annotations

import polars as pl

PLAY_KEY = ["user_id", "artist_id", "track_id", "timestamp", "session_key", "source"]
TAG_KEY = ["user_id", "artist_id", "tag", "timestamp"]
PLAY_ORDER = ["user_id", "timestamp"]
#: the canonical order of plays: by listener and time, ties by the other columns, so it does not
#: depend on how files were written (Delta writers and compaction may reorder rows in a file)
PLAY_SORT = PLAY_ORDER + ["artist_id", "track_id", "session_key", "source", "play_count", "ms_played", "skipped"]


def sort_plays(frame):
    """``frame`` (a DataFrame or LazyFrame of store plays) in the canonical order, nulls first."""
    return frame.sort(PLAY_SORT, nulls_last=False, maintain_order=True)


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
    merged = sort_plays(pl.concat([keep_ex, keep_in]).drop("_occ"))
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
