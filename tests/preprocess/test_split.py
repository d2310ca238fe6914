import json
import os

import polars as pl
import pytest
from prep_helpers import events, plays, write_store

from musicrec import MusicrecError
from musicrec.preprocess.split import (
    PROTOCOLS, leave_last_out, make_split, session_lastday, temporal, user_holdout,
)
from musicrec.preprocess.splitset import Split

D = 86_400


def pairs(df):
    return set(zip(df["user_id"].to_list(), df["item_id"].to_list()))


def secs(df):
    return sorted(df["timestamp"].dt.epoch("s") - 1704067200)


# --------------------------------------------------------------------- user-holdout
@pytest.fixture
def holdout_events():
    rows = []
    for u in range(1, 5):                  # 4 users x 10 shared items, item 0 played 3 times
        rows += [(u, i, 100 * i) for i in range(10)] + [(u, 0, 5000), (u, 0, 6000)]
    rows += [(5, i, i) for i in range(3)]  # 3 items < min_items: stays in train
    rows += [(6, i, i) for i in range(7)]  # 7 items: 1 test, 1 valid, 5 train
    return events(rows)


def test_user_holdout_fractions_and_disjoint_parts(holdout_events):
    sp = user_holdout(holdout_events, test_frac=0.2, valid_frac=0.1, seed=3)
    assert sp.evaluation == "user" and sp.meta["protocol"] == "user-holdout"
    removed = sp.meta["removed_unseen"]
    assert sp.train.height + sp.valid.height + sp.test.height + removed["test"] + removed["valid"] \
        == holdout_events.height

    def n_items(part, u):
        return len({i for uu, i in pairs(part) if uu == u})

    # 10 items: round(2.0) test, round(1.0) valid, 7 train; 7 items: round(1.4) = 1 test,
    # round(0.7) = 1 valid, 5 train; 3 items (< min_items): all train
    for u in range(1, 5):
        assert n_items(sp.train, u) == 7
        assert n_items(sp.test, u) <= 2 and n_items(sp.valid, u) <= 1   # less only if removed as unseen
    assert n_items(sp.train, 6) == 5
    assert n_items(sp.train, 5) == 3 and n_items(sp.test, 5) == 0 and n_items(sp.valid, 5) == 0
    assert not pairs(sp.train) & pairs(sp.test)
    assert not pairs(sp.train) & pairs(sp.valid)
    assert not pairs(sp.valid) & pairs(sp.test)


def test_user_holdout_moves_all_plays_of_a_pair_together(holdout_events):
    sp = user_holdout(holdout_events, seed=0)
    for part in (sp.train, sp.valid, sp.test):
        for u, i in pairs(part):
            expected = holdout_events.filter((pl.col("user_id") == u) & (pl.col("item_id") == i)).height
            assert part.filter((pl.col("user_id") == u) & (pl.col("item_id") == i)).height == expected


def test_user_holdout_is_deterministic_under_seed(holdout_events):
    a = user_holdout(holdout_events, seed=7)
    b = user_holdout(holdout_events.reverse(), seed=7)      # row order does not matter
    c = user_holdout(holdout_events, seed=8)
    assert pairs(a.test) == pairs(b.test) and pairs(a.valid) == pairs(b.valid)
    assert pairs(a.test) != pairs(c.test)


def test_user_holdout_keeps_items_unseen_in_train_by_default():
    # user 2 (5 items < min_items) keeps items 0-4 in train; item 99 is user 1's alone, so it
    # is the only test item that can be unseen. Standard protocol (RecBole's splits): it stays in
    # test and is counted; --drop-unseen (drop_unseen=True) removes it as before.
    ev = events([(1, i) for i in range(5)] + [(1, 99)] + [(2, i) for i in range(5)])
    for seed in range(10):
        kept = user_holdout(ev, test_frac=0.5, valid_frac=0.0, seed=seed, min_items=6)
        dropped = user_holdout(ev, test_frac=0.5, valid_frac=0.0, seed=seed, min_items=6, drop_unseen=True)
        assert kept.valid is None and dropped.valid is None
        in_train = 99 in set(kept.train["item_id"])
        assert kept.meta["unseen_in_train"]["test"] == dropped.meta["unseen_in_train"]["test"] == (0 if in_train else 1)
        assert kept.meta["removed_unseen"]["test"] == 0
        assert (99 in set(kept.test["item_id"])) == (not in_train)
        assert set(dropped.test["item_id"]) <= set(dropped.train["item_id"])
        assert dropped.meta["removed_unseen"]["test"] == (0 if in_train else 1)
        assert kept.test.height == dropped.test.height + dropped.meta["removed_unseen"]["test"]
        assert kept.meta["params"]["drop_unseen"] is False and dropped.meta["params"]["drop_unseen"] is True


