"""The fast paths of dedupe and sessionize give exactly what the plain definitions give.

``dedupe`` and ``sessionize`` take shortcuts on eager frames (a linear pass when plays are
already grouped by user in time order, as the store writes them) and a sort-and-run path
otherwise. The references below are the straightforward per-user window versions they
replaced; every row, its order and every session id must match, for eager and lazy input,
sorted and shuffled rows, nulls, ties, duplicates and source session keys.
"""

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prep_helpers import plays

from musicrec.preprocess.clean import DUPLICATE_KEY, dedupe, grouped_in_time_order
from musicrec.preprocess.sessionize import sessionize


def reference_dedupe(p: pl.DataFrame) -> pl.DataFrame:
    timed = pl.col("timestamp").is_not_null()
    first = pl.col("_row") == pl.col("_row").min().over(DUPLICATE_KEY)
    return p.with_row_index("_row").filter(~timed | first).drop("_row")


def reference_sessionize(p: pl.DataFrame, gap_s: float, use_source_sessions: bool) -> pl.DataFrame:
    lf = p.lazy().with_row_index("_row")
    keyed = pl.col("session_key").is_not_null() if use_source_sessions else pl.lit(False)
    timed = pl.col("timestamp").is_not_null()
    lf = lf.with_columns(pl.when(keyed).then(0).when(~timed).then(1).otherwise(2).alias("_kind"))
    part = ["user_id", "_kind"]
    gap_us = pl.col("timestamp").dt.epoch("us").diff().over(part, order_by=["timestamp", "_row"])
    new_session = gap_us.is_null() | (gap_us > int(gap_s * 1e6))
    n_before = new_session.cast(pl.Int64).cum_sum().over(part, order_by=["timestamp", "_row"])
    label = (pl.when(pl.col("_kind") == 0).then(pl.col("session_key"))
             .when(pl.col("_kind") == 1).then(pl.lit("")).otherwise(n_before.cast(pl.String)))
    lf = lf.with_columns(label.alias("_label"))
    key = ["user_id", "_kind", "_label"]
    sessions = (lf.group_by(key)
                .agg(pl.col("timestamp").min().alias("_start"), pl.col("_row").min().alias("_first"))
                .sort(["user_id", "_start", "_first"], nulls_last=False)
                .with_row_index("session_id").select(*key, pl.col("session_id").cast(pl.Int64)))
    return (lf.join(sessions, on=key, how="left", nulls_equal=True)
            .sort(["user_id", "session_id", "timestamp", "_row"]).drop("_row", "_kind", "_label").collect())


# Small value ranges so that ties, duplicates, gaps exactly at the threshold and nulls are common.
row = st.fixed_dictionaries({
    "user_id": st.one_of(st.none(), st.integers(0, 3)),
    "artist_id": st.integers(0, 2),
    "track_id": st.one_of(st.none(), st.integers(0, 3)),
    "t": st.one_of(st.none(), st.sampled_from([0, 60, 100, 1800, 1860, 3600, 3601, 7200, 9000])),
    "session_key": st.one_of(st.none(), st.sampled_from(["a", "b"])),
    "ms_played": st.integers(0, 60_000),
})


def _frame(rows, keyed: bool, presorted: bool) -> pl.DataFrame:
    if not keyed:
        rows = [dict(r, session_key=None) for r in rows]
    p = plays(rows)
    if presorted:   # as the store writes plays
        p = p.sort(["user_id", "timestamp"], nulls_last=False, maintain_order=True)
    return p


@pytest.mark.slow      # 300 examples against the reference
@settings(max_examples=300, deadline=None)
@given(rows=st.lists(row, max_size=40), keyed=st.booleans(), presorted=st.booleans())
def test_dedupe_matches_reference(rows, keyed, presorted):
    p = _frame(rows, keyed, presorted)
    expected = reference_dedupe(p)
    assert dedupe(p).equals(expected)
    assert dedupe(p.lazy()).collect().equals(expected)


@pytest.mark.slow      # 300 examples against the reference
@settings(max_examples=300, deadline=None)
@given(rows=st.lists(row, max_size=40), keyed=st.booleans(), presorted=st.booleans(),
       gap_s=st.sampled_from([0, 60, 1800, 3600]), use_source_sessions=st.booleans())
def test_sessionize_matches_reference(rows, keyed, presorted, gap_s, use_source_sessions):
    p = _frame(rows, keyed, presorted)
    expected = reference_sessionize(p, gap_s, use_source_sessions)
    assert sessionize(p, gap_s=gap_s, use_source_sessions=use_source_sessions).equals(expected)
    assert sessionize(p.lazy(), gap_s=gap_s, use_source_sessions=use_source_sessions).collect().equals(expected)


def test_grouped_in_time_order_checks_users_then_times_nulls_first():
    def frame(pairs):
        return plays([dict(user_id=u, artist_id=1, t=t) for u, t in pairs])

    assert grouped_in_time_order(frame([(None, 5), (1, None), (1, 0), (1, 0), (2, None), (2, 3)]))
    assert not grouped_in_time_order(frame([(1, 5), (1, 0)]))          # time goes back
    assert not grouped_in_time_order(frame([(1, 0), (1, None)]))       # undated after dated
    assert not grouped_in_time_order(frame([(2, 0), (1, 5)]))          # user goes back
    assert not grouped_in_time_order(frame([(1, 0), (None, 0)]))       # null user last
    assert grouped_in_time_order(frame([]))
