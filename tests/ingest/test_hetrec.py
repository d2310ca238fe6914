"""HetRec reader on a small hand-made folder: keys, latin-1 tags, dates, rejected lines."""

import datetime as dt

import pytest

from musicrec import MusicrecError
from musicrec.ingest.hetrec import read_hetrec

UTC = dt.timezone.utc


def make_folder(path, user_artists: str, tagged: str = "", tags: bytes = b"") -> None:
    (path / "user_artists.dat").write_text("userID\tartistID\tweight\n" + user_artists)
    (path / "artists.dat").write_text("id\tname\turl\tpictureURL\n1\tMALICE MIZER\thttp://x\t\n"
                                      "2\tDiary of Dreams\thttp://y\thttp://y.jpg\n")
    (path / "tags.dat").write_bytes(b"tagID\ttagValue\n1\tmetal\n2\tRock Fran\xe7ais \n" + tags)
    (path / "user_taggedartists.dat").write_text("userID\tartistID\ttagID\tday\tmonth\tyear\n" + tagged)
    (path / "user_friends.dat").write_text("userID\tfriendID\n2\t3\n3\t2\n")


def test_reads_keys_counts_and_tags(tmp_path):
    make_folder(tmp_path, "2\t1\t100\n2\t2\t5\n3\t1\t7\n", "2\t1\t2\t1\t4\t2009\n3\t9\t1\t31\t12\t1956\n")
    t = read_hetrec(tmp_path)
    assert t.plays.select("user_key", "artist_key", "play_count").rows() == [
        ("hetrec:2", "hetrec:1", 100), ("hetrec:2", "hetrec:2", 5), ("hetrec:3", "hetrec:1", 7)]
    assert t.plays["source_row"].to_list() == [2, 3, 4]
    assert t.artists["name"].to_list() == ["MALICE MIZER", "Diary of Dreams"]
    assert t.tags.rows() == [
        ("hetrec:1", "rock français", "hetrec:2", dt.datetime(2009, 4, 1, tzinfo=UTC), 1.0),
        ("hetrec:9", "metal", "hetrec:3", dt.datetime(1956, 12, 31, tzinfo=UTC), 1.0)]   # old dates are kept
    assert sorted(t.users["user_key"].to_list()) == ["hetrec:2", "hetrec:3"]
    assert t.friends.rows() == [("hetrec:2", "hetrec:3"), ("hetrec:3", "hetrec:2")]
    assert len(t.rejects) == 0


def test_malformed_lines_are_rejected_with_their_line_numbers(tmp_path):
    make_folder(tmp_path, "2\t1\t100\n2\tx\t5\n2\t2\n3\t1\t-4\n3\t2\t9\n",
                "2\t1\t1\t30\t2\t2009\n2\t1\t77\t1\t1\t2009\n2\t1\t1\t1\t1\t2009\n")
    t = read_hetrec(tmp_path)
    assert t.plays["source_row"].to_list() == [2, 6]
    rej = t.rejects.frame()
    got = {(r["file"].rsplit("/", 1)[-1], r["record"]): r["reason"] for r in rej.iter_rows(named=True)}
    assert got == {
        ("user_artists.dat", 3): "artistID is not an integer: 'x'",
        ("user_artists.dat", 4): "expected 3 tab-separated fields, found 2",
        ("user_artists.dat", 5): "negative weight -4",
        ("user_taggedartists.dat", 2): "impossible date 2009-2-30",
        ("user_taggedartists.dat", 3): "unknown tagID 77",
    }
    assert t.tags.height == 1


def test_missing_files_or_no_rows_raise(tmp_path):
    with pytest.raises(MusicrecError, match="lacks user_artists.dat"):
        read_hetrec(tmp_path)
    make_folder(tmp_path, "a\tb\tc\n")
    with pytest.raises(MusicrecError, match="no valid rows"):
        read_hetrec(tmp_path)
    with pytest.raises(MusicrecError, match="does not exist"):
        read_hetrec(tmp_path / "nope")
