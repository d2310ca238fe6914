"""Property tests: every reader keeps exactly the valid rows and rejects exactly the corrupted
ones, each with its own line / record number and a reason, and never raises anything but
MusicrecError.

Each test generates valid rows, corrupts a random subset (bytes, field counts, timestamps, ids,
JSON), writes a file and compares the reader's output with what the generator knows. The hostile
shapes of issue 12 are among the corruptions: numbers that overflow (1e308, 10**30), JSON nested
past the parser's recursion limit, dates outside [1970, 2100) on the ISO path, an unclosed CSV
quote, and Parquet columns of unusual types (floats, NaN, durations, datetimes).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import tempfile

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrec import MusicrecError
from musicrec.ingest.readers import read

SETTINGS = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# names with the characters that break naive parsers: quotes, commas, non-ASCII, '|'
NAME_CHARS = "abcxyzABC019 éøü龍-'\"&.,|"
names = st.text(NAME_CHARS, min_size=0, max_size=10).map(lambda s: "N" + s)
mbids = st.uuids().map(str)
epochs = st.integers(0, 4_000_000_000)
BAD_ISO = ["yesterday", "2009-13-01T00:00:00Z", "2009-02-30T10:00:00Z", "12:00", "2009-05-04 25:00:00", "0",
           "-2009-05-04T23:08:57Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
           "2100-01-01T00:00:00Z"]
HUGE = [1e308, 10**30, 2**63, -1]
deep_json = st.integers(3_000, 30_000).map(lambda n: "[" * n + "]" * n)   # past json's recursion limit


def iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def insert_bad_byte(data, raw: bytes) -> bytes:
    """Insert a byte that is never valid UTF-8 somewhere in ``raw``."""
    i = data.draw(st.integers(0, len(raw)))
    return raw[:i] + data.draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0"])) + raw[i:]


def run_reader(source, path, **options):
    """Read; return None when the reader says (correctly) that nothing could be used."""
    try:
        return read(source, path, **options)
    except MusicrecError:
        return None


def check(tables, valid_records: list[int], bad_records: list[int]) -> None:
    if not valid_records:
        assert tables is None, "no valid row but the reader did not raise MusicrecError"
        return
    assert tables is not None
    assert tables.plays.height == len(valid_records)
    assert sorted(tables.plays["source_row"].to_list()) == sorted(valid_records)
    rej = tables.rejects.frame()
    assert sorted(rej["record"].to_list()) == sorted(bad_records)
    assert rej["reason"].str.len_chars().min() > 0 if rej.height else True


def write_lines(data, lines: list[bytes], path: str) -> dict[int, int]:
    """Write ``lines`` with random blank lines and line endings; return index -> line number."""
    eol = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    out, numbers, n = [], {}, 0
    for i, line in enumerate(lines):
        if data.draw(st.integers(0, 9)) == 0:          # a blank line now and then
            out.append(b"")
            n += 1
        out.append(line)
        n += 1
        numbers[i] = n
    with open(path, "wb") as f:
        f.write(eol.join(out) + (eol if data.draw(st.booleans()) else b""))
    return numbers


# ---- Last.fm 1K TSV ---------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_lastfm1k_keeps_valid_and_rejects_corrupted(data):
    n = data.draw(st.integers(1, 25))
    lines, bad = [], []
    for _ in range(n):
        fields = [data.draw(st.sampled_from(["user_000001", "user_000002"])), iso(data.draw(epochs)),
                  data.draw(st.one_of(st.just(""), mbids)), data.draw(names),
                  data.draw(st.one_of(st.just(""), mbids)), data.draw(names)]
        kind = data.draw(st.sampled_from([None, None, None, "bytes", "fewer", "more", "time", "no_artist"]))
        if kind == "fewer":
            fields = fields[:data.draw(st.integers(1, 5))]
        elif kind == "more":
            fields = fields + ["extra"]
        elif kind == "time":
            fields[1] = data.draw(st.sampled_from(BAD_ISO + [""]))
        elif kind == "no_artist":
            fields[2] = fields[3] = ""
        raw = "\t".join(fields).encode("utf-8")
        if kind == "bytes":
            raw = insert_bad_byte(data, raw)
        lines.append(raw)
        bad.append(kind is not None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "userid-timestamp-artid-artname-traid-traname.tsv")
        numbers = write_lines(data, lines, path)
        tables = run_reader("lastfm-1k", path)
    check(tables, [numbers[i] for i in range(n) if not bad[i]], [numbers[i] for i in range(n) if bad[i]])


# ---- 30Music slices -------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_thirtymusic_keeps_valid_and_rejects_corrupted(data):
    n = data.draw(st.integers(1, 25))
    lines, bad = [b"UserId\tSessionId\tItemId\tTime\tArtistId"], [None]
    for _ in range(n):
        fields = [str(data.draw(st.integers(0, 10**7))) for _ in range(3)] + [str(data.draw(epochs)),
                                                                             str(data.draw(st.integers(0, 10**6)))]
        kind = data.draw(st.sampled_from([None, None, None, "bytes", "fewer", "more", "id", "time"]))
        if kind == "fewer":
            fields = fields[:data.draw(st.integers(1, 4))]
        elif kind == "more":
            fields.append("7")
        elif kind == "id":
            fields[data.draw(st.sampled_from([0, 1, 2, 4]))] = data.draw(st.sampled_from(["x1", "", "1.5", "--"]))
        elif kind == "time":
            fields[3] = data.draw(st.sampled_from(["", "abc", "-1", "99999999999", "1e3x"]))
        raw = "\t".join(fields).encode()
        if kind == "bytes":
            raw = insert_bad_byte(data, raw)
        lines.append(raw)
        bad.append(kind is not None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "30music-200ks_test.0.txt")
        numbers = write_lines(data, lines, path)
        tables = run_reader("30music", path)
    rows = range(1, n + 1)
    check(tables, [numbers[i] for i in rows if not bad[i]], [numbers[i] for i in rows if bad[i]])


# ---- ListenBrainz JSON lines ----------------------------------------------------------------

def listen(data) -> dict:
    meta = {"artist_name": data.draw(names), "track_name": data.draw(names)}
    if data.draw(st.booleans()):
        meta["additional_info"] = {"artist_mbids": [data.draw(mbids)], "recording_mbid": data.draw(mbids),
                                   "duration_ms": data.draw(st.integers(1, 10**6))}
    rec = {"listened_at": data.draw(epochs), "track_metadata": meta}
    if data.draw(st.booleans()):
        rec["user_name"] = "alice"
    return rec


@SETTINGS
@given(st.data())
def test_listenbrainz_keeps_valid_and_rejects_corrupted(data):
    n = data.draw(st.integers(1, 20))
    lines, bad = [], []
    for _ in range(n):
        rec = listen(data)
        kind = data.draw(st.sampled_from([None, None, None, "broken", "no_ts", "bad_ts", "bytes", "not_object",
                                          "no_artist", "no_meta", "bad_duration", "deep", "deep_field",
                                          "wrong_type"]))
        if kind == "no_ts":
            del rec["listened_at"]
        elif kind == "bad_ts":
            rec["listened_at"] = data.draw(st.sampled_from(["yesterday", -5, 10**13, None, True, 1e308,
                                                            math.inf, math.nan]))
        elif kind == "bad_duration":
            key = data.draw(st.sampled_from(["duration", "duration_ms"]))
            rec["track_metadata"]["additional_info"] = {key: data.draw(st.sampled_from(HUGE + ["abc", [1]]))}
        elif kind == "wrong_type":
            rec["track_metadata"][data.draw(st.sampled_from(["artist_name", "track_name"]))] = \
                data.draw(st.sampled_from([5, ["a"], {"n": "a"}, True]))
        elif kind == "no_artist":
            rec["track_metadata"].pop("artist_name")
            rec["track_metadata"].pop("additional_info", None)
        elif kind == "no_meta":
            del rec["track_metadata"]
        text = json.dumps(rec, ensure_ascii=data.draw(st.booleans()))
        if kind == "deep":
            text = data.draw(deep_json)
        elif kind == "deep_field":
            text = text[:-1] + ', "extra": ' + data.draw(deep_json) + "}"
        elif kind == "broken":
            text = text[:data.draw(st.integers(1, len(text) - 1))]
        elif kind == "not_object":
            text = data.draw(st.sampled_from(["42", "[1, 2]", '"listen"']))
        raw = text.encode("utf-8")
        if kind == "bytes":
            raw = insert_bad_byte(data, raw)
        lines.append(raw)
        bad.append(kind is not None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "listens.jsonl")
        numbers = write_lines(data, lines, path)
        tables = run_reader("listenbrainz", path)
    check(tables, [numbers[i] for i in range(n) if not bad[i]], [numbers[i] for i in range(n) if bad[i]])


# ---- Spotify JSON array ---------------------------------------------------------------------

MARK = "\u00a7BAD\u00a7"   # replaced by an invalid byte after encoding (inside a JSON string)
DEEP_MARK = "\u00a7DEEP\u00a7"   # replaced by JSON nested past the recursion limit (a string holding "]" first)


@SETTINGS
@given(st.data())
def test_spotify_keeps_valid_and_rejects_corrupted(data):
    n = data.draw(st.integers(1, 20))
    recs, kinds = [], []
    for _ in range(n):
        rec = {"ts": iso(data.draw(epochs)), "username": "alice", "ms_played": data.draw(st.integers(0, 10**7)),
               "master_metadata_track_name": data.draw(names), "master_metadata_album_artist_name": data.draw(names),
               "spotify_track_uri": "spotify:track:" + data.draw(st.text("abcXYZ0189", min_size=22, max_size=22)),
               "spotify_episode_uri": None, "skipped": data.draw(st.sampled_from([True, False, None]))}
        kind = data.draw(st.sampled_from([None, None, None, "bad_ts", "no_ts", "bad_ms", "bytes", "podcast",
                                          "deep", "wrong_type"]))
        if kind == "bad_ts":
            rec["ts"] = data.draw(st.sampled_from(BAD_ISO + ["03/01/2023 08:39"]))
        elif kind == "no_ts":
            del rec["ts"]
        elif kind == "bad_ms":
            rec["ms_played"] = data.draw(st.sampled_from(["12", -1, 1.5, None] + HUGE))
        elif kind == "deep":
            rec["master_metadata_track_name"] = DEEP_MARK
        elif kind == "wrong_type":
            rec[data.draw(st.sampled_from(["master_metadata_track_name", "username", "skipped"]))] = \
                data.draw(st.sampled_from([5, ["a"], {"n": "a"}]))
        elif kind == "bytes":
            rec["master_metadata_track_name"] += MARK
        elif kind == "podcast":
            rec.update(spotify_track_uri=None, master_metadata_track_name=None, spotify_episode_uri="spotify:episode:x",
                       episode_name="An episode")
        recs.append(rec)
        kinds.append(kind)
    raw = json.dumps(recs, ensure_ascii=False, indent=data.draw(st.sampled_from([None, 2]))).encode("utf-8")
    raw = raw.replace(MARK.encode("utf-8"), b"\xff")
    deep = b'"]}", "deep": ' + data.draw(deep_json).encode()
    raw = raw.replace(json.dumps(DEEP_MARK, ensure_ascii=False).encode(), deep)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "Streaming_History_Audio_2023_0.json")
        with open(path, "wb") as f:
            f.write(raw)
        tables = run_reader("spotify-history", path)
    records = range(1, n + 1)
    check(tables, [r for r, k in zip(records, kinds) if k is None],
          [r for r, k in zip(records, kinds) if k not in (None, "podcast")])
    if tables is not None:
        assert tables.skipped.get("podcast episodes", 0) == kinds.count("podcast")


# ---- CSV with a header, quoting and line breaks inside quoted fields ------------------------

@SETTINGS
@given(st.data())
def test_csv_keeps_valid_and_rejects_corrupted(data):
    n = data.draw(st.integers(1, 20))
    quoting = data.draw(st.booleans())   # names with ',', '"' or line breaks need the csv-module path
    plain_names = st.text("abcxyz019 éü", max_size=8).map(lambda s: "N" + s)
    text_names = names if quoting else plain_names
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["user", "artist", "track", "timestamp", "play_count"])
    line, valid, bad = 2, [], []
    chunks = [out.getvalue().encode()]
    plain_next = False       # the row after an unclosed quote: valid and without quotes
    for _ in range(n):
        kind = None if plain_next else data.draw(st.sampled_from(
            [None, None, None, "bad_ts", "bad_count", "fewer", "more", "bytes", "unclosed"]))
        plain = plain_next or kind == "unclosed"
        plain_next = kind == "unclosed"
        track = data.draw(plain_names if plain else text_names)
        if quoting and not plain and kind != "bytes" and data.draw(st.booleans()):
            track += "\nsecond line"
        ts = data.draw(epochs)
        row = ["u" + str(data.draw(st.integers(0, 3))), data.draw(plain_names if plain else text_names), track,
               str(ts) if data.draw(st.booleans()) else iso(ts), str(data.draw(st.integers(0, 50)))]
        if kind == "bad_ts":
            row[3] = data.draw(st.sampled_from(["yesterday", "2020-02-30", "12:00", "-5", "1e308", "nan",
                                                "0001-01-01", "9999-12-31T00:00:00Z", "-2009-05-04T23:08:57Z"]))
        elif kind == "bad_count":
            row[4] = data.draw(st.sampled_from(["x", "-3", "1.5", "1e30", "99999999999999999999", "10000000000"]))
        elif kind == "fewer":
            row = row[:data.draw(st.integers(1, 4))]
        elif kind == "more":
            row.append("extra")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        raw = buf.getvalue().encode("utf-8")
        if kind == "bytes":
            raw = insert_bad_byte(data, raw[:-1]) + b"\n"
        elif kind == "unclosed":                  # the artist's quote is never closed
            raw = (row[0] + ',"' + ",".join(row[1:]) + "\n").encode("utf-8")
        chunks.append(raw)
        (valid if kind is None else bad).append(line)
        line += raw.count(b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log.csv")
        with open(path, "wb") as f:
            f.write(b"".join(chunks))
        tables = run_reader("csv", path)
    check(tables, valid, bad)


# ---- Parquet with typed columns: floats, NaN, durations, datetimes, dates --------------------

UTC = dt.timezone.utc


@SETTINGS
@given(st.data())
def test_parquet_keeps_valid_and_rejects_corrupted(data):
    n = data.draw(st.integers(1, 20))
    id_type = data.draw(st.sampled_from(["int", "float", "text"]))
    ts_type = data.draw(st.sampled_from(["datetime", "date", "int", "float", "text"]))
    count_type = data.draw(st.sampled_from(["int", "float", "text"]))
    ms_type = data.draw(st.sampled_from(["int", "float", "duration", "text"]))
    good_id = {"int": lambda u: u, "float": float, "text": lambda u: f"u{u}"}[id_type]
    bad_ids = {"int": [None], "float": [None, 1.5, math.nan, 1e30], "text": [None, "", "  "]}[id_type]

    def good_ts(t):
        return {"datetime": lambda: dt.datetime.fromtimestamp(t, UTC).replace(tzinfo=None),
                "date": lambda: dt.datetime.fromtimestamp(t, UTC).date(), "int": lambda: t,
                "float": lambda: t + 0.25, "text": lambda: iso(t)}[ts_type]()
    bad_ts = {"datetime": [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), dt.datetime(1969, 12, 31, 23)],
              "date": [dt.date(1, 1, 1), dt.date(2100, 1, 1), dt.date(1969, 12, 31)],
              "int": [-5, 5_000_000_000, 10**15], "float": [-0.5, 1e308, math.nan, math.inf],
              "text": [b for b in BAD_ISO if b != "0"]}[ts_type]   # "0" is Unix second 0
    good_count = {"int": lambda k: k, "float": float, "text": str}[count_type]
    bad_counts = {"int": [None, -1, 10**12], "float": [None, 1.5, math.nan, 1e30, -2.0],
                  "text": [None, "x", "1.5", "1e30", "-3"]}[count_type]
    good_ms = {"int": lambda m: m, "float": lambda m: m + 0.4, "text": str,
               "duration": lambda m: dt.timedelta(milliseconds=m)}[ms_type]
    bad_ms = {"int": [-1, 10**13], "float": [math.nan, math.inf, -5.0, 1e30], "text": ["x", "-1", "1e30"],
              "duration": [dt.timedelta(milliseconds=-1), dt.timedelta(days=100_000)]}[ms_type]
    cols = {"user": [], "artist": [], "timestamp": [], "play_count": [], "ms_played": []}
    bad = []
    for _ in range(n):
        kind = data.draw(st.sampled_from([None, None, None, "id", "ts", "count", "ms"]))
        cols["user"].append(data.draw(st.sampled_from(bad_ids)) if kind == "id" else
                            good_id(data.draw(st.integers(0, 9))))
        cols["artist"].append(good_id(data.draw(st.integers(0, 99))))
        cols["timestamp"].append(data.draw(st.sampled_from(bad_ts)) if kind == "ts" else
                                 data.draw(st.one_of(st.none(), epochs.map(good_ts))))
        cols["play_count"].append(data.draw(st.sampled_from(bad_counts)) if kind == "count" else
                                  good_count(data.draw(st.integers(0, 50))))
        cols["ms_played"].append(data.draw(st.sampled_from(bad_ms)) if kind == "ms" else
                                 data.draw(st.one_of(st.none(), st.integers(0, 10**7).map(good_ms))))
        bad.append(kind is not None)
    types = {"int": pl.Int64, "float": pl.Float64, "text": pl.String, "datetime": pl.Datetime("us"),
             "date": pl.Date, "duration": pl.Duration("us")}
    df = pl.DataFrame({"user": pl.Series(cols["user"], dtype=types[id_type], strict=False),
                       "artist": pl.Series(cols["artist"], dtype=types[id_type]),
                       "timestamp": pl.Series(cols["timestamp"], dtype=types[ts_type], strict=False),
                       "play_count": pl.Series(cols["play_count"], dtype=types[count_type], strict=False),
                       "ms_played": pl.Series(cols["ms_played"], dtype=types[ms_type], strict=False),
                       "extra": [[i] for i in range(n)]})
    assert df.null_count().row(0) == tuple(pl.Series(v).null_count() for v in cols.values()) + (0,)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log.parquet")
        df.write_parquet(path)
        tables = run_reader("parquet", path)
    check(tables, [i + 1 for i in range(n) if not bad[i]], [i + 1 for i in range(n) if bad[i]])