def test_user_holdout_validates_fractions(holdout_events):
    with pytest.raises(MusicrecError, match="test_frac"):
        user_holdout(holdout_events, test_frac=0)
    with pytest.raises(MusicrecError, match="< 1"):
        user_holdout(holdout_events, test_frac=0.6, valid_frac=0.5)


# --------------------------------------------------------------------- leave-last-out
@pytest.fixture
def timed_events():
    return events([
        (1, 1, 0), (1, 2, 10), (1, 1, 20), (1, 3, 30), (1, 2, 40),   # A B A C B
        (2, 3, 0), (2, 4, 10), (2, 1, 20),                           # C D A
        (3, 1, 0), (3, 2, 5), (3, 5, None),                          # too few items; undated row
    ])


def test_leave_last_out_picks_the_latest(timed_events):
    sp = leave_last_out(timed_events, n=1, valid=True, drop_unseen=True)
    assert sp.test.select("user_id", "item_id").rows() == [(1, 2), (2, 1)]
    assert secs(sp.test) == [20, 40]
    # user 1's valid item is C@30; user 2's is D@10, never in train -> removed (drop_unseen)
    assert sp.valid.select("user_id", "item_id").rows() == [(1, 3)]
    assert sp.meta["removed_unseen"] == {"test": 0, "valid": 1}
    # by default it stays (standard protocol) and is counted
    kept = leave_last_out(timed_events, n=1, valid=True)
    assert sorted(kept.valid.select("user_id", "item_id").rows()) == [(1, 3), (2, 4)]
    assert kept.meta["removed_unseen"] == {"test": 0, "valid": 0}
    assert kept.meta["unseen_in_train"] == {"test": 0, "valid": 1}
    tr = sp.train.sort("user_id", "timestamp")
    assert tr.filter(pl.col("user_id") == 1)["item_id"].to_list() == [1, 2, 1]   # B@10 stays (repeat)
    assert tr.filter(pl.col("user_id") == 3).height == 3


def test_leave_last_out_n2_without_valid(timed_events):
    sp = leave_last_out(timed_events, n=2, valid=False)
    assert sp.valid is None
    u1 = sp.test.filter(pl.col("user_id") == 1).sort("timestamp")
    assert u1["item_id"].to_list() == [3, 2] and secs(u1) == [30, 40]
    # user 2: items A@20, D@10 are the last two; D is unseen elsewhere: kept and counted by
    # default, removed with drop_unseen
    assert sorted(sp.test.filter(pl.col("user_id") == 2)["item_id"].to_list()) == [1, 4]
    assert sp.meta["unseen_in_train"]["test"] == 1
    dropped = leave_last_out(timed_events, n=2, valid=False, drop_unseen=True)
    assert dropped.test.filter(pl.col("user_id") == 2)["item_id"].to_list() == [1]


def test_time_protocols_need_timestamps():
    ev = events([(1, i) for i in range(6)])
    for fn in (leave_last_out, temporal):
        with pytest.raises(MusicrecError, match="timestamps"):
            fn(ev)


# --------------------------------------------------------------------- temporal
def test_temporal_cuts_by_global_time():
    ev = events([(t % 3, t % 2, t) for t in range(10)] + [(0, 0, None)])
    sp = temporal(ev, test_frac=0.2, valid_frac=0.1)
    assert secs(sp.test) == [8, 9]
    assert secs(sp.valid) == [7]
    assert sp.train.height == 8 and sp.train["timestamp"].null_count() == 1
    assert sp.meta["params"]["test_from"].startswith("2024-01-01T00:00:08")


# --------------------------------------------------------------------- session-lastday
@pytest.fixture
def two_slices():
    s = [
        (1, 1, [1, 2, 3], [0, 60, 120]),                    # slice A: train
        (2, 2, [2, 3], [1.5 * D, 1.5 * D + 60]),            #          valid
        (3, 1, [1, 2], [2.5 * D, 2.5 * D + 60]),            #          test
        (4, 2, [3], [3 * D]),                               #          test, too short
        (5, 3, [1, 2, 9], [2 * D - 30, 2 * D, 2 * D + 30]), #          test: ends in the last day; 9 unseen
        (6, 3, [3, 8], [2 * D + 40, 2 * D + 100]),          #          test; 8 unseen -> too short
        (7, 1, [4, 5], [9.5 * D, 9.5 * D + 60]),            # slice B: train
        (8, 2, [4, 5], [10.8 * D, 10.8 * D + 60]),          #          valid
        (9, 1, [5, 4, 6], [12 * D, 12 * D + 60, 12 * D + 120]),  #     test; 6 unseen
    ]
    return events([(u, i, t, sid) for sid, u, items, times in s for i, t in zip(items, times)])


