"""ListenBrainz reader on the hand-written fixture and small variants."""

import datetime as dt
import json
import os

import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.ingest.listenbrainz import read_listenbrainz

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "listenbrainz")
RADIOHEAD = "mbid:a74b1b7f-71a5-4011-9441-d0b5e4122711"


def test_fixture_keeps_14_listens_and_rejects_2():
    t = read_listenbrainz(FIXTURE)
    assert t.plays.height == 14
    assert [(r["record"], r["reason"].split(":")[0]) for r in t.rejects.rows] == [
        (6, "broken JSON"), (7, "missing listened_at")]
    assert t.users.rows() == [("listenbrainz:alice", "alice")]   # lines without user_name: the one listener the file names
    first = t.plays.row(0, named=True)
    assert first["timestamp"] == dt.datetime.fromtimestamp(1699990000, dt.timezone.utc)
    assert first["artist_key"] == RADIOHEAD
    assert first["track_key"] == "mbid:1f4a2c3d-5b6e-4f70-8a91-b2c3d4e5f601"
    assert t.plays["ms_played"].null_count() == 14


def test_fixture_keys_names_and_durations():
    t = read_listenbrainz(FIXTURE)
    artists = dict(t.artists.select("artist_key", "name").rows())
    # MBIDs from mbid_mapping when additional_info has none; names otherwise, merged case-insensitively
    assert artists["mbid:8f6bd1e4-fbe1-4f50-aa9b-94c450ec0f11"] == "Portishead"
    assert artists["name:massive attack"] == "Massive Attack"
    assert t.plays.filter(pl.col("artist_key") == "name:massive attack").height == 2
    tracks = {r["track_key"]: r for r in t.tracks.iter_rows(named=True)}
    assert tracks["name:khruangbin|maria también"]["duration_ms"] == 194_000   # "duration" in seconds
    assert tracks["mbid:1f4a2c3d-5b6e-4f70-8a91-b2c3d4e5f601"]["duration_ms"] == 318_000
    assert tracks["name:björk|hunter"]["artist_key"] == "mbid:87c5dedd-371d-4a53-9f7f-80522fb7f3cb"
    assert t.plays.filter(pl.col("track_key") == "mbid:1f4a2c3d-5b6e-4f70-8a91-b2c3d4e5f601").height == 2


def test_user_option_overrides(tmp_path):
    t = read_listenbrainz(FIXTURE, user="bob")
    assert t.plays["user_key"].unique().to_list() == ["listenbrainz:bob"]


def test_json_array_and_api_payload(tmp_path):
    listens = [{"listened_at": 1700000000 + i, "track_metadata": {"artist_name": "Bonobo", "track_name": f"T{i}"}}
               for i in range(3)]
    (tmp_path / "listens.json").write_text(json.dumps(listens, indent=2))
    t = read_listenbrainz(tmp_path / "listens.json")
    assert t.plays["source_row"].to_list() == [1, 2, 3]
    # no user_name, no user.json, no --user: "me", flagged so a store never merges two such exports
    assert t.users["source_id"].to_list() == ["me"] and t.anonymous_users == ["listenbrainz:me"]
    (tmp_path / "api.json").write_text(json.dumps({"payload": {"count": 3, "listens": listens}}))
    assert read_listenbrainz(tmp_path / "api.json", user="x").plays.height == 3


def test_truncated_json_array_keeps_the_records_before_the_break(tmp_path):
    listens = [{"listened_at": 1700000000 + i, "track_metadata": {"artist_name": "A", "track_name": f"T{i}"}}
               for i in range(3)]
    text = json.dumps(listens)
    (tmp_path / "cut.json").write_text(text[: text.rindex("{") + 10])
    t = read_listenbrainz(tmp_path / "cut.json")
    assert t.plays.height == 2
    assert t.rejects.rows[0]["record"] == 3 and "unreadable" in t.rejects.rows[0]["reason"]


def test_unrecognisable_or_empty_input_raises(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps([{"name": "not a listen"}]))
    with pytest.raises(MusicrecError, match="does not look like a ListenBrainz"):
        read_listenbrainz(tmp_path / "other.json")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(MusicrecError, match="no rows"):
        read_listenbrainz(tmp_path / "empty.jsonl")
    (tmp_path / "garbage.jsonl").write_bytes(b"\xff\xfe\x00garbage\nnot json\n")
    with pytest.raises(MusicrecError, match="no valid rows"):
        read_listenbrainz(tmp_path / "garbage.jsonl")


def test_unzipped_user_export_layout(tmp_path):
    (tmp_path / "listens" / "2023").mkdir(parents=True)
    (tmp_path / "user.json").write_text(json.dumps({"user_id": 1, "username": "carol"}))
    (tmp_path / "feedback.jsonl").write_text(json.dumps({"score": 1, "recording_msid": "x"}) + "\n")
    listen = {"listened_at": 1700000000, "track_metadata": {"artist_name": "A", "track_name": "B"}}
    (tmp_path / "listens" / "2023" / "11.jsonl").write_text(json.dumps(listen) + "\n")
    t = read_listenbrainz(tmp_path)
    assert t.users.rows() == [("listenbrainz:carol", "carol")] and len(t.rejects) == 0
