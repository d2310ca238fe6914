"""The canonical Parquet store: stable ids, idempotent merges, names, rejects, manifest."""

import datetime as dt
import json
import os
import uuid

import duckdb
import fsspec
import polars as pl
import pytest

from musicrec import MusicrecError, schema
from musicrec.ingest.base import REJECTS_SCHEMA, Rejects, SourceTables
from musicrec.store import Store, ingest_path

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
UTC = dt.timezone.utc


@pytest.fixture
def mem():
    url = f"memory://store-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def t(h: int) -> dt.datetime:
    return dt.datetime(2024, 1, 1, h, tzinfo=UTC)


def plays(*rows, source="toy", **tables) -> SourceTables:
    """rows: (user, artist, track, hour or None, count)."""
    df = pl.DataFrame([{"user_key": u, "artist_key": a, "track_key": tr, "timestamp": None if h is None else t(h),
                        "play_count": c} for u, a, tr, h, c in rows],
                      schema={"user_key": pl.String, "artist_key": pl.String, "track_key": pl.String,
                              "timestamp": schema.UTC_US, "play_count": pl.Int64})
    return SourceTables(source, df, **tables)


def test_empty_store_has_typed_empty_tables(mem):
    s = Store(mem)
    assert not s.exists()
    for name, sch in (("plays", schema.STORE_PLAYS), ("artists", schema.STORE_ARTISTS)):
        assert s.table(name).schema == pl.Schema(sch) and s.table(name).height == 0
        assert s.scan(name).collect().schema == pl.Schema(sch)
    with pytest.raises(MusicrecError, match="unknown store table"):
        s.table("listens")


def test_ids_are_stable_and_new_keys_get_max_plus_one_in_key_order(mem):
    s = Store(mem)
    s.ingest(plays(("u:b", "a:2", None, 1, 1), ("u:a", "a:1", None, 2, 1)))
    assert s.table("users").select("user_id", "key").rows() == [(0, "u:a"), (1, "u:b")]
    s.ingest(plays(("u:c", "a:1", None, 3, 1), ("u:0", "a:3", None, 4, 1), ("u:b", "a:2", None, 5, 1)))
    assert s.table("users").select("user_id", "key").rows() == [(0, "u:a"), (1, "u:b"), (2, "u:0"), (3, "u:c")]
    assert s.table("artists").select("artist_id", "key").rows() == [(0, "a:1"), (1, "a:2"), (2, "a:3")]
    p = s.table("plays").join(s.table("users"), on="user_id").filter(pl.col("key") == "u:b")
    assert p["artist_id"].to_list() == [1, 1]


def test_reingest_and_overlap_add_nothing_but_true_repeats_stay(mem):
    s = Store(mem)
    # two identical scrobbles in one file are two listens
    first = plays(("u", "a", "t1", 1, 1), ("u", "a", "t1", 1, 1), ("u", "a", "t2", 2, 1))
    r = s.ingest(first)
    assert (r.plays_added, r.plays_duplicate) == (3, 0)
    r = s.ingest(first)
    assert (r.plays_added, r.plays_duplicate, r.counts["plays"]) == (0, 3, 3)
    overlap = plays(("u", "a", "t1", 1, 1), ("u", "a", "t2", 2, 1), ("u", "a", "t3", 3, 1))
    r = s.ingest(overlap)
    assert (r.plays_added, r.plays_duplicate, r.counts["plays"]) == (1, 2, 4)
    # the same listen from another source is another row (source is part of the identity)
    r = s.ingest(plays(("u", "a", "t3", 3, 1), source="other"))
    assert (r.plays_added, r.counts["plays"]) == (1, 5)


def test_aggregated_counts_are_replaced_by_a_later_ingest(mem):
    s = Store(mem)
    s.ingest(plays(("u1", "a1", None, None, 10), ("u1", "a2", None, None, 5)))
    r = s.ingest(plays(("u1", "a1", None, None, 12), ("u2", "a1", None, None, 1)))
    assert (r.plays_added, r.plays_duplicate) == (1, 1)
    got = s.table("plays").join(s.table("users").select("user_id", u="key"), on="user_id") \
        .join(s.table("artists").select("artist_id", a="key"), on="artist_id").sort("u", "a")
    assert got.select("u", "a", "play_count").rows() == [("u1", "a1", 12), ("u1", "a2", 5), ("u2", "a1", 1)]


def test_first_non_null_name_wins_and_rows_are_never_dropped(mem):
    s = Store(mem)
    s.ingest(plays(("u", "a", None, 1, 1)))
    assert s.table("artists")["name"].to_list() == [None]
    s.ingest(plays(("u", "a", None, 2, 1), artists=pl.DataFrame({"artist_key": ["a"], "name": ["First"]})))
    s.ingest(plays(("u", "b", None, 3, 1), artists=pl.DataFrame({"artist_key": ["a", "b"], "name": ["Second", "B"]})))
    assert s.table("artists").select("key", "name").rows() == [("a", "First"), ("b", "B")]
    assert s.table("plays").height == 3


