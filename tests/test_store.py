"""The canonical Parquet store: stable ids, idempotent merges, names, rejects, manifest."""

import datetime as dt
import os
import time

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
def mem(tmp_path):
    return str(tmp_path / "store")


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
    assert r.rejected == 1 and r.rejects_path.startswith(mem) and "/rejects/toy-" in r.rejects_path
    with fsspec.open(r.rejects_path, "rb") as f:
        rej = pl.read_csv(f)
    assert rej.columns == list(REJECTS_SCHEMA) and rej["record"].to_list() == [7]
    assert s.table("tracks").select("key", "artist_id", "name", "duration_ms").rows() == [("t1", 0, "Song", 1000)]
    assert s.table("artists")["key"].to_list() == ["a1", "a9"]         # tag-only artists get ids too
    assert s.table("friends").rows() == [(0, 1)]
    s.ingest(tables)
    assert s.table("tags").height == 2 and s.table("friends").height == 1   # no duplicates on re-ingest
    m = s.manifest()
    assert m["schema_version"] == 3 and [e["source"] for e in m["sources"]] == ["toy", "toy"]
    assert m["tables"]["plays"] == 1
    assert not [p for p in fsspec.filesystem("file").find(mem) if ".tmp-" in p or "_staging" in p]


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
    # plain Delta tables: any engine reads them (here Polars and DuckDB over its Arrow scan)
    plays = pl.scan_delta(os.path.join(store, "plays"))
    assert plays.select(pl.len()).collect().item() == 92_834
    arrow = plays.select("play_count").collect().to_arrow()
    assert duckdb.sql("select sum(play_count) from arrow").fetchall()[0][0] == s.table("plays")["play_count"].sum()
    m = s.manifest()
    files = {os.path.basename(f["path"]): f["sha256"] for f in m["sources"][0]["files"]}
    assert files["user_artists.dat"] == "254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416"
    assert sorted(os.listdir(store)) == ["artists", "friends", "ingests", "plays", "tags", "tracks", "users"]
    assert sorted(os.listdir(os.path.join(store, "plays"))) == sorted(["_delta_log"] + [f"bucket={b}" for b in range(16)])
    assert m["plays_layout"]["buckets"] == 16 and m["tables"]["plays"] == 92_834


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


def test_snapshot_pins_every_table_and_reads_an_old_version_back(mem):
    s = Store(mem)
    s.ingest(plays(("u:a", "a:1", None, 1, 1), ("u:b", "a:2", None, 2, 1)))
    snap = s.snapshot()
    before = {n: s.table(n) for n in ("plays", "users", "artists")}
    s.ingest(plays(("u:c", "a:3", None, 3, 1)))
    assert s.table("plays").height == 3 and snap.table("plays").height == 2
    again = Store(mem, versions=snap.versions)            # what a split's meta.json records
    for name, df in before.items():
        assert snap.table(name).equals(df) and again.table(name).equals(df), name
    with pytest.raises(MusicrecError, match="read-only"):
        again.ingest(plays(("u:d", "a:1", None, 4, 1)))
    assert s.vacuum(retain_hours=0) > 0                  # old files go, and with them the old versions
    with pytest.raises(MusicrecError, match="plays"):
        Store(mem, versions=snap.versions).table("plays")
    assert s.table("plays").height == 3