def test_session_lastday_on_two_slices(two_slices):
    sp = session_lastday(two_slices, test_days=1.0, slice_gap_days=2.0)
    assert sp.evaluation == "session"
    assert sorted(set(sp.train["session_id"])) == [1, 7]
    assert sorted(set(sp.valid["session_id"])) == [2, 8]
    assert sorted(set(sp.test["session_id"])) == [3, 5, 9]
    test_items = {s: g.sort("timestamp")["item_id"].to_list()
                  for (s,), g in sp.test.group_by("session_id")}
    assert test_items == {3: [1, 2], 5: [1, 2], 9: [5, 4]}
    assert sp.meta["removed_unseen"] == {"test": 3, "valid": 0}
    slices = sp.meta["slices"]
    assert len(slices) == 2
    assert [s["test_sessions"] for s in slices] == [2, 1]
    assert slices[1]["test_from"].startswith("2024-01-12T00:02:00")


def test_session_lastday_without_valid(two_slices):
    sp = session_lastday(two_slices, valid=False)
    assert sp.valid is None
    assert sorted(set(sp.train["session_id"])) == [1, 2, 7, 8]
    assert sorted(set(sp.test["session_id"])) == [3, 5, 9]


def test_session_lastday_one_slice_without_gaps(two_slices):
    sp = session_lastday(two_slices, slice_gap_days=30)
    assert len(sp.meta["slices"]) == 1
    assert sorted(set(sp.test["session_id"])) == [9]


def test_session_lastday_needs_sessions():
    with pytest.raises(MusicrecError, match="session_id"):
        session_lastday(events([(1, 1, 0), (1, 2, 10)]))


# --------------------------------------------------------------------- make_split
@pytest.fixture
def store(tmp_path):
    p = []
    for u in (1, 2, 3):
        p += [dict(user_id=u, artist_id=10 + (k % 2), track_id=100 + k % 3, t=1000 * k + u, source="x",
                   ms_played=200_000) for k in range(10)]
    p += [dict(p[0])]                                                   # a duplicate
    p += [dict(user_id=1, artist_id=10, track_id=100, t=50, ms_played=1_000, source="x")]  # short
    p += [dict(user_id=9, artist_id=10, play_count=4, source="counts")]  # another, undated source
    return write_store(
        tmp_path / "store", plays=plays(p),
        users=[dict(user_id=u, key=f"x:{u}", source_id=str(u)) for u in (1, 2, 3)] + [dict(user_id=9, source_id="u9")],
        artists=[dict(artist_id=10, source_id="a10", name="Abba"), dict(artist_id=11, source_id="a11", name="Blur")],
        tracks=[dict(track_id=100, artist_id=10, name="SOS"), dict(track_id=101, artist_id=11, name="Song 2"),
                dict(track_id=102, artist_id=10, name="Waterloo", source_id="t102")],
        tags=[dict(artist_id=10, tag="pop", weight=1.0), dict(artist_id=10, tag="pop", weight=2.0),
              dict(artist_id=11, tag="britpop", weight=1.0)],
    )


def test_make_split_end_to_end(store, tmp_path):
    out = tmp_path / "split"
    sp = make_split(store, "temporal", out=str(out), sources=["x"], test_frac=0.2, valid_frac=0.1)
    assert sp.meta["item_level"] == "track"
    pre = sp.meta["preprocess"]
    assert (pre["dropped_duplicates"], pre["dropped_short"], pre["plays"]) == (1, 1, 32)
    assert sp.train.height + sp.valid.height + sp.test.height == 30
    items = {r["item_id"]: r for r in sp.items.to_dicts()}
    assert items[100]["name"] == "SOS" and items[100]["artist_name"] == "Abba"
    assert items[102]["source_id"] == "t102"
    tags = sorted(sp.item_tags.rows())
    assert tags == [(100, "pop", 3.0), (101, "britpop", 1.0), (102, "pop", 3.0)]
    assert sorted(sp.users["user_id"]) == [1, 2, 3] and set(sp.users["source_id"]) == {"1", "2", "3"}
    loaded = Split.load(str(out))
    assert loaded.test.equals(sp.test)
    with open(os.path.join(out, "meta.json")) as fh:
        assert json.load(fh)["protocol"] == "temporal"


