"""Hostile inputs found by a probe (issue 12): each used to raise a traceback, or to lose rows
silently. Every one must now be a reject with a reason (the other rows kept) or a one-line
``MusicrecError``."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.ingest.readers import read

UTC = dt.timezone.utc


def listen(ts: int, artist: str = "A", track: str = "T", **info) -> dict:
    meta = {"artist_name": artist, "track_name": track}
    if info:
        meta["additional_info"] = info
    return {"listened_at": ts, "user_name": "alice", "track_metadata": meta}


def write_jsonl(path, recs) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n")


def reasons(t) -> dict[int, str]:
    return {r["record"]: r["reason"] for r in t.rejects.rows}


# ---- 1. ListenBrainz: durations that overflow --------------------------------------------------

@pytest.mark.parametrize("info", [{"duration": 1e308}, {"duration_ms": 1e308}, {"duration_ms": 10**30},
                                  {"duration": 10**400}, {"duration_ms": -5}, {"duration_ms": "abc"},
                                  {"duration_ms": [1]}])
def test_listenbrainz_bad_duration_is_a_reject(tmp_path, info):
    f = tmp_path / "listens.jsonl"
    write_jsonl(f, [listen(1_600_000_000), listen(1_600_000_100, **info), listen(1_600_000_200, duration_ms=1000)])
    t = read("listenbrainz", f)
    assert t.plays["source_row"].to_list() == [1, 3]
    assert list(reasons(t)) == [2] and "duration" in reasons(t)[2]


def test_listenbrainz_duration_text_and_zero_are_read(tmp_path):
    f = tmp_path / "listens.jsonl"
    write_jsonl(f, [listen(1_600_000_000, track="a", duration_ms="215000"), listen(1_600_000_100, track="b",
                                                                                 duration_ms=0)])
    t = read("listenbrainz", f)
    assert len(t.rejects) == 0
    assert dict(t.tracks.select("name", "duration_ms").rows()) == {"a": 215_000, "b": None}


def test_listenbrainz_non_finite_and_huge_timestamps_are_rejects(tmp_path):
    f = tmp_path / "listens.jsonl"
    ok = json.dumps(listen(1_600_000_000))
    write_jsonl(f, [ok, ok.replace("1600000000", "NaN"), ok.replace("1600000000", "Infinity"),
                    ok.replace("1600000000", "1e308"), ok.replace("1600000000", "9" * 5000)])
    t = read("listenbrainz", f)
    assert t.plays["source_row"].to_list() == [1]
    assert sorted(reasons(t)) == [2, 3, 4, 5]


def test_listenbrainz_wrong_text_types_are_rejects(tmp_path):
    f = tmp_path / "listens.jsonl"
    bad = listen(1_600_000_100, artist_mbids=["0b6e4a50-9a0c-4b5c-8d7e-1f2a3b4c5d6e"])
    bad["track_metadata"]["artist_name"] = ["A", "B"]
    write_jsonl(f, [listen(1_600_000_000), bad])
    t = read("listenbrainz", f)
    assert t.plays["source_row"].to_list() == [1]
    assert "artist_name" in reasons(t)[2]


# ---- 2. Spotify: ms_played out of range ----------------------------------------------------------

def stream(ts: str, ms) -> dict:
    return {"ts": ts, "username": "me", "ms_played": ms, "master_metadata_track_name": "T",
            "master_metadata_album_artist_name": "A", "spotify_track_uri": "spotify:track:abc"}


@pytest.mark.parametrize("ms", [1e30, 10**30, 2**63, float("nan"), -1, True])
def test_spotify_ms_played_out_of_range_is_a_reject(tmp_path, ms):
    f = tmp_path / "Streaming_History_Audio_2023.json"
    f.write_text(json.dumps([stream("2023-03-01T18:22:05Z", 1000), stream("2023-03-01T18:25:05Z", ms),
                             stream("2023-03-01T18:29:05Z", 2000)]))
    t = read("spotify-history", f)
    assert t.plays["source_row"].to_list() == [1, 3]
    assert list(reasons(t)) == [2] and "ms_played" in reasons(t)[2]


def test_spotify_timestamps_outside_1970_2100_are_rejects(tmp_path):
    f = tmp_path / "Streaming_History_Audio_2023.json"
    f.write_text(json.dumps([stream("2023-03-01T18:22:05Z", 1), stream("0001-01-01T00:00:00Z", 1),
                             stream("9999-12-31T23:59:59Z", 1), stream("-2009-05-04T23:08:57Z", 1)]))
    t = read("spotify-history", f)
    assert t.plays["source_row"].to_list() == [1]
    assert sorted(reasons(t)) == [2, 3, 4]


def test_spotify_wrong_field_types_are_rejects(tmp_path):
    f = tmp_path / "Streaming_History_Audio_2023.json"
    bad = stream("2023-03-01T18:25:05Z", 5)
    bad["master_metadata_track_name"] = {"name": "T"}
    f.write_text(json.dumps([stream("2023-03-01T18:22:05Z", 1), bad]))
    t = read("spotify-history", f)
    assert t.plays["source_row"].to_list() == [1]
    assert "master_metadata_track_name" in reasons(t)[2]


# ---- 3. JSON nested 100,000 levels deep ------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_deep_json_line_is_a_reject(tmp_path):
    f = tmp_path / "listens.jsonl"
    deep_field = json.dumps(listen(1_600_000_100)).replace('"A"', DEEP)
    write_jsonl(f, [listen(1_600_000_000), DEEP, deep_field, listen(1_600_000_200)])
    t = read("listenbrainz", f)
    assert t.plays["source_row"].to_list() == [1, 4]
    assert sorted(reasons(t)) == [2, 3] and all("nested" in r for r in reasons(t).values())


def test_deep_json_array_record_is_a_reject_and_the_rest_is_read(tmp_path):
    f = tmp_path / "Streaming_History_Audio_2023.json"
    good = json.dumps(stream("2023-03-01T18:22:05Z", 1000))
    deep = json.dumps(stream("2023-03-01T18:25:05Z", 1)).replace('"T"', '"x]}[", "deep": ' + DEEP)
    f.write_text(f"[{good},\n{deep},\n{good}]")
    t = read("spotify-history", f)
    assert t.plays["source_row"].to_list() == [1, 3]
    assert list(reasons(t)) == [2] and "nested" in reasons(t)[2]


@pytest.mark.parametrize("text, says", [(DEEP, "nested too deeply"), ("[" * 100_000, "nested too deeply"),
                                        ('{"payload": ' + DEEP + "}", "nested too deeply"),
                                        ("{" * 100_000, "broken JSON")])
@pytest.mark.parametrize("source, name", [("listenbrainz", "listens.json"),
                                          ("spotify-history", "Streaming_History_Audio_1.json")])
def test_deep_json_file_is_a_one_line_error(tmp_path, text, says, source, name):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(MusicrecError, match=says) as exc:
        read(source, f)
    assert "\n" not in str(exc.value)


def test_deep_user_json_is_ignored(tmp_path):
    (tmp_path / "user.json").write_text(DEEP)
    write_jsonl(tmp_path / "listens.jsonl", [listen(1_600_000_000)])
    assert read("listenbrainz", tmp_path).plays.height == 1


# ---- 4. Parquet columns of the wrong type ------------------------------------------------------------

def test_parquet_duration_ms_played_is_converted(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["u1", "u2"], "artist": ["a", "b"],
                  "ms_played": pl.Series([1500, 2000], dtype=pl.Duration("ms")).cast(pl.Duration("us"))}) \
        .write_parquet(f)
    t = read("parquet", f)
    assert t.plays["ms_played"].to_list() == [1500, 2000]


def test_parquet_list_artist_column_is_a_one_line_error(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["u1"], "artist": [["a", "b"]]}).write_parquet(f)
    with pytest.raises(MusicrecError, match="artist.*List.*expected") as exc:
        read("parquet", f)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("col,values,dtype", [("ms_played", [True], pl.Boolean), ("play_count", [[1]], None),
                                              ("timestamp", [{"a": 1}], None)])
def test_parquet_unusable_column_types_are_one_line_errors(tmp_path, col, values, dtype):
    f = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["u1"], "artist": ["a"], col: pl.Series(values, dtype=dtype)}).write_parquet(f)
    with pytest.raises(MusicrecError, match=f"'{col}'"):
        read("parquet", f)


def test_parquet_float_and_out_of_range_values_are_rejects(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame({"user": [1.0, 2.0, 3.5, 4.0, 5.0, 6.0, 7.0],
                  "artist": ["a"] * 7,
                  "play_count": [1.0, 2.0, 1.0, 1.5, float("nan"), 1e30, 1.0],
                  "ms_played": [10.0, None, 1.0, 1.0, 1.0, 1.0, float("inf")],
                  "extra": [[1]] * 7}).write_parquet(f)
    t = read("parquet", f)
    assert t.plays.select("user_key", "play_count", "ms_played").rows() == [("csv:1", 1, 10), ("csv:2", 2, None)]
    assert sorted(reasons(t)) == [3, 4, 5, 6, 7]


def test_parquet_datetimes_outside_1970_2100_are_rejects(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["u"] * 4, "artist": ["a"] * 4,
                  "timestamp": [dt.datetime(2020, 1, 1), dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31),
                                dt.datetime(1969, 12, 31)]}).write_parquet(f)
    g = tmp_path / "dates.parquet"
    pl.DataFrame({"user": ["u"] * 2, "artist": ["a"] * 2,
                  "timestamp": [dt.date(2020, 1, 1), dt.date(2100, 1, 1)]}).write_parquet(g)
    t = read("parquet", f)
    assert t.plays["source_row"].to_list() == [1] and sorted(reasons(t)) == [2, 3, 4]
    t = read("parquet", g)
    assert t.plays["source_row"].to_list() == [1] and sorted(reasons(t)) == [2]


# ---- 5. CSV with an unclosed quote -------------------------------------------------------------------

def test_csv_unclosed_quote_keeps_every_other_row(tmp_path):
    rows = [f"u{i},artist {i},track {i},{1_600_000_000 + i},1" for i in range(200)]
    rows[4] = 'u4,"artist 4,track 4,1600000004,1'          # the quote never closes
    f = tmp_path / "log.csv"
    f.write_text("user,artist,track,timestamp,play_count\n" + "\n".join(rows) + "\n")
    t = read("csv", f)
    assert t.plays.height == 199
    assert sorted(t.plays["source_row"].to_list()) == [i + 2 for i in range(200) if i != 4]
    assert list(reasons(t)) == [6] and "quote" in reasons(t)[6]


def test_csv_quote_closed_rows_later_keeps_the_rows_between(tmp_path):
    rows = [f'u{i},artist {i},"track, {i}",{1_600_000_000 + i},1' for i in range(20)]
    rows[3] = 'u3,"artist 3,track 3,1600000003,1'           # closed by the quote of the next row
    f = tmp_path / "log.csv"
    f.write_text("user,artist,track,timestamp,play_count\n" + "\n".join(rows) + "\n")
    t = read("csv", f)
    assert sorted(t.plays["source_row"].to_list()) == [i + 2 for i in range(20) if i != 3]
    assert list(reasons(t)) == [5] and "quote" in reasons(t)[5]


def test_csv_unclosed_quote_past_the_field_size_limit_keeps_the_other_rows(tmp_path):
    rows = [f"u{i},artist {i},track {i},{1_600_000_000 + i},1" for i in range(10_000)]
    rows[4] = 'u4,"artist 4,track 4,1600000004,1'
    f = tmp_path / "log.csv"
    f.write_text("user,artist,track,timestamp,play_count\n" + "\n".join(rows) + "\n")
    t = read("csv", f)
    assert t.plays.height == 9_999
    assert list(reasons(t)) == [6] and "unclosed quote" in reasons(t)[6]


def test_csv_header_with_an_unclosed_quote_is_a_one_line_error(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text('user,"artist,track\nu,a,b\nu,c,d\n')
    with pytest.raises(MusicrecError, match="header .*unclosed quote") as exc:
        read("csv", f)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("last", ['u9,c,"d', 'u9,c,"d\n', 'u9,c,"d\ne\n\n'])
def test_csv_quote_open_at_the_end_of_the_file_is_a_reject(tmp_path, last):
    f = tmp_path / "log.csv"
    f.write_text("user,artist,track\nu1,a,b\n" + last)
    t = read("csv", f)
    assert t.plays["source_row"].to_list() == [2]
    assert list(reasons(t)) == [3] and "never closed" in reasons(t)[3]


def test_csv_line_breaks_inside_quotes_still_read(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text('user,artist,track\nu1,a,"two\nlines"\nu2,b,"three,\nlines,\nhere"\nu3,c,t\n')
    t = read("csv", f)
    assert t.plays["source_row"].to_list() == [2, 4, 7] and len(t.rejects) == 0
    assert t.tracks["name"].to_list() == ["two\nlines", "three,\nlines,\nhere", "t"]


# ---- 6. Impossible dates on the ISO path ---------------------------------------------------------------

def test_lastfm1k_years_outside_1970_2100_are_rejects(tmp_path):
    f = tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"
    times = ["2009-05-04T23:08:57Z", "-2009-05-04T23:08:57Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
             "2100-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2099-12-31T23:59:59Z"]
    f.write_text("".join(f"user_000001\t{t}\t\tDeep Dish\t\tTrack {i}\n" for i, t in enumerate(times)))
    t = read("lastfm-1k", f)
    assert t.plays["source_row"].to_list() == [1, 7]
    assert sorted(reasons(t)) == [2, 3, 4, 5, 6]
    assert "1970" in reasons(t)[2]


def test_csv_iso_and_numeric_timestamps_share_one_range(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("user,artist,timestamp\nu,a,2020-01-01T00:00:00Z\nu,a,0001-01-01\nu,a,9999-01-01 00:00\n"
                 "u,a,-2009-05-04T23:08:57Z\nu,a,4102444800\nu,a,1e308\nu,a,nan\n")
    t = read("csv", f)
    assert t.plays["source_row"].to_list() == [2]
    assert sorted(reasons(t)) == [3, 4, 5, 6, 7, 8]


# ---- Text that is valid JSON but not Unicode ----------------------------------------------------------

def test_unpaired_surrogate_escapes_are_rejects(tmp_path):
    f = tmp_path / "listens.jsonl"
    bad = json.dumps(listen(1_600_000_100)).replace('"A"', '"\\ud800x"')
    write_jsonl(f, [listen(1_600_000_000), bad])
    t = read("listenbrainz", f)
    assert t.plays["source_row"].to_list() == [1] and "surrogate" in reasons(t)[2]
    t.rejects.frame()                                    # the raw text is storable
    g = tmp_path / "Streaming_History_Audio_2023.json"
    uri = stream("2023-03-01T18:25:05Z", 5)
    uri["spotify_track_uri"] = "spotify:track:\udc80"
    g.write_text(json.dumps([stream("2023-03-01T18:22:05Z", 1), uri]))
    t = read("spotify-history", g)
    assert t.plays["source_row"].to_list() == [1] and "surrogate" in reasons(t)[2]
