"""Listening sessions: consecutive plays of one user without a long pause."""

from __future__ import annotations

import polars as pl

from musicrec.preprocess.clean import Frame, _lazy, _like, grouped_in_time_order


def sessionize(plays: Frame, gap_s: float = 1800, use_source_sessions: bool = True) -> Frame:
    """Add an int64 ``session_id``, unique across users.

    Parameters
    ----------
    plays : DataFrame or LazyFrame in ``schema.STORE_PLAYS``
    gap_s : float, seconds
        A play starts a new session when more than ``gap_s`` seconds passed since the
        user's previous play (a gap of exactly ``gap_s`` stays in the session).
    use_source_sessions : bool
        When a play has a source-given ``session_key``, that key defines its session (all
        plays of the user with the key, whatever the gaps); the gap rule applies only to
        plays without a key.

    Returns
    -------
    The plays with ``session_id``, sorted by user, session start, time. Session ids are
    0, 1, 2, ... in that order, so they are deterministic. A user's plays without a
    timestamp (aggregated counts) form one session.
    """
    gap_us = int(gap_s * 1e6)
    if isinstance(plays, pl.DataFrame) and gap_s >= 0 and not (
            use_source_sessions and plays["session_key"].null_count() < plays.height):
        return _sessionize_by_gaps(plays, gap_us)
    lf, eager = _lazy(plays)
    lf = lf.with_row_index("_row")
    keyed = pl.col("session_key").is_not_null() if use_source_sessions else pl.lit(False)
    timed = pl.col("timestamp").is_not_null()
    # Three kinds of plays, sessionised separately: keyed (0), untimed (1), gap-based (2).
    # One sort puts each session's plays together in time order; a session is then a run of
    # rows, numbered by a running count of session starts (no string labels, no window sorts).
    lf = lf.with_columns(
        pl.when(keyed).then(0).when(~timed).then(1).otherwise(2).cast(pl.Int8).alias("_kind"),
        pl.when(keyed).then(pl.col("session_key")).otherwise(None).alias("_key"),
    ).sort(["user_id", "_kind", "_key", "timestamp", "_row"], nulls_last=False)
    ts = pl.col("timestamp").dt.epoch("us")
    same = (pl.col("user_id").eq_missing(pl.col("user_id").shift(1))
            & (pl.col("_kind") == pl.col("_kind").shift(1))
            & pl.col("_key").eq_missing(pl.col("_key").shift(1))
            & ((pl.col("_kind") != 2) | ((ts - ts.shift(1)) <= gap_us)))
    lf = lf.with_columns((~same.fill_null(False)).cast(pl.Int64).cum_sum().alias("_run"))
    sessions = (
        lf.group_by("_run")
        .agg(pl.col("user_id").first(), pl.col("timestamp").min().alias("_start"), pl.col("_row").min().alias("_first"))
        .sort(["user_id", "_start", "_first"], nulls_last=False)
        .with_row_index("session_id")
        .select("_run", pl.col("session_id").cast(pl.Int64))
    )
    # rows of a run are already in (timestamp, _row) order: a stable sort on the id finishes
    out = (
        lf.join(sessions, on="_run", how="left", maintain_order="left")
        .sort("session_id", maintain_order=True)
        .drop("_row", "_kind", "_key", "_run")
    )
    return _like(out, eager)


def _sessionize_by_gaps(plays: pl.DataFrame, gap_us: int) -> pl.DataFrame:
    """:func:`sessionize` of plays without source sessions, in one pass when they are already
    grouped by user in time order (as the store writes them), else after one stable sort.

    A listener's undated plays come first in that order (nulls first) and form one session;
    dated sessions follow with strictly increasing starts (``gap_us >= 0``), so numbering
    session starts down the rows gives the ids :func:`sessionize` defines, and the rows are
    already in its output order.
    """
    if not grouped_in_time_order(plays):
        plays = plays.sort(["user_id", "timestamp"], nulls_last=False, maintain_order=True)
    user, t = pl.col("user_id"), pl.col("timestamp")
    gap = t.dt.epoch("us") - t.dt.epoch("us").shift(1)
    start = (~user.eq_missing(user.shift(1)) | (pl.int_range(pl.len()) == 0)
             | (t.is_not_null() & (t.shift(1).is_null() | (gap > gap_us))))
    return plays.with_columns((start.cast(pl.Int64).cum_sum() - 1).alias("session_id"))

