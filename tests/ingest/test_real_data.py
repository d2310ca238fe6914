"""Readers on the real public datasets in ../shared/data: counts must equal their PROVENANCE."""

import datetime as dt
import os

import polars as pl
import pytest

from musicrec.ingest.readers import read

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def hetrec(shared_data):
    return read("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"))


def test_hetrec_counts_match_provenance(hetrec):
    assert hetrec.plays.height == 92_834
    assert hetrec.users.height == 1_892
    assert hetrec.artists.height == 17_632
    assert hetrec.tags.height == 186_479
    assert hetrec.friends.height == 25_434
    assert len(hetrec.rejects) == 0
    assert hetrec.plays["user_key"].n_unique() == 1_892
    assert hetrec.plays["track_key"].null_count() == 92_834          # artist-level data
    assert hetrec.plays["timestamp"].null_count() == 92_834


def test_hetrec_first_rows(hetrec):
    # user_artists.dat line 2: "2 51 13883"; artists.dat: 51 = Duran Duran
    first = hetrec.plays.row(0, named=True)
    assert (first["user_key"], first["artist_key"], first["play_count"], first["source_row"]) == \
        ("hetrec:2", "hetrec:51", 13883, 2)
    name = hetrec.artists.filter(pl.col("artist_key") == "hetrec:51")["name"].item()
    assert name == "Duran Duran"
    # user_taggedartists.dat line 2: "2 52 13 1 4 2009", tagID 13 = chillout
    tag = hetrec.tags.row(0, named=True)
    assert tag == {"artist_key": "hetrec:52", "tag": "chillout", "user_key": "hetrec:2",
                   "timestamp": dt.datetime(2009, 4, 1, tzinfo=UTC), "weight": 1.0}


def test_hetrec_tags_are_latin1_decoded(hetrec):
    tags = set(hetrec.tags["tag"].unique().to_list())
    assert {"tropicália", "rock français", "fußball"} & tags       # not mojibake, not rejected
    assert not any("\ufffd" in t for t in tags)


def test_thirtymusic_counts_match_provenance(shared_data):
    t = read("30music", os.path.join(shared_data, "30music-200ks-test-slices"))
    assert t.plays.height == 121_547
    assert t.plays["session_key"].n_unique() == 9_519
    assert t.users.height == 4_620
    assert t.tracks.height == 57_684
    assert t.artists.height == 10_355
    assert len(t.rejects) == 0
    # 30music-200ks_test.0.txt line 2: 40265 2464 1818271 1397982525 228054
    first = t.plays.row(0, named=True)
    assert first["session_key"] == "30music-200ks_test.0:2464"
    assert first["timestamp"] == dt.datetime.fromtimestamp(1397982525, UTC)
    assert t.tracks.filter(pl.col("track_key") == "30music:1818271").row(0, named=True)["name"] == "track 1818271"


def test_thirtymusic_single_slice(shared_data):
    t = read("30music", os.path.join(shared_data, "30music-200ks-test-slices", "30music-200ks_test.1.txt"))
    assert t.plays.height == 21_021
    assert t.plays["session_key"].n_unique() == 1_642


def test_lastfm1k_sample(shared_data):
    folder = os.path.join(shared_data, "lastfm-1k-sample")
    t = read("lastfm-1k", folder)
    # all 5,000 lines are well-formed (checked: 6 fields each, valid timestamps, UTF-8)
    assert t.plays.height == 5_000 and len(t.rejects) == 0
    assert t.users.height == 992                                    # from userid-profile.tsv
    assert t.plays["user_key"].value_counts().sort("user_key")["count"].to_list() == [4_997, 3]
    # PROVENANCE: 353 rows lack an artist MBID, 1,396 a track MBID -> name keys
    assert t.plays["artist_key"].str.starts_with("name:").sum() == 353
    assert t.plays["track_key"].str.starts_with("name:").sum() == 1_396
    # line 1491 has a '"' inside a name: a tab-only split keeps it whole
    row = t.plays.filter(pl.col("source_row") == 1491).row(0, named=True)
    assert t.artists.filter(pl.col("artist_key") == row["artist_key"])["name"].item() == 'Johnny "Hammond" Smith'
    first = t.plays.row(0, named=True)
    assert first["timestamp"] == dt.datetime(2009, 5, 4, 23, 8, 57, tzinfo=UTC)
    assert first["track_key"] == "name:deep dish|fuck me im famous (pacha ibiza)-09-28-2007"


def test_lastfm1k_file_without_profile_beside_it(shared_data, tmp_path):
    src = os.path.join(shared_data, "lastfm-1k-sample", "userid-timestamp-artid-artname-traid-traname.head5000.tsv")
    dst = tmp_path / "scrobbles.tsv"
    dst.write_bytes(open(src, "rb").read())
    t = read("lastfm-1k", tmp_path)                                 # renamed file in a folder
    assert t.plays.height == 5_000
    assert t.users.height == 2                                      # only the users that listened
