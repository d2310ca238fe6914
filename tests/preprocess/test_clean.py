import polars as pl
import pytest
from prep_helpers import at, events, plays

from musicrec import MusicrecError, schema
from musicrec.preprocess.clean import dedupe, drop_short_plays, k_core, to_events


def test_dedupe_drops_exact_duplicates_only():
    p = plays([
        dict(user_id=1, artist_id=10, track_id=100, t=0),
        dict(user_id=1, artist_id=10, track_id=100, t=0),     # exact duplicate
        dict(user_id=1, artist_id=10, track_id=100, t=1),     # a second later: kept (window off)
        dict(user_id=2, artist_id=10, track_id=100, t=0),     # other user
        dict(user_id=1, artist_id=10, play_count=4),          # undated counts are never dropped
        dict(user_id=1, artist_id=10, play_count=4),
    ])
    out = dedupe(p)
    assert out.height == 5
    assert out.filter(pl.col("timestamp").is_null()).height == 2
    assert out.columns == list(schema.STORE_PLAYS)


def test_dedupe_window_collapses_repeats_of_same_track():
    p = plays([
        dict(user_id=1, artist_id=10, track_id=100, t=0),
        dict(user_id=1, artist_id=10, track_id=100, t=20),    # 20 s after the previous: dropped
        dict(user_id=1, artist_id=10, track_id=100, t=40),    # 20 s after the dropped one: dropped too
        dict(user_id=1, artist_id=10, track_id=100, t=71),    # 31 s later: kept
        dict(user_id=1, artist_id=10, track_id=101, t=5),     # other track: kept
        dict(user_id=2, artist_id=10, track_id=100, t=10),    # other user: kept
    ])
    out = dedupe(p, window_s=30)
    secs = (out["timestamp"] - at(0)).dt.total_seconds()
    assert sorted(zip(out["user_id"], out["track_id"], secs)) == [
        (1, 100, 0), (1, 100, 71), (1, 101, 5), (2, 100, 10)]


def test_dedupe_keeps_lazy_frames_lazy():
    p = plays([dict(user_id=1, artist_id=10, track_id=100, t=0)] * 3)
    out = dedupe(p.lazy())
    assert isinstance(out, pl.LazyFrame)
    assert out.collect().height == 1


def test_drop_short_plays_keeps_unknown_durations():
    p = plays([
        dict(user_id=1, artist_id=10, t=0, ms_played=29_999),
        dict(user_id=1, artist_id=10, t=1, ms_played=30_000),
        dict(user_id=1, artist_id=10, t=2, ms_played=None),
        dict(user_id=1, artist_id=10, t=3, ms_played=5),
    ])
    out, n = drop_short_plays(p, min_ms=30_000)
    assert n == 2
    assert out["ms_played"].to_list() == [30_000, None]
    same, n0 = drop_short_plays(p, min_ms=0)
    assert n0 == 0 and same.height == 4


def test_k_core_iterates_until_stable():
    # u3 survives the first user pass with items b, c; c then falls under 2 users, which
    # leaves u3 with one item, so a second round removes u3 as well.
    ev = events([(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3)])
    out = k_core(ev, min_user=2, min_item=2)
    assert sorted(zip(out["user_id"], out["item_id"])) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_k_core_min_count_and_all_rows_of_kept_pairs():
    ev = pl.concat([events([(1, 1), (1, 1), (1, 2), (2, 1)]),
                    events([(2, 2)]).with_columns(pl.lit(5.0).alias("weight"))])
    out = k_core(ev, min_count=2)
    # (1,1) sums to 2 and (2,2) to 5; (1,2) and (2,1) have 1
    assert sorted(zip(out["user_id"], out["item_id"])) == [(1, 1), (1, 1), (2, 2)]
    with pytest.raises(MusicrecError, match="missing column"):
        k_core(ev.drop("item_id"), min_user=1)


def test_to_events_levels_and_aggregated_counts():
    p = plays([
        dict(user_id=1, artist_id=10, track_id=100, t=0),
        dict(user_id=1, artist_id=10, track_id=None, t=5),
        dict(user_id=2, artist_id=11, play_count=7),
        dict(user_id=2, artist_id=11, play_count=3),
        dict(user_id=2, artist_id=None, play_count=3),
    ])
    art = to_events(p, "artist")
    assert art.columns == list(schema.SPLIT_EVENTS)
    undated = art.filter(pl.col("timestamp").is_null())
    assert undated.select("user_id", "item_id", "weight").rows() == [(2, 11, 10.0)]
    assert art.filter(pl.col("timestamp").is_not_null()).height == 2
    trk = to_events(p, "track")
    assert trk.rows() == [(1, 100, 1.0, p["timestamp"][0], None)]
    with pytest.raises(MusicrecError):
        to_events(p, "album")
