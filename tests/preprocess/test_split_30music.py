"""session-lastday on the real 30Music sample (5 slices of ~5 days, months apart)."""

import glob
import os

import polars as pl
import pytest
from prep_helpers import write_store

from musicrec import schema
from musicrec.preprocess.clean import to_events
from musicrec.preprocess.sessionize import sessionize
from musicrec.preprocess.split import make_split, session_lastday

DAY_US = 86_400 * 10**6


@pytest.fixture(scope="module")
def plays_30music(shared_data):
    files = sorted(glob.glob(os.path.join(shared_data, "30music-200ks-test-slices", "*.txt")))
    assert len(files) == 5
    frames = []
    for f in files:
        stem = os.path.basename(f).rsplit(".", 1)[0]
        raw = pl.read_csv(f, separator="\t")
        frames.append(raw.select(
            pl.col("UserId").alias("user_id"), pl.col("ArtistId").alias("artist_id"),
            pl.col("ItemId").alias("track_id"),
            (pl.col("Time") * 1_000_000).cast(schema.UTC_US).alias("timestamp"),
            pl.lit(1).alias("play_count"),
            (pl.lit(stem + ":") + pl.col("SessionId").cast(pl.String)).alias("session_key"),
            pl.lit("30music").alias("source"),
        ))
    return schema.conform(pl.concat(frames), schema.STORE_PLAYS)


def test_session_lastday_finds_the_five_slices(plays_30music):
    sessions = sessionize(plays_30music)
    assert sessions["session_id"].n_unique() == 9_519          # the source's sessions, kept whole
    ev = to_events(sessions, "track")
    sp = session_lastday(ev, test_days=1.0)
    slices = sp.meta["slices"]
    assert len(slices) == 5
    assert [s["start"][:10] for s in slices] == ["2014-04-20", "2014-06-19", "2014-08-17", "2014-10-17", "2014-12-16"]

    # every test session (its original last event) ends within the last day of its slice;
    # no train session does
    ends = ev.group_by("session_id").agg(pl.col("timestamp").max().dt.epoch("us").alias("end"))
    bounds = [(pl.Series([s["test_from"]]).str.to_datetime(time_zone="UTC").dt.epoch("us")[0],
               pl.Series([s["end"]]).str.to_datetime(time_zone="UTC").dt.epoch("us")[0]) for s in slices]
    assert all(hi - lo == DAY_US for lo, hi in bounds)

    def in_last_day(part):
        e = ends.join(part.select("session_id").unique(), on="session_id", how="semi")["end"].to_list()
        return [any(lo <= x <= hi for lo, hi in bounds) for x in e]

    assert all(in_last_day(sp.test)) and len(in_last_day(sp.test)) == sp.test["session_id"].n_unique()
    assert not any(in_last_day(sp.train)) and not any(in_last_day(sp.valid))
    assert all(s["test_sessions"] > 100 for s in slices)
    assert set(sp.test["item_id"]) <= set(sp.train["item_id"])
    assert sp.test.group_by("session_id").len()["len"].min() >= 2
    assert not set(sp.test["session_id"]) & set(sp.train["session_id"])


def test_make_split_on_a_30music_store(plays_30music, tmp_path):
    store = write_store(tmp_path / "store", plays=plays_30music)
    sp = make_split(store, "session-lastday", test_days=1.0)
    assert sp.meta["item_level"] == "track"
    assert len(sp.meta["slices"]) == 5
    # the raw files repeat some (user, track, second) events; dedupe removes them
    assert sp.meta["preprocess"]["dropped_duplicates"] > 0