def test_posted_plays_append_and_compact_without_changing_rows(mem, monkeypatch, capsys):
    from musicrec.cli.main import main
    from musicrec.store import writer

    s = Store(mem)
    s.ingest(plays(("u:a", "a:1", None, 1, 1)), partitions=2)
    monkeypatch.setattr(writer, "COMPACT_FILES", 6)
    for h in range(2, 20):
        r = s.append_plays(pl.DataFrame({"user_id": [0], "artist_id": [0], "timestamp": [t(h)]}))
        assert (r.plays_added, r.plays_duplicate) == (1, 0)
    again = s.append_plays(pl.DataFrame({"user_id": [0, 0], "artist_id": [0, 0], "timestamp": [t(5), t(23)]}))
    assert (again.plays_added, again.plays_duplicate) == (1, 1)
    new_user = s.append_plays(pl.DataFrame({"user": ["zoe"], "artist_id": [0], "timestamp": [t(1)]}))
    assert new_user.added == {"plays": 1, "users": 1} and s.table("users")["key"].to_list()[-1] == "api:zoe"
    rows = s.table("plays")
    assert rows.height == 21 and rows.filter(pl.col("source") == "api").height == 20
    from musicrec.store import delta

    assert delta.actions(s.latest("plays")).height < 6 + 2          # compacted as they came
    with pytest.raises(SystemExit) as exc:
        main(["store", "compact", mem])
    assert exc.value.code in (0, None)
    with pytest.raises(SystemExit) as exc:
        main(["store", "info", mem])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None) and "plays" in out and "21 rows" in out
    assert Store(mem).table("plays").equals(rows)
    with pytest.raises(SystemExit) as exc:
        main(["store", "info", os.path.join(mem, "nothing")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "no musicrec store here" in err and "Traceback" not in err


def test_staging_left_by_a_killed_ingest_is_removed(mem):
    s = Store(mem)
    s.ingest(plays(("u:a", "a:1", None, 1, 1)))
    old = os.path.join(mem, "_staging", "20200101T000000-deadbeef0000")   # a killed ingest's, years ago
    fresh = os.path.join(mem, "_staging", dt.datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-running00000")
    for d in (old, fresh):
        os.makedirs(os.path.join(d, "b-0000"))
    s.ingest(plays(("u:b", "a:1", None, 2, 1)))
    assert not os.path.exists(old) and os.path.exists(fresh)      # another ingest may be running: kept


def test_a_group_commit_gives_what_the_posts_one_by_one_give(tmp_path):
    """Posts committed together (the server's group commit) store and report exactly what
    appending them one after another does: a play an earlier post holds is a duplicate, a
    repeat inside one post is a second play, a new listener is counted once, on its first post."""
    def posts():
        return [pl.DataFrame({"user_id": [0, 0], "artist_id": [0, 0], "timestamp": [t(2), t(2)]}),   # a true repeat
                pl.DataFrame({"user_id": [0], "artist_id": [0], "timestamp": [t(2)]}),               # resent
                pl.DataFrame({"user": ["zoe", "zoe"], "artist_id": [0, 0], "timestamp": [t(3), t(4)]}),
                pl.DataFrame({"user": ["zoe"], "artist_id": [0], "timestamp": [t(5)]}),
                pl.DataFrame({"user_id": [0, 0, 0], "artist_id": [0, 0, 0], "timestamp": [t(2), t(2), t(2)]})]

    one, grouped = Store(str(tmp_path / "one")), Store(str(tmp_path / "grouped"))
    for s in (one, grouped):
        s.ingest(plays(("u:a", "a:1", None, 1, 1)), partitions=2)
    alone = [one.append_plays(p) for p in posts()]
    together = grouped.append_play_batches(posts())
    summary = [(r.plays_added, r.plays_duplicate, r.added) for r in alone]
    assert summary == [(2, 0, {"plays": 2, "users": 0}), (0, 1, {"plays": 0, "users": 0}),
                       (2, 0, {"plays": 2, "users": 1}), (1, 0, {"plays": 1, "users": 0}),
                       (1, 2, {"plays": 1, "users": 0})]
    assert [(r.plays_added, r.plays_duplicate, r.added) for r in together] == summary
    assert grouped.table("plays").equals(one.table("plays"))
    assert grouped.table("users").equals(one.table("users"))


def test_posts_waiting_on_a_commit_join_the_next_one(tmp_path):
    """The server's writer: 20 posts that arrive while a commit is running are committed together
    in one Delta append, and each gets its own report (a resent post: a duplicate)."""
    import threading

    from musicrec.serve.events import StoreWriter

    url = str(tmp_path / "store")
    Store(url).ingest(plays(("u:a", "a:1", None, 1, 1)), partitions=2)
    writer = StoreWriter(url)
    version = Store(url).latest("plays").version()
    frames = [pl.DataFrame({"user": [f"p{n % 10}"], "artist_id": [0], "timestamp": [t(n % 10)]}) for n in range(20)]
    reports = [None] * 20

    def post(n):
        reports[n] = StoreWriter(url).append(frames[n])

    group = writer._group
    with group.commit_lock:         # a commit in progress: the posts queue up behind it
        threads = [threading.Thread(target=post, args=(n,)) for n in range(20)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 30
        while len(group.queue) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(group.queue) == 20
    for th in threads:
        th.join(30)
    assert sorted(r.plays_added for r in reports) == [0] * 10 + [1] * 10
    assert all(r.plays_added + r.plays_duplicate == 1 for r in reports)
    assert sum(r.added["users"] for r in reports) == 10
    s = Store(url)
    assert s.table("plays").height == 11 and s.table("users").height == 11
    assert s.latest("plays").version() - version <= 2          # one append (and at most one compaction)
