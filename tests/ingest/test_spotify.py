"""Spotify Extended Streaming History reader on the hand-written fixture."""

import datetime as dt
import json
import os

import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.ingest.spotify import read_spotify

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "spotify")


def test_fixture_music_only_and_counts():
    t = read_spotify(FIXTURE)
    # 14 streams: 1 podcast episode (skipped, counted), 1 bad ts (rejected), 12 music plays
    assert t.plays.height == 12
    assert t.skipped == {"podcast episodes": 1}
    assert [(os.path.basename(r["file"]), r["record"]) for r in t.rejects.rows] == [
        ("Streaming_History_Audio_2023_1.json", 3)]
    assert "bad ts" in t.rejects.rows[0]["reason"]
    assert t.users.rows() == [("spotify:user:alice.k", "alice.k")]


def test_short_plays_are_kept_with_ms_played_and_skip_flag():
    t = read_spotify(FIXTURE)
    short = t.plays.filter(pl.col("ms_played") < 30_000).sort("ms_played")
    assert short.select("ms_played", "skipped").rows() == [(8420, True), (21870, None)]


def test_timestamp_is_the_end_of_playback_and_keys():
    t = read_spotify(FIXTURE)
    first = t.plays.row(0, named=True)
    assert first["timestamp"] == dt.datetime(2022, 12, 30, 21, 14, 3, tzinfo=dt.timezone.utc)   # ts as given
    assert first["track_key"] == "spotify:track:67Hna13dNDkZvBpTXRIaOJ"
    assert first["artist_key"] == "name:massive attack"
    track = t.tracks.filter(pl.col("track_key") == first["track_key"]).row(0, named=True)
    assert (track["name"], track["source_id"]) == ("Teardrop", "67Hna13dNDkZvBpTXRIaOJ")
    assert t.plays.filter(pl.col("track_key") == first["track_key"]).height == 2   # both files


def test_user_option(tmp_path):
    assert read_spotify(FIXTURE, user="me2").plays["user_key"].unique().to_list() == ["spotify:user:me2"]


def test_not_a_streaming_history_raises(tmp_path):
    old = tmp_path / "Streaming_History_Audio_0.json"
    old.write_text(json.dumps([{"endTime": "2019-01-01 10:00", "artistName": "A", "trackName": "B", "msPlayed": 1}]))
    with pytest.raises(MusicrecError, match="account-data StreamingHistory"):
        read_spotify(old)
    old.write_text(json.dumps([{"ts": "2023-01-01T00:00:00Z", "ms_played": 5, "spotify_track_uri": None,
                                "spotify_episode_uri": "spotify:episode:1"}]))
    with pytest.raises(MusicrecError, match="no music streams"):
        read_spotify(old)
    with pytest.raises(MusicrecError, match="no Streaming_History_Audio"):
        (tmp_path / "empty").mkdir()
        read_spotify(tmp_path / "empty")
