"""A listener's own exports through ``musicrec ingest``: zipped as delivered, and nameless
exports never merged into one listener."""

import json
import os
import shutil
import zipfile

import polars as pl
import pytest
from typer.testing import CliRunner

from musicrec.cli import main
from musicrec.store import Store

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
main._register()
runner = CliRunner()


def _nameless_export(folder, shift_days: int = 0) -> str:
    """The Spotify fixture without usernames (today's export format), plays moved by ``shift_days``."""
    import datetime as dt

    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(os.path.join(FIXTURES, "spotify")):
        records = json.load(open(os.path.join(FIXTURES, "spotify", name)))
        for r in records:
            if isinstance(r, dict):
                r.pop("username", None)
                if isinstance(r.get("ts"), str) and r["ts"].endswith("Z") and shift_days:
                    t = dt.datetime.fromisoformat(r["ts"][:-1]) + dt.timedelta(days=shift_days)
                    r["ts"] = t.isoformat() + "Z"
        with open(os.path.join(folder, name), "w") as fh:
            json.dump(records, fh)
    return str(folder)


def _zip(folder, out) -> str:
    """``folder`` zipped the way Spotify delivers it: files under one top folder."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(os.listdir(folder)):
            zf.write(os.path.join(folder, name), f"Spotify Extended Streaming History/{name}")
    return str(out)


def _ingest(path, store, *extra):
    return runner.invoke(main.app, ["ingest", "spotify-history", str(path), "--store", str(store), *extra])


def test_a_zipped_export_ingests_like_the_unzipped_one(tmp_path):
    plain = _ingest(os.path.join(FIXTURES, "spotify"), tmp_path / "a")
    zipped = _ingest(_zip(os.path.join(FIXTURES, "spotify"), tmp_path / "my_spotify_data.zip"), tmp_path / "b")
    assert plain.exit_code == 0 and zipped.exit_code == 0, zipped.output
    assert plain.stdout.splitlines()[:4] == zipped.stdout.splitlines()[:4]   # plays, users, artists, tracks
    a, b = Store(str(tmp_path / "a")), Store(str(tmp_path / "b"))
    assert a.table("plays").equals(b.table("plays"))
    # rejected rows name the zip and the member, not a temporary folder
    if "rejected rows:" in zipped.stdout:
        rejects = pl.read_csv(zipped.stdout.split("rejected rows:")[1].strip())
        assert rejects["file"].str.starts_with(str(tmp_path / "my_spotify_data.zip") + "/").all()


def test_a_zip_whose_member_would_land_outside_is_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../Streaming_History_Audio_2023_0.json", "[]")
    out = _ingest(bad, tmp_path / "s")
    assert out.exit_code == 2 and "outside its folder" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "Streaming_History_Audio_2023_0.json").exists()


def test_two_nameless_exports_need_user_names(tmp_path):
    first = _nameless_export(tmp_path / "anna")
    second = _nameless_export(tmp_path / "ben", shift_days=30)
    store = tmp_path / "s"
    assert _ingest(first, store).exit_code == 0
    again = _ingest(first, store)                   # the same export again: idempotent, no error
    assert again.exit_code == 0 and "0 added" in again.stdout
    refused = _ingest(second, store)
    assert refused.exit_code == 2 and "--user" in refused.output and "Traceback" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert Store(str(store)).table("users").height == 1            # nothing of the second export went in
    named = _ingest(second, store, "--user", "ben")
    assert named.exit_code == 0, named.output
    users = Store(str(store)).table("users")
    assert sorted(users["source_id"].to_list()) == ["ben", "me"]
    plays = Store(str(store)).table("plays")
    assert plays.group_by("user_id").len()["len"].to_list() == [plays.height // 2] * 2


def test_nameless_exports_of_two_folders_at_once_are_refused(tmp_path):
    _nameless_export(tmp_path / "both" / "anna")
    _nameless_export(tmp_path / "both" / "ben", shift_days=30)
    out = _ingest(tmp_path / "both", tmp_path / "s")
    assert out.exit_code == 2 and "--user" in out.output and "2 folders" in out.output


@pytest.mark.parametrize("member", ["listens/2023/1.jsonl"])
def test_a_zipped_listenbrainz_export_takes_its_user_from_user_json(tmp_path, member):
    listens = open(os.path.join(FIXTURES, "listenbrainz", "alice.jsonl")).read()
    listens = "\n".join(line.replace('"user_name": "alice", ', "") for line in listens.splitlines())
    path = tmp_path / "listenbrainz_carol.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("user.json", json.dumps({"user_id": 7, "username": "carol"}))
        zf.writestr(member, listens)
    out = runner.invoke(main.app, ["ingest", "listenbrainz", str(path), "--store", str(tmp_path / "s")])
    assert out.exit_code == 0, out.output
    assert Store(str(tmp_path / "s")).table("users")["source_id"].to_list() == ["carol"]
    shutil.rmtree(tmp_path / "s")
