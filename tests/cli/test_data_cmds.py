"""``musicrec datasets list|fetch`` and ``musicrec ingest``: output, exit codes, one-line errors."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from musicrec.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
main._register()
runner = CliRunner()


def test_register_is_idempotent():
    n = len(main.app.registered_commands) + len(main.app.registered_groups)
    main._register()
    assert len(main.app.registered_commands) + len(main.app.registered_groups) == n


def test_datasets_list_shows_cache_state(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICREC_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    out = runner.invoke(main.app, ["datasets", "list"])
    assert out.exit_code == 0, out.output
    assert "hetrec-lastfm-2k" in out.stdout and "121,547" in out.stdout and "yes" not in out.stdout
    fetched = runner.invoke(main.app, ["datasets", "fetch", "lastfm-1k-sample", "--from", shared_data])
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout.strip() == os.path.join(str(tmp_path), "datasets", "lastfm-1k-sample")
    out = runner.invoke(main.app, ["datasets", "list"])
    line = next(l for l in out.stdout.splitlines() if "lastfm-1k-sample" in l)
    assert "yes" in line


def test_datasets_list_shows_official_urls_and_licences(tmp_path, monkeypatch):
    from musicrec.ingest.datasets import DATASETS

    monkeypatch.setenv("MUSICREC_HOME", str(tmp_path))
    out = runner.invoke(main.app, ["datasets", "list"])
    assert out.exit_code == 0, out.output
    for ds in DATASETS.values():
        assert f"url:      {ds.url}" in out.stdout and f"licence:  {ds.licence}" in out.stdout


def test_ingest_a_dataset_by_name_reads_the_fetched_copy_in_the_home(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICREC_HOME", str(tmp_path / "home"))
    store = str(tmp_path / "store")
    before = runner.invoke(main.app, ["ingest", "lastfm-1k-sample", "--store", store])
    assert before.exit_code == 2
    assert "run `musicrec datasets fetch lastfm-1k-sample` first" in before.output
    assert runner.invoke(main.app, ["datasets", "fetch", "lastfm-1k-sample", "--from", shared_data]).exit_code == 0
    out = runner.invoke(main.app, ["ingest", "lastfm-1k-sample", "--store", store])
    assert out.exit_code == 0, out.output
    assert "plays: 5,000 added" in out.stdout
    # a reader name still needs the path
    no_path = runner.invoke(main.app, ["ingest", "listenbrainz", "--store", store])
    assert no_path.exit_code == 2 and "give the file or folder to read" in no_path.output


def test_fetch_uses_the_mirror_environment_variable(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICREC_HOME", str(tmp_path))
    monkeypatch.setenv("MUSICREC_DATA_MIRROR", shared_data)
    out = runner.invoke(main.app, ["datasets", "fetch", "30music-200ks-test"])
    assert out.exit_code == 0 and out.stdout.strip().endswith("30music-200ks-test")


@pytest.mark.slow      # a CLI process
def test_ingest_prints_counts_and_rejects_path(tmp_path):
    store = str(tmp_path / "store")
    out = runner.invoke(main.app, ["ingest", "listenbrainz", os.path.join(FIXTURES, "listenbrainz"), "--store", store])
    assert out.exit_code == 0, out.output
    assert "plays: 14 added, 0 already there, 2 rejected" in out.stdout
    assert "artists: 7 new, 7 in store" in out.stdout
    rejects = out.stdout.strip().splitlines()[-1].split("rejected rows: ")[1]
    assert os.path.isfile(rejects) and rejects.startswith(os.path.join(store, "rejects", "listenbrainz-"))
    again = runner.invoke(main.app, ["ingest", "listenbrainz", os.path.join(FIXTURES, "listenbrainz"),
                                     "--store", store, "--user", "alice"])
    assert "plays: 0 added, 14 already there, 2 rejected" in again.stdout


@pytest.mark.slow      # a CLI process
def test_ingest_csv_with_map_and_source_name(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("listener,band,when\nann,Bonobo,1577836800\nann,Bonobo,not-a-time\n")
    out = runner.invoke(main.app, ["ingest", "csv", str(f), "--store", str(tmp_path / "s"), "--map", "user=listener",
                                   "--map", "artist_name=band", "--map", "timestamp=when", "--source-name", "mine"])
    assert out.exit_code == 0, out.output
    assert "plays: 1 added, 0 already there, 1 rejected" in out.stdout
    bad = runner.invoke(main.app, ["ingest", "csv", str(f), "--store", str(tmp_path / "s"), "--map", "user"])
    assert bad.exit_code == 2 and "--map wants canonical=column" in bad.output


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "musicrec.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.slow      # a CLI process per case
@pytest.mark.parametrize("args", [
    ["ingest", "30music", "/no/such/folder", "--store", "{tmp}/s"],            # missing
    ["ingest", "spotify-history", os.path.join(FIXTURES, "listenbrainz"), "--store", "{tmp}/s"],  # wrong kind
    ["ingest", "listenbrainz", "{tmp}/empty.jsonl", "--store", "{tmp}/s"],     # empty
    ["ingest", "lastfm-2k", "{tmp}", "--store", "{tmp}/s"],                    # unknown source
    ["datasets", "fetch", "movielens"],                                       # unknown dataset
])
def test_bad_input_exits_2_with_one_error_line(tmp_path, args):
    (tmp_path / "empty.jsonl").write_text("")
    proc = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], env={"MUSICREC_HOME": str(tmp_path)})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow      # a CLI process
def test_partial_rejects_still_exit_0(tmp_path):
    proc = _cli("ingest", "spotify-history", os.path.join(FIXTURES, "spotify"), "--store", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    assert "plays: 12 added" in proc.stdout and "skipped (not music): 1 podcast episodes" in proc.stdout
    assert "Traceback" not in proc.stderr
