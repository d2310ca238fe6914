"""Dataset registry and fetch: mirror copies, verification failures, download path (file:// URL)."""

import dataclasses
import os
import shutil
import zipfile

import pytest

from musicrec import MusicrecError
from musicrec.ingest import datasets
from musicrec.ingest.datasets import DATASETS, FileSpec, count_rows, fetch, is_cached, sha256_of
from musicrec.ingest.readers import READERS


def test_registry_is_consistent():
    assert {"hetrec-lastfm-2k", "30music-200ks-test", "lastfm-1k-sample", "lastfm-1k"} <= set(DATASETS)
    for name, ds in DATASETS.items():
        assert ds.name == name and ds.reader in READERS and ds.files and ds.url.startswith("http")
        assert ds.archive in ("zip", "tar.gz", "files")
        if ds.archive == "files":
            assert all(f.url for f in ds.files)
    assert sum(f.rows for f in DATASETS["30music-200ks-test"].files) == 121_547


@pytest.mark.parametrize("name", ["hetrec-lastfm-2k", "30music-200ks-test", "lastfm-1k-sample"])
def test_fetch_from_the_shared_mirror_verifies_every_file(shared_data, tmp_path, name):
    path = fetch(name, str(tmp_path), mirror=shared_data, progress=False)
    assert path == os.path.join(str(tmp_path), "datasets", name)
    for f in DATASETS[name].files:
        assert sha256_of(os.path.join(path, f.name)) == f.sha256
        assert count_rows(os.path.join(path, f.name), f.header) == f.rows
    assert is_cached(name, str(tmp_path))
    assert fetch(name, str(tmp_path), mirror=None, progress=False) == path     # cached: no mirror needed
    assert [p for p in os.listdir(os.path.join(str(tmp_path), "datasets")) if "tmp" in p] == []


def test_mirror_may_hold_the_files_directly(shared_data, tmp_path):
    flat = os.path.join(shared_data, "lastfm-1k-sample")
    assert os.path.isdir(fetch("lastfm-1k-sample", str(tmp_path), mirror=flat, progress=False))


def _bad_mirror(shared_data, tmp_path, change):
    mirror = tmp_path / "mirror" / "lastfm-1k-sample"
    shutil.copytree(os.path.join(shared_data, "lastfm-1k-sample"), mirror)
    change(mirror)
    return str(tmp_path / "mirror")


def test_corrupt_file_is_named_and_nothing_is_left_behind(shared_data, tmp_path):
    def flip(m):
        p = m / "userid-profile.tsv"
        data = bytearray(p.read_bytes())
        data[100] ^= 1
        p.write_bytes(bytes(data))
    mirror = _bad_mirror(shared_data, tmp_path, flip)
    home = tmp_path / "home"
    with pytest.raises(MusicrecError, match="userid-profile.tsv has sha256"):
        fetch("lastfm-1k-sample", str(home), mirror=mirror, progress=False)
    assert os.listdir(home / "datasets") == []


def test_missing_file_in_mirror(shared_data, tmp_path):
    mirror = _bad_mirror(shared_data, tmp_path, lambda m: (m / "userid-profile.tsv").unlink())
    with pytest.raises(MusicrecError, match="missing userid-profile.tsv"):
        fetch("lastfm-1k-sample", str(tmp_path / "home"), mirror=mirror, progress=False)


def test_count_rows_handles_headers_blank_lines_and_no_final_newline(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_bytes(b"h\n\na\n\n\nb\r\nc")                  # non-empty lines: h, a, b, c
    assert count_rows(str(f), header=1) == 3
    assert count_rows(str(f), header=0) == 4
    f.write_bytes(b"\n\nh\na\n")
    assert count_rows(str(f), header=1) == 1


def _zip_spec(tmp_path, monkeypatch, rows=2):
    """A dataset whose official URL is a file:// zip built here (no network in tests)."""
    content = b"UserId\tSessionId\tItemId\tTime\tArtistId\n1\t1\t5\t1400000000\t9\n1\t1\t6\t1400000100\t9\n"
    (tmp_path / "src").mkdir()
    archive = tmp_path / "src" / "toy.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("toy/slice.0.txt", content)
        z.writestr("toy/readme.txt", b"not needed")
    spec = dataclasses.replace(DATASETS["30music-200ks-test"], name="toy", url=archive.as_uri(), archive="zip",
                               files=(FileSpec("slice.0.txt", None, rows),))
    monkeypatch.setitem(DATASETS, "toy", spec)


def test_download_and_extract_from_a_url(tmp_path, monkeypatch):
    _zip_spec(tmp_path, monkeypatch)
    path = fetch("toy", str(tmp_path / "home"), progress=False)
    assert sorted(os.listdir(path)) == [".musicrec-verified.json", "slice.0.txt"]


def test_download_with_wrong_row_count_fails_cleanly(tmp_path, monkeypatch):
    _zip_spec(tmp_path, monkeypatch, rows=3)
    with pytest.raises(MusicrecError, match="slice.0.txt has 2 rows, expected 3"):
        fetch("toy", str(tmp_path / "home"), progress=False)
    assert os.listdir(tmp_path / "home" / "datasets") == []


def test_unreachable_url_suggests_a_mirror(tmp_path, monkeypatch):
    spec = dataclasses.replace(DATASETS["hetrec-lastfm-2k"], name="gone",
                               url=(tmp_path / "no-such.zip").as_uri())
    monkeypatch.setitem(DATASETS, "gone", spec)
    with pytest.raises(MusicrecError, match="could not download .* pass --from DIR or set MUSICREC_DATA_MIRROR"):
        fetch("gone", str(tmp_path / "home"), progress=False)


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(MusicrecError, match="known datasets: hetrec-lastfm-2k"):
        fetch("movielens", str(tmp_path))


def test_marker_is_ignored_when_files_change(shared_data, tmp_path):
    path = fetch("lastfm-1k-sample", str(tmp_path), mirror=shared_data, progress=False)
    with open(os.path.join(path, "userid-profile.tsv"), "ab") as f:
        f.write(b"user_999999\tm\t\t\t\n")
    assert not is_cached("lastfm-1k-sample", str(tmp_path))
    # a damaged cache is replaced by a fresh verified copy
    fetch("lastfm-1k-sample", str(tmp_path), mirror=shared_data, progress=False)
    assert is_cached("lastfm-1k-sample", str(tmp_path))
    assert datasets.count_rows(os.path.join(path, "userid-profile.tsv")) == 992
