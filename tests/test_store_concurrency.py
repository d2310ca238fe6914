"""Several writers at once, and writers killed mid-way: the Delta store loses nothing, duplicates
nothing, and never holds a play whose listener, artist or track is missing."""

import datetime as dt
import multiprocessing as mp
import os
import random
import signal
import time

import polars as pl
import pytest

from musicrec.serve.events import StoreWriter
from musicrec.store import Store, ingest_path

POSTERS, POSTS, BATCH = 40, 1000, 10


def slice30(shared_data, i):
    return os.path.join(shared_data, "30music-200ks-test-slices", f"30music-200ks_test.{i}.txt")


def _ingest(source, path, store):
    ingest_path(source, path, store)


def posted_frame(artist_ids, start: int, n: int) -> pl.DataFrame:
    """Plays ``start .. start + n - 1``: play i is by listener ``poster-<i mod POSTERS>`` of artist
    ``artist_ids[i mod len]`` at 2024-01-01 + i seconds."""
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    idx = range(start, start + n)
    return pl.DataFrame({"user_id": pl.Series([None] * n, dtype=pl.Int64),
                         "user": [f"poster-{i % POSTERS}" for i in idx],
                         "artist_id": [artist_ids[i % len(artist_ids)] for i in idx],
                         "timestamp": pl.Series([t0 + dt.timedelta(seconds=i) for i in idx],
                                                dtype=pl.Datetime("us", "UTC"))})


def _post(store, artist_ids, start, stop):
    writer = StoreWriter(store)
    for s in range(start, stop, BATCH):
        writer.append(posted_frame(artist_ids, s, BATCH))


def keyed_plays(store: str) -> pl.DataFrame:
    """Every play with its listener, artist and track keys instead of ids (ids depend on which
    writer came first); raises if any id has no entity row."""
    s = Store(store)
    plays = s.table("plays")
    users = s.table("users").select("user_id", user_key="key")
    artists = s.table("artists").select("artist_id", artist_key="key")
    tracks = s.table("tracks").select("track_id", track_key="key")
    for t, col in ((users, "user_id"), (artists, "artist_id"), (tracks, "track_id")):
        assert t[col].n_unique() == t.height, f"{col} given twice"
        assert t.columns[1] and t[t.columns[1]].n_unique() == t.height, f"{t.columns[1]} stored twice"
        orphans = plays.filter(pl.col(col).is_not_null()).join(t, on=col, how="anti")
        assert orphans.height == 0, f"{orphans.height} plays with a {col} nobody has"
    out = (plays.join(users, on="user_id", how="left").join(artists, on="artist_id", how="left")
           .join(tracks, on="track_id", how="left"))
    return out.select("user_key", "artist_key", "track_key", "timestamp", "play_count", "ms_played", "source")


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.sort(pl.all(), nulls_last=False).equals(b.sort(pl.all(), nulls_last=False))


@pytest.fixture(scope="module")
def base(shared_data, tmp_path_factory):
    """A store holding one 30Music slice, and the artist ids posters use."""
    path = str(tmp_path_factory.mktemp("conc") / "base")
    ingest_path("30music", slice30(shared_data, 1), path, partitions=4)
    artist_ids = Store(path).table("artists")["artist_id"].head(200).to_list()
    return path, artist_ids


def copy_store(src: str, dst: str) -> str:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_two_ingests_and_a_posting_client_at_once(shared_data, base, tmp_path):
    path, artist_ids = base
    hetrec = os.path.join(shared_data, "hetrec2011-lastfm-2k")
    # what the three writers give one after the other
    sequential = copy_store(path, str(tmp_path / "sequential"))
    _ingest("hetrec-lastfm-2k", hetrec, sequential)
    _ingest("30music", slice30(shared_data, 2), sequential)
    _post(sequential, artist_ids, 0, POSTS)
    # ... and at the same time, in three processes
    together = copy_store(path, str(tmp_path / "together"))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_post, args=(together, artist_ids, 0, POSTS)),
             ctx.Process(target=_ingest, args=("hetrec-lastfm-2k", hetrec, together)),
             ctx.Process(target=_ingest, args=("30music", slice30(shared_data, 2), together))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0, 0]

    got, want = keyed_plays(together), keyed_plays(sequential)
    assert got.height == want.height
    assert same_rows(got, want)
    posted = got.filter(pl.col("source") == "api")
    assert posted.height == POSTS                             # every accepted play exactly once
    expect = posted_frame(artist_ids, 0, POSTS)
    by_time = posted.sort("timestamp")
    assert by_time["user_key"].to_list() == [f"api:{u}" for u in expect["user"]]    # under the right listener
    assert Store(together).manifest()["tables"]["plays"] == got.height
    assert {e["source"] for e in Store(together).manifest()["sources"]} == {"30music", "hetrec-lastfm-2k"}


def _kill_after(target, args, delay: float) -> int:
    p = mp.get_context("spawn").Process(target=target, args=args)
    p.start()
    time.sleep(delay)
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
    p.join()
    return p.exitcode


def test_kill_9_during_ingest_and_posting_leaves_old_or_new_state(shared_data, base, tmp_path):
    path, artist_ids = base
    hetrec = os.path.join(shared_data, "hetrec2011-lastfm-2k")
    before = keyed_plays(path)
    done = copy_store(path, str(tmp_path / "done"))
    _ingest("hetrec-lastfm-2k", hetrec, done)
    after = keyed_plays(done)
    rng = random.Random(7)
    for i in range(4):
        store = copy_store(path, str(tmp_path / f"killed-{i}"))
        _kill_after(_ingest, ("hetrec-lastfm-2k", hetrec, store), rng.uniform(2.0, 9.0))
        now = keyed_plays(store)                          # readable, no orphans
        assert same_rows(now, before) or same_rows(now, after), f"kill {i}: a half-ingested store"
        _ingest("hetrec-lastfm-2k", hetrec, store)        # a rerun completes it
        assert same_rows(keyed_plays(store), after)
    # a posting client killed mid-way: whole batches only, each play once
    store = copy_store(path, str(tmp_path / "posting"))
    _kill_after(_post, (store, artist_ids, 0, POSTS), 4.0)
    posted = keyed_plays(store).filter(pl.col("source") == "api")
    assert posted.height % BATCH == 0 and posted["timestamp"].n_unique() == posted.height
    _post(store, artist_ids, 0, POSTS)                    # resending everything adds each play once
    assert keyed_plays(store).filter(pl.col("source") == "api").height == POSTS
