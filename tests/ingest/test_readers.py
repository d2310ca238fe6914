"""The reader registry and the shared parsing helpers in ingest.base."""

import datetime as dt

import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.ingest import base
from musicrec.ingest.readers import READERS, options_of, read

UTC = dt.timezone.utc


def test_unknown_source_lists_valid_names():
    with pytest.raises(MusicrecError, match="valid sources: hetrec-lastfm-2k, lastfm-1k, 30music"):
        read("lastfm-2k", "x")


def test_options_are_checked_per_reader(tmp_path):
    assert options_of("listenbrainz") == ["user"]
    assert options_of("csv") == ["columns", "source", "user"]
    with pytest.raises(MusicrecError, match="does not take option"):
        read("30music", tmp_path, user="x")
    # None means "not given" (the CLI passes its unset flags through)
    with pytest.raises(MusicrecError, match="no \\*.txt file"):
        read("30music", tmp_path, user=None)


def test_every_reader_fails_cleanly_on_a_missing_path(tmp_path):
    for source in READERS:
        with pytest.raises(MusicrecError):
            read(source, tmp_path / "missing")


def test_read_lines_decodes_each_line_alone(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(b"a\tb\r\n\nc\xff\td\n  \nlast")
    rejects = base.Rejects()
    df = base.read_lines(f, "s", rejects)
    assert df.rows() == [(1, "a\tb"), (5, "last")]
    assert [(r["record"], r["raw"]) for r in rejects.rows] == [(3, "c\ufffd\td")]


def test_time_parsers():
    df = pl.DataFrame({"t": ["1397982525", " 1.5 ", "-1", "99999999999", "2009-05-04T23:08:57Z",
                             "2009-05-04T23:08:57+02:00", "2009-05-04", "2009-02-30", "junk", None]})
    out = df.select(e=base.epoch_expr("t"), i=base.iso_expr("t"))
    assert out["e"].to_list()[:4] == [dt.datetime(2014, 4, 20, 8, 28, 45, tzinfo=UTC),
                                      dt.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC), None, None]
    assert out["i"].to_list()[4:] == [dt.datetime(2009, 5, 4, 23, 8, 57, tzinfo=UTC),
                                      dt.datetime(2009, 5, 4, 21, 8, 57, tzinfo=UTC),
                                      dt.datetime(2009, 5, 4, tzinfo=UTC), None, None, None]


def test_name_keys_match_name_key():
    names = pl.Series(["  The  Beatles ", "STRASSE", "Straße", None, "   "])
    assert base.name_keys(names).to_list() == [base.name_key(n) for n in names.to_list()]
    assert base.name_keys(names).to_list()[:3] == ["name:the beatles", "name:strasse", "name:strasse"]
    assert base.track_name_keys(pl.Series(["A  B", None]), pl.Series(["Song", "X"])).to_list() == \
        ["name:a b|song", "name:|x"]


def test_thirtymusic_folder_reads_only_slice_files(tmp_path):
    (tmp_path / "readme.txt").write_text("30Music slices\n")
    (tmp_path / "s.0.txt").write_text("UserId\tSessionId\tItemId\tTime\tArtistId\n1\t7\t5\t1400000000\t9\n")
    t = read("30music", tmp_path)
    assert t.plays.height == 1 and len(t.rejects) == 0 and t.plays["session_key"].to_list() == ["s.0:7"]
    (tmp_path / "s.0.txt").unlink()
    with pytest.raises(MusicrecError, match="no slice file"):
        read("30music", tmp_path)
