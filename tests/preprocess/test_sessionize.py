import polars as pl
from prep_helpers import plays

from musicrec.preprocess.sessionize import sessionize


def _sessions(df):
    """Per user, the groups of play times (seconds) that share a session, in order."""
    out = {}
    for (user, sid), g in df.group_by("user_id", "session_id", maintain_order=True):
        secs = g["timestamp"].dt.epoch("s") - 1704067200  # 2024-01-01
        out.setdefault(user, []).append(secs.to_list() if g["timestamp"].null_count() == 0 else [None] * g.height)
    return out


def test_gap_of_exactly_gap_s_stays_in_session():
    p = plays([dict(user_id=1, artist_id=1, t=t) for t in (0, 1800, 3601, 3700, 5500)])
    s = sessionize(p, gap_s=1800)
    # 0 -> 1800 is exactly the gap (same session); 1800 -> 3601 is 1801 s (new);
    # 3700 -> 5500 is exactly 1800 s again (same)
    assert _sessions(s) == {1: [[0, 1800], [3601, 3700, 5500]]}
    assert s["session_id"].dtype == pl.Int64


def test_order_of_input_does_not_matter_and_ids_unique_across_users():
    rows = [dict(user_id=u, artist_id=1, t=t) for u in (2, 1) for t in (5000, 0, 100)]
    s = sessionize(plays(rows))
    assert _sessions(s) == {1: [[0, 100], [5000]], 2: [[0, 100], [5000]]}
    assert s["session_id"].n_unique() == 4
    # deterministic numbering: by user, then session start
    assert s.select("user_id", "session_id").unique(maintain_order=True).rows() == [(1, 0), (1, 1), (2, 2), (2, 3)]


def test_source_session_keys_define_sessions():
    p = plays([
        dict(user_id=1, artist_id=1, t=0, session_key="a"),
        dict(user_id=1, artist_id=1, t=10_000, session_key="a"),   # long gap, same source session
        dict(user_id=1, artist_id=1, t=10_010, session_key="b"),   # short gap, new source session
        dict(user_id=1, artist_id=1, t=50_000),                    # no key: gap rule
        dict(user_id=1, artist_id=1, t=50_100),
    ])
    assert _sessions(sessionize(p)) == {1: [[0, 10_000], [10_010], [50_000, 50_100]]}
    assert _sessions(sessionize(p, use_source_sessions=False)) == {1: [[0], [10_000, 10_010], [50_000, 50_100]]}


def test_undated_rows_form_one_session_per_user():
    p = plays([dict(user_id=u, artist_id=a, play_count=3) for u in (1, 2) for a in (10, 11, 12)])
    s = sessionize(p)
    assert s.group_by("user_id").agg(pl.col("session_id").n_unique())["session_id"].to_list() == [1, 1]
    assert s["session_id"].n_unique() == 2
    assert isinstance(sessionize(p.lazy()), pl.LazyFrame)