def test_tracks_tags_friends_and_rejects(mem):
    rejects = Rejects()
    rejects.add("toy", "f.txt", 7, "bad timestamp 'x'", "u\tx")
    tables = plays(("u1", "a1", "t1", 1, 1), rejects=rejects,
                   tracks=pl.DataFrame({"track_key": ["t1"], "artist_key": ["a1"], "name": ["Song"],
                                        "duration_ms": [1000]}),
                   tags=pl.DataFrame({"artist_key": ["a1", "a9"], "tag": ["rock", "jazz"], "user_key": ["u1", None],
                                      "weight": [1.0, 2.0]}),
                   friends=pl.DataFrame({"user_key": ["u1"], "friend_key": ["u2"]}))
    s = Store(mem)
    r = s.ingest(tables)
    assert r.rejected == 1 and r.rejects_path.startswith("memory://") and "/rejects/toy-" in r.rejects_path
    with fsspec.open(r.rejects_path, "rb") as f:
        rej = pl.read_csv(f)
    assert rej.columns == list(REJECTS_SCHEMA) and rej["record"].to_list() == [7]
    assert s.table("tracks").select("key", "artist_id", "name", "duration_ms").rows() == [("t1", 0, "Song", 1000)]
    assert s.table("artists")["key"].to_list() == ["a1", "a9"]         # tag-only artists get ids too
    assert s.table("friends").rows() == [(0, 1)]
    s.ingest(tables)
    assert s.table("tags").height == 2 and s.table("friends").height == 1   # no duplicates on re-ingest
    m = s.manifest()
    assert m["schema_version"] == 2 and [e["source"] for e in m["sources"]] == ["toy", "toy"]
    assert m["tables"]["plays"] == 1
    assert not [p for p in fsspec.filesystem("memory").find(mem) if ".tmp-" in p]


def test_hetrec_twice_keeps_plays_and_ids(shared_data, tmp_path):
    store = str(tmp_path / "store")
    hetrec = os.path.join(shared_data, "hetrec2011-lastfm-2k")
    r1 = ingest_path("hetrec-lastfm-2k", hetrec, store)
    assert (r1.plays_added, r1.rejected, r1.counts["users"], r1.counts["tags"]) == (92_834, 0, 1_892, 186_479)
    assert r1.counts["artists"] == 17_632 + 390                   # 390 artists appear only in tags
    s = Store(store)
    before = {name: s.table(name) for name in ("plays", "users", "artists", "tags", "friends")}
    r2 = ingest_path("hetrec-lastfm-2k", hetrec, store)
    assert (r2.plays_added, r2.plays_duplicate) == (0, 92_834)
    for name, df in before.items():
        assert s.table(name).equals(df), name
    # plain Parquet: any engine can query it
    assert duckdb.sql(f"select count(*) from '{store}/plays/*.parquet'").fetchall()[0][0] == 92_834
    assert duckdb.sql(f"select sum(play_count) from '{store}/plays/*.parquet'").fetchall()[0][0] == \
        s.table("plays")["play_count"].sum()
    m = json.load(open(os.path.join(store, "manifest.json")))
    files = {os.path.basename(f["path"]): f["sha256"] for f in m["sources"][0]["files"]}
    assert files["user_artists.dat"] == "254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416"
    assert sorted(os.listdir(store)) == ["artists.parquet", "friends.parquet", "manifest.json", "plays",
                                         "tags.parquet", "tracks.parquet", "users.parquet"]
    assert sorted(os.listdir(os.path.join(store, "plays"))) == [f"part-{b:04d}.parquet" for b in range(16)]


def test_sources_sharing_keys_share_ids(tmp_path):
    store = "file://" + str(tmp_path / "s")
    ingest_path("listenbrainz", os.path.join(FIXTURES, "listenbrainz"), store)
    s = Store(store)
    artists_before = s.table("artists")
    r = ingest_path("spotify-history", os.path.join(FIXTURES, "spotify"), store)
    after = s.table("artists")
    assert after.head(artists_before.height).equals(artists_before)   # existing ids and names untouched
    # "Massive Attack" / "Four Tet" are name keys in both sources: the same artist id
    ma = after.filter(pl.col("key") == "name:massive attack")
    assert ma.height == 1
    users = s.table("users")["key"].to_list()
    assert users == ["listenbrainz:alice", "spotify:user:alice.k"]
    plays_ma = s.table("plays").filter(pl.col("artist_id") == ma["artist_id"].item())
    assert set(plays_ma["source"].to_list()) == {"listenbrainz", "spotify-history"}
    assert r.skipped == {"podcast episodes": 1}
    assert s.scan("plays").select(pl.len()).collect().item() == 14 + 12
