"""CSV / Parquet reader: default column names, --map style mappings, timestamps, rejects."""

import datetime as dt

import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.ingest.tabular import read_csv, read_parquet

UTC = dt.timezone.utc


def test_csv_with_canonical_names(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("user,artist,track,timestamp,play_count\n"
                 "u1,Radiohead,Nude,2020-01-01T00:00:00Z,1\n"
                 "u1,Radiohead,Nude,1577836860,2\n"
                 "u2,Björk,Hunter,2020-01-01 00:02:00,1\n"
                 "u2,Björk,Jóga,,3\n")
    t = read_csv(f)
    assert t.plays.select("user_key", "artist_key", "track_key", "play_count").rows() == [
        ("csv:u1", "csv:Radiohead", "csv:Nude", 1), ("csv:u1", "csv:Radiohead", "csv:Nude", 2),
        ("csv:u2", "csv:Björk", "csv:Hunter", 1), ("csv:u2", "csv:Björk", "csv:Jóga", 3)]
    assert t.plays["timestamp"].to_list() == [
        dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2020, 1, 1, 0, 1, tzinfo=UTC),
        dt.datetime(2020, 1, 1, 0, 2, tzinfo=UTC), None]                  # empty = unknown, not an error
    assert t.plays["source_row"].to_list() == [2, 3, 4, 5]
    assert dict(t.artists.select("artist_key", "name").rows())["csv:Björk"] == "Björk"
    assert len(t.rejects) == 0


def test_csv_mapping_source_and_name_keys(tmp_path):
    f = tmp_path / "export.csv"
    f.write_text("listener,band,song,when\n"
                 "ann,Massive Attack,Teardrop,1577836800\nann,massive  attack,Angel,1577836900\n")
    t = read_csv(f, columns={"user": "listener", "artist_name": "band", "track_name": "song", "timestamp": "when"},
                 source="mylog")
    assert t.source == "mylog"
    assert t.plays["user_key"].unique().to_list() == ["mylog:ann"]
    # only names: name keys, which merge with other sources' names
    assert t.plays["artist_key"].unique().to_list() == ["name:massive attack"]
    assert t.plays["track_key"].to_list() == ["name:massive attack|teardrop", "name:massive attack|angel"]


def test_csv_quoted_fields_and_rejects_keep_line_numbers(tmp_path):
    f = tmp_path / "q.csv"
    f.write_bytes(b'user,artist,track,timestamp\n'
                  b'u1,"Crosby, Stills & Nash","Suite: Judy\nBlue Eyes",1577836800\n'   # lines 2-3
                  b'u1,A,B,yesterday\n'                                                # line 4
                  b'u1,A\n'                                                           # line 5
                  b'u1,\xff,B,1577836800\n'                                           # line 6
                  b'u2,"A ""quoted"" name",T,1577836800\n')                           # line 7
    t = read_csv(f)
    assert t.plays["source_row"].to_list() == [2, 7]
    assert dict(t.artists.select("artist_key", "name").rows())['csv:A "quoted" name'] == 'A "quoted" name'
    assert {r["record"]: r["reason"] for r in t.rejects.rows} == {
        4: "bad timestamp 'yesterday' (want Unix seconds or ISO-8601 from 1970-01-01 to 2100-01-01 UTC)",
        5: "expected 4 fields, found 2",
        6: "undecodable bytes (not UTF-8): invalid start byte"}


def test_user_option_when_no_user_column(tmp_path):
    f = tmp_path / "mine.tsv"
    f.write_text("artist\ttrack\nA\tB\n")
    t = read_csv(f, user="me")
    assert t.plays.select("user_key", "artist_key").rows() == [("csv:me", "csv:A")]


def test_parquet_with_numeric_and_datetime_columns(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame({"uid": [1, 2, 2], "aid": [10, 10, 11], "n": [3, None, -1],
                  "at": [dt.datetime(2021, 5, 1, 12), None, None]}).write_parquet(f)
    t = read_parquet(f, columns={"user": "uid", "artist": "aid", "play_count": "n", "timestamp": "at"})
    assert t.plays.select("user_key", "artist_key", "play_count", "timestamp").rows() == [
        ("csv:1", "csv:10", 3, dt.datetime(2021, 5, 1, 12, tzinfo=UTC))]
    assert {r["record"]: r["reason"] for r in t.rejects.rows} == {
        2: "missing play_count", 3: "bad play_count '-1' (want a whole number from 0 to 1000000000)"}


@pytest.mark.parametrize("columns, message", [
    ({"listener": "x"}, "unknown canonical column"),
    ({"user": "nope"}, "no column 'nope'"),
    ({}, "no user column"),
])
def test_bad_mappings_raise(tmp_path, columns, message):
    f = tmp_path / "log.csv"
    f.write_text("who,artist\nu,A\n")
    with pytest.raises(MusicrecError, match=message):
        read_csv(f, columns=columns)


def test_empty_and_unreadable_files_raise(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MusicrecError, match="no rows"):
        read_csv(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(MusicrecError, match="not a readable Parquet"):
        read_parquet(tmp_path / "bad.parquet")
