"""make_split runs its per-listener steps partition by partition: the result must not depend on
how the store's plays are partitioned (nor on the engine: see tests/test_engines.py)."""

import glob
import os

import polars as pl
import pytest
from prep_helpers import plays, write_store

from musicrec import MusicrecError, schema
from musicrec.preprocess.split import clean_partition, combine_partitions, make_split
from musicrec.store import Store


def partition(store_url, tmp_path, k, monkeypatch):
    """Write the store's plays as ``k`` files by user bucket (each listener's rows in their
    stored order) and make ``Store.play_partitions`` return them; bucket 0 may be empty."""
    all_plays = Store(store_url).table("plays")
    urls = []
    for b in range(k):
        path = str(tmp_path / f"part-{k}-{b}.parquet")
        # users spread over buckets out of id order, so a partition is not an id range
        all_plays.filter((pl.col("user_id") * 7919) % k == b).write_parquet(path)
        urls.append(path)
    monkeypatch.setattr(Store, "play_partitions", lambda self: list(urls))
    return urls


def assert_same_split(a, b):
    for name in ("train", "valid", "test", "items", "item_tags", "users"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.equals(y), name
    assert a.meta == b.meta


@pytest.fixture
def small_store(tmp_path):
    """Timed and untimed plays, duplicates, short plays, source sessions and gap sessions, a
    play without a track."""
    rows = []
    for u in range(1, 9):
        for k in range(12):
            rows.append(dict(user_id=u, artist_id=10 + (k * u) % 4, track_id=100 + (k + u) % 6,
                             t=600 * k * (1 + (k > 6) * 10) + u, ms_played=5_000 if (k + u) % 5 == 0 else 200_000,
                             session_key=f"s{u}-{k // 4}" if u % 3 == 0 else None, source="x"))
        rows.append(dict(rows[-3]))                                         # a duplicate
        rows.append(dict(user_id=u, artist_id=12, play_count=3 + u, source="counts"))  # untimed
    rows.append(dict(user_id=4, artist_id=13, t=99, source="x"))         # no track
    return write_store(tmp_path / "store", plays=plays(rows),
                       users=[dict(user_id=u, source_id=str(u)) for u in range(1, 9)],
                       artists=[dict(artist_id=a, name=f"a{a}") for a in range(10, 14)])


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("protocol, kwargs", [
    ("user-holdout", dict(item_level="artist", min_items=2, valid_frac=0)),   # too few artists for a valid part
    ("user-holdout", dict(sources=["x"], min_items=2, session_gap_s=900)),
    ("session-lastday", dict(sources=["x"], test_days=0.05, min_session_len=1, valid=False)),
    ("leave-last-out", dict(sources=["x"], item_level="artist", k_core_item=2)),
])
def test_any_partitioning_gives_the_same_split(small_store, tmp_path, monkeypatch, k, protocol, kwargs):
    whole = make_split(small_store, protocol, **kwargs)
    partition(small_store, tmp_path, k, monkeypatch)
    assert_same_split(make_split(small_store, protocol, **kwargs), whole)


def test_session_ids_do_not_collide_across_partitions(small_store, tmp_path, monkeypatch):
    urls = partition(small_store, tmp_path, 3, monkeypatch)
    parts = [clean_partition(u, item_level="track", sources=["x"]) for u in urls]
    # numbered per partition: the local ids overlap ...
    local = [set(p["events"]["session_id"]) for p in parts]
    assert local[0] & local[1]
    # ... and the combined ids are unique per listener and numbered in listener order
    ev = combine_partitions(parts)
    owners = ev.group_by("session_id").agg(pl.col("user_id").n_unique())
    assert owners["user_id"].max() == 1
    first = ev.group_by("user_id").agg(pl.col("session_id").min()).sort("user_id")
    assert first["session_id"].is_sorted()


def test_global_checks_still_apply(small_store, tmp_path, monkeypatch):
    partition(small_store, tmp_path, 3, monkeypatch)
    with pytest.raises(MusicrecError, match="not in the store"):
        make_split(small_store, "user-holdout", sources=["nope"])
    with pytest.raises(MusicrecError, match="no track ids"):
        make_split(small_store, "user-holdout", sources=["counts"], item_level="track")
    # the default level is global: track, though one partition may hold only untimed counts
    assert make_split(small_store, "user-holdout", min_items=2).meta["item_level"] == "track"


def test_a_store_without_plays_is_a_user_error(tmp_path):
    store = write_store(tmp_path / "empty", users=[dict(user_id=1)])
    for level in (None, "artist"):
        with pytest.raises(MusicrecError, match="no plays"):
            make_split(store, "user-holdout", item_level=level)


def test_real_data_partitions(shared_data, tmp_path, monkeypatch):
    """30Music scrobbles (half the listeners without source sessions) plus HetRec counts."""
    frames = []
    for f in sorted(glob.glob(os.path.join(shared_data, "30music-200ks-test-slices", "*.txt"))):
        raw = pl.read_csv(f, separator="\t")
        frames.append(raw.select(
            pl.col("UserId").alias("user_id"), pl.col("ArtistId").alias("artist_id"),
            pl.col("ItemId").alias("track_id"), (pl.col("Time") * 1_000_000).cast(schema.UTC_US).alias("timestamp"),
            pl.lit(1).alias("play_count"),
            pl.when(pl.col("UserId") % 2 == 0).then(pl.col("SessionId").cast(pl.String)).alias("session_key"),
            pl.lit("30music").alias("source")))
    hetrec = pl.read_csv(os.path.join(shared_data, "hetrec2011-lastfm-2k", "user_artists.dat"), separator="\t")
    frames.append(hetrec.select((pl.col("userID") + 10_000_000).alias("user_id"), pl.col("artistID").alias("artist_id"),
                                pl.col("weight").alias("play_count"), pl.lit("hetrec").alias("source")))
    both = pl.concat([schema.conform(f, schema.STORE_PLAYS) for f in frames])
    store = write_store(tmp_path / "store", plays=both)
    cases = [("session-lastday", dict(sources=["30music"])), ("user-holdout", dict(item_level="artist"))]
    wholes = [make_split(store, p, **kw) for p, kw in cases]
    partition(store, tmp_path, 4, monkeypatch)
    for (p, kw), whole in zip(cases, wholes):
        assert_same_split(make_split(store, p, **kw), whole)