def test_make_split_artist_level_and_errors(store):
    sp = make_split(store, "user-holdout", item_level="artist", min_items=2, seed=1, valid_frac=0)
    assert set(sp.train["item_id"]) <= {10, 11}
    assert sorted(sp.item_tags.rows()) == [(10, "pop", 3.0), (11, "britpop", 1.0)]
    assert sp.meta["seed"] == 1
    with pytest.raises(MusicrecError, match="user-holdout, leave-last-out, temporal, session-lastday"):
        make_split(store, "random")
    with pytest.raises(MusicrecError, match="does not take test_days"):
        make_split(store, "user-holdout", test_days=2)
    with pytest.raises(MusicrecError, match="not in the store"):
        make_split(store, "temporal", sources=["nope"])
    with pytest.raises(MusicrecError, match="timestamps"):
        make_split(store, "temporal", sources=["counts"])
    with pytest.raises(MusicrecError, match="no track ids"):
        make_split(store, "temporal", sources=["counts"], item_level="track")


def test_make_split_session_gap_and_k_core(store):
    # plays of a user are 1000 s apart: a 500 s gap makes each play a session; the last
    # 2500 s (plays k = 7, 8, 9) are test sessions of one play, which are dropped
    # (so the test part is empty: an error, not a split scored on nothing)
    with pytest.raises(MusicrecError, match="the test part is empty: session-lastday held out no rows .*--test-days"):
        make_split(store, "session-lastday", sources=["x"], session_gap_s=500, test_days=2500 / 86_400, valid=False)
    # user 9 has one artist: the only user under a 2-item core
    cored = make_split(store, "user-holdout", item_level="artist", k_core_user=2, min_items=2, valid_frac=0)
    assert cored.meta["preprocess"]["dropped_k_core"] == 1
    assert 9 not in set(cored.train["user_id"])
    # at track level user 9's row has no item
    assert make_split(store, "user-holdout", min_items=2, valid_frac=0).meta["preprocess"]["dropped_no_item"] == 1


def test_empty_parts_say_why_and_what_to_change(store):
    # two artists per listener at most: nothing to hold out at the default min_items=5
    with pytest.raises(MusicrecError, match=r"the test part is empty: no listener has the 5 distinct artists "
                                            r"user-holdout needs to hold some out \(the most any has is 2\); try --item track"):
        make_split(store, "user-holdout", item_level="artist")
    # the default level (track): the other level is no way out, so it is not suggested
    with pytest.raises(MusicrecError, match=r"the most any has is 3\); user-holdout needs listeners with more tracks"):
        make_split(store, "user-holdout", sources=["x"])
    # a validation part the protocol was asked for, rounded to nothing
    with pytest.raises(MusicrecError, match="the validation part is empty: .*make none with --valid-frac 0"):
        make_split(store, "user-holdout", item_level="artist", min_items=2)
    assert make_split(store, "user-holdout", item_level="artist", min_items=2, valid_frac=0).valid is None


def test_protocol_registry_lists_all():
    assert list(PROTOCOLS) == ["user-holdout", "leave-last-out", "temporal", "session-lastday", "item-coldstart",
                               "user-coldstart"]


def test_fingerprint_is_of_the_rows_not_their_order(holdout_events):
    from musicrec.preprocess.splitset import fingerprint

    fp = fingerprint(holdout_events)
    assert len(fp) == 32 and fp == fingerprint(holdout_events.reverse())
    assert fp == fingerprint(pl.concat([holdout_events.tail(7), holdout_events.head(holdout_events.height - 7)]))
    assert fp != fingerprint(holdout_events.head(holdout_events.height - 1))
    assert fp != fingerprint(holdout_events.with_columns(pl.col("weight") * 2))
    assert fp != fingerprint(holdout_events.with_columns(pl.col("timestamp").dt.offset_by("1s")))
    assert fp != fingerprint(pl.concat([holdout_events, holdout_events.head(1)]))   # a duplicate row counts
    # the same rows under other session ids are the same training data
    assert fp == fingerprint(holdout_events.with_columns(pl.lit(7, pl.Int64).alias("session_id")))
    # fixed values: the fingerprint is stable across polars and numpy versions (model folders record it)
    assert fingerprint(events([(1, 2, 3), (1, 5, None)])) == "ac65e431bfe10a4e7ebff8246d052b5e"
    assert fingerprint(holdout_events.head(0)) == "0" * 32
