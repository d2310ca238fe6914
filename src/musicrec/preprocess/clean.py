"""Cleaning and filtering of canonical plays (``schema.STORE_PLAYS``) and split events.

Every function takes a Polars ``DataFrame`` or ``LazyFrame`` and returns the same kind.
The work is written as per-user expressions (``over("user_id")``, group-bys that include
the user) so that it could run on user partitions of a distributed engine; only
:func:`k_core`, which is global by nature, iterates on collected pairs.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from musicrec import MusicrecError, schema

Frame = pl.DataFrame | pl.LazyFrame

# An exact duplicate is the same listener playing the same track of the same artist at the
# same instant (double scrobbles from two clients, re-imported files).
DUPLICATE_KEY = ["user_id", "track_id", "artist_id", "timestamp"]


def _lazy(frame: Frame) -> tuple[pl.LazyFrame, bool]:
    """``(lazy frame, was_eager)`` so functions can hand back the kind they were given."""
    if isinstance(frame, pl.DataFrame):
        return frame.lazy(), True
    if isinstance(frame, pl.LazyFrame):
        return frame, False
    raise TypeError(f"expected a polars DataFrame or LazyFrame, got {type(frame).__name__}")


def _like(lf: pl.LazyFrame, eager: bool) -> Frame:
    return lf.collect() if eager else lf


def dedupe(plays: Frame, window_s: float = 0) -> Frame:
    """Drop duplicate listening events.

    Parameters
    ----------
    plays : DataFrame or LazyFrame in ``schema.STORE_PLAYS``
    window_s : float, seconds
        When > 0, also drop a play of the same track by the same user that follows that
        user's previous play of the track by at most ``window_s`` seconds (Last.fm-style
        double scrobbles). Chains collapse onto their first play. 0 turns this off.

    Returns
    -------
    The plays without duplicates, first occurrence kept, original order kept.

    Notes
    -----
    Rows without a timestamp are aggregated counts (HetRec), not events: they are never
    dropped here, because two counts for the same pair add up rather than repeat.
    """
    lf, eager = _lazy(plays)
    timed = pl.col("timestamp").is_not_null()
    if eager and not (window_s and window_s > 0) and grouped_in_time_order(plays):
        return _dedupe_sorted(plays)
    lf = lf.with_row_index("_row")
    # First occurrence of each exact event key among timed rows.
    keep = ~timed | (pl.col("_row") == pl.col("_row").min().over(DUPLICATE_KEY))
    if not (window_s and window_s > 0):
        return _like(lf.filter(keep).drop("_row"), eager)
    # Gap to the previous play of the same track by the same user, in time order.
    gap_us = (
        pl.col("timestamp").dt.epoch("us")
        .diff()
        .over(["user_id", "track_id"], order_by=["timestamp", "_row"])
    )
    repeat = timed & pl.col("track_id").is_not_null() & (gap_us <= int(window_s * 1e6))
    keep = keep & ~repeat.fill_null(False)
    return _like(lf.filter(keep).drop("_row"), eager)


def grouped_in_time_order(plays: pl.DataFrame) -> bool:
    """Whether rows are sorted by (user_id, timestamp), nulls first, as the store writes them
    (a linear check, far cheaper than a sort)."""
    user, t = pl.col("user_id"), pl.col("timestamp")
    prev_user, prev_t = user.shift(1), t.shift(1)
    user_up = prev_user.is_null() | (user.is_not_null() & (user > prev_user))
    time_up = prev_t.is_null() | (t.is_not_null() & (t >= prev_t))
    ok = pl.when(user.eq_missing(prev_user)).then(time_up).otherwise(user_up)
    return bool(plays.select(ok.all()).item())


def _dedupe_sorted(plays: pl.DataFrame) -> pl.DataFrame:
    """:func:`dedupe` (no window) of plays grouped by user in time order: exact duplicates share
    (user, timestamp), so only rows in a run of equal (user, timestamp) need the key check."""
    user, t = pl.col("user_id"), pl.col("timestamp")
    tie = ((user.eq_missing(user.shift(1)) & t.eq_missing(t.shift(1)))
           | (user.eq_missing(user.shift(-1)) & t.eq_missing(t.shift(-1))))
    drop = (plays.with_row_index("_row").filter(t.is_not_null() & tie)
            .filter(~pl.struct(DUPLICATE_KEY).is_first_distinct())["_row"])
    if drop.len() == 0:
        return plays
    keep = np.ones(plays.height, dtype=bool)
    keep[drop.to_numpy()] = False       # a mask: cheaper than an is_in over every row
    return plays.filter(pl.Series(keep))


def drop_short_plays(plays: Frame, min_ms: int = 30_000) -> tuple[Frame, int]:
    """Drop plays listened for less than ``min_ms`` milliseconds.

    Rows whose ``ms_played`` is null (unknown) are kept. ``min_ms <= 0`` keeps everything.

    Returns
    -------
    (plays, n_dropped) : the kept plays (same kind as given) and the number of rows dropped.
    """
    lf, eager = _lazy(plays)
    if not min_ms or min_ms <= 0:
        return plays, 0
    short = pl.col("ms_played").is_not_null() & (pl.col("ms_played") < min_ms)
    n_dropped = int(lf.select(short.sum()).collect().item() or 0)
    return _like(lf.filter(~short), eager), n_dropped


def k_core(
    events: Frame,
    min_user: int = 0,
    min_item: int = 0,
    item_col: str = "item_id",
    user_col: str = "user_id",
    min_count: float = 0,
    count_col: str | None = None,
) -> Frame:
    """Keep the k-core: users with >= ``min_user`` distinct items, items with >= ``min_item`` users.

    Removing a user can push an item under its threshold and the reverse, so both filters
    are applied in turn until nothing changes.

    Parameters
    ----------
    events : DataFrame or LazyFrame
        Any frame with ``user_col`` and ``item_col`` (split events, or plays with
        ``item_col="artist_id"`` / ``"track_id"``).
    min_user, min_item : int
        Thresholds on distinct items per user and distinct users per item (0 = no filter).
    min_count : float
        Before the core, drop (user, item) pairs whose summed ``count_col`` is below this
        (e.g. artists a listener played only once). 0 = no filter.
    count_col : str, optional
        Column summed for ``min_count``; default ``"weight"`` if present, else ``"play_count"``.

    Returns
    -------
    The rows of the surviving (user, item) pairs, same kind and order as given.
    """
    lf, eager = _lazy(events)
    columns = lf.collect_schema().names()
    missing = [c for c in (user_col, item_col) if c not in columns]
    if missing:
        raise MusicrecError(f"k_core: missing column(s) {', '.join(missing)}")
    if count_col is None:
        count_col = "weight" if "weight" in columns else "play_count"
    if min_count and min_count > 0 and count_col not in columns:
        raise MusicrecError(f"k_core: min_count needs a {count_col!r} column")

    valid = pl.col(user_col).is_not_null() & pl.col(item_col).is_not_null()
    grouped = lf.filter(valid).group_by([user_col, item_col])
    if min_count and min_count > 0:
        pairs = grouped.agg(pl.col(count_col).fill_null(1).sum().alias("_n")).filter(pl.col("_n") >= min_count)
        pairs = pairs.select(user_col, item_col).collect()
    else:
        pairs = grouped.agg().collect()

    while True:
        before = pairs.height
        if min_user > 0:
            pairs = pairs.filter(pl.len().over(user_col) >= min_user)
        if min_item > 0:
            pairs = pairs.filter(pl.len().over(item_col) >= min_item)
        if pairs.height == before:
            break
    kept = lf.join(pairs.lazy(), on=[user_col, item_col], how="semi", maintain_order="left")
    return _like(kept, eager)


def to_events(plays: Frame, item_level: str = "artist", weight: str = "count") -> Frame:
    """Canonical plays -> split events (``schema.SPLIT_EVENTS``).

    Parameters
    ----------
    plays : DataFrame or LazyFrame in ``schema.STORE_PLAYS``, optionally with ``session_id``
    item_level : {"artist", "track"}
        ``item_id`` becomes ``artist_id`` or ``track_id``; rows with a null item are dropped.
    weight : {"count", "ones"}
        ``"count"``: the play count (1 per listen, the count for aggregated rows);
        ``"ones"``: 1 per row. Model-side reweighting (log1p, bm25) lives in
        ``musicrec.features.weighting``.

    Returns
    -------
    Events: one row per timed play; rows without a timestamp (aggregated data such as
    HetRec) are summed into one row per (user, item).
    """
    if item_level not in ("artist", "track"):
        raise MusicrecError(f"unknown item level {item_level!r}; choose artist or track")
    if weight not in ("count", "ones"):
        raise MusicrecError(f"unknown event weight {weight!r}; choose count or ones")
    lf, eager = _lazy(plays)
    has_session = "session_id" in lf.collect_schema().names()
    w = pl.col("play_count").fill_null(1).cast(pl.Float64) if weight == "count" else pl.lit(1.0)
    ev = lf.filter(pl.col(f"{item_level}_id").is_not_null()).select(
        pl.col("user_id").cast(pl.Int64),
        pl.col(f"{item_level}_id").cast(pl.Int64).alias("item_id"),
        w.alias("weight"),
        pl.col("timestamp").cast(schema.UTC_US),
        (pl.col("session_id") if has_session else pl.lit(None)).cast(pl.Int64).alias("session_id"),
    )
    timed = ev.filter(pl.col("timestamp").is_not_null())
    untimed = (
        ev.filter(pl.col("timestamp").is_null())
        .group_by(["user_id", "item_id"], maintain_order=True)
        .agg(pl.col("weight").sum(), pl.col("timestamp").first(), pl.col("session_id").min())
        .select(list(schema.SPLIT_EVENTS))
    )
    return _like(pl.concat([untimed, timed]), eager)
