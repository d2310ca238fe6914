"""Listening sessions: consecutive plays of one user without a long pause."""

from __future__ import annotations

import polars as pl

from musicrec.preprocess.clean import Frame, _lazy, _like


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
    lf, eager = _lazy(plays)
    lf = lf.with_row_index("_row")
    keyed = pl.col("session_key").is_not_null() if use_source_sessions else pl.lit(False)
    timed = pl.col("timestamp").is_not_null()
    # Three kinds of plays, sessionised separately: keyed (0), untimed (1), gap-based (2).
    lf = lf.with_columns(
        pl.when(keyed).then(0).when(~timed).then(1).otherwise(2).alias("_kind")
    )
    part = ["user_id", "_kind"]
    gap_us = pl.col("timestamp").dt.epoch("us").diff().over(part, order_by=["timestamp", "_row"])
    new_session = gap_us.is_null() | (gap_us > int(gap_s * 1e6))
    n_before = new_session.cast(pl.Int64).cum_sum().over(part, order_by=["timestamp", "_row"])
    label = (
        pl.when(pl.col("_kind") == 0).then(pl.col("session_key"))
        .when(pl.col("_kind") == 1).then(pl.lit(""))
        .otherwise(n_before.cast(pl.String))
    )
    lf = lf.with_columns(label.alias("_label"))
    key = ["user_id", "_kind", "_label"]
    sessions = (
        lf.group_by(key)
        .agg(pl.col("timestamp").min().alias("_start"), pl.col("_row").min().alias("_first"))
        .sort(["user_id", "_start", "_first"], nulls_last=False)
        .with_row_index("session_id")
        .select(*key, pl.col("session_id").cast(pl.Int64))
    )
    out = (
        lf.join(sessions, on=key, how="left", nulls_equal=True)
        .sort(["user_id", "session_id", "timestamp", "_row"])
        .drop("_row", "_kind", "_label")
    )
    return _like(out, eager)
