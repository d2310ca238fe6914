import json
import os
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from cli_helpers import run, write_store

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    """3 users x 10 timed plays of 3 tracks, original ids "u1".."u3" and "t100".."t102"."""
    plays = [dict(user_id=u, artist_id=10, track_id=100 + k % 3, play_count=1, source="x",
                  timestamp=T0 + timedelta(seconds=1000 * k + u)) for u in (1, 2, 3) for k in range(10)]
    return write_store(tmp_path / "store", plays, dict(user_id=[1, 2, 3], source_id=["u1", "u2", "u3"]),
                       dict(artist_id=[10], source_id=["a10"], name=["Abba"]),
                       dict(track_id=[100, 101, 102], source_id=["t100", "t101", "t102"], artist_id=[10, 10, 10]))


def test_split_with_protocol(store, tmp_path, capsys):
    out = str(tmp_path / "split")
    code, stdout, _ = run(["split", store, "--protocol", "temporal", "--out", out,
                           "--test-frac", "0.2", "--valid-frac", "0.1"], capsys)
    assert code == 0
    assert "train" in stdout and "test" in stdout and "duplicates: 0" in stdout
    with open(os.path.join(out, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["protocol"] == "temporal" and meta["item_level"] == "track"
    assert meta["counts"]["test"] == 6          # the last 20 % of 30 plays


def test_split_import(store, tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("user_id\titem_id\nu1\tt100\nu1\tt101\nu2\tt100\n")
    (tmp_path / "test.csv").write_text("user_id,item_id\nu2,t101\nnobody,t999\n")
    out = str(tmp_path / "imported")
    code, stdout, _ = run(["split", "import", store, "--train", str(tmp_path / "train.tsv"),
                           "--test", str(tmp_path / "test.csv"), "--out", out], capsys)
    assert code == 0, stdout
    assert "unknown to the store" in stdout
    with open(os.path.join(out, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["protocol"] == "import" and meta["unknown"]["users"] == 1 and meta["unknown"]["items"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "random"], "unknown split protocol 'random'; choose one of: user-holdout"),
    (["--protocol", "user-holdout", "--test-days", "2"], "--test-days do(es) not apply to protocol user-holdout"),
    ([], "--protocol is required"),
    (["--protocol", "temporal", "--train", "x.tsv"], "belong to `musicrec split import`"),
    (["--protocol", "user-holdout", "--n-seeds", "3"], "--n-seeds do(es) not apply to protocol user-holdout"),
])
def test_split_errors_are_one_line(store, tmp_path, capsys, argv, message):
    code, _, err = run(["split", store, "--out", str(tmp_path / "s"), *argv], capsys)
    assert code == 2
    assert err.strip() == f"error: {message}" or (err.startswith("error: ") and message in err)
    assert len(err.strip().splitlines()) == 1


def test_split_import_errors(store, tmp_path, capsys):
    code, _, err = run(["split", "import", store, "--test", "t.csv", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "needs --train and --test" in err
    code, _, err = run(["split", str(tmp_path / "nostore"), "--protocol", "temporal", "--out", str(tmp_path / "s")],
                       capsys)
    assert code == 2 and "no musicrec store here" in err
    (tmp_path / "bad.csv").write_text("user,item_id\n1,2\n")
    code, _, err = run(["split", "import", store, "--train", str(tmp_path / "bad.csv"), "--test",
                        str(tmp_path / "bad.csv"), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "missing required column(s) user_id" in err


def test_user_coldstart_seeds_from_the_cli(tmp_path, capsys, shared_data):
    from musicrec.store import ingest_path

    store = str(tmp_path / "store")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), store)
    out = str(tmp_path / "cold")
    code, _, err = run(["split", store, "--protocol", "user-coldstart", "--n-seeds", "5", "--out", out], capsys)
    assert code == 0, err
    with open(os.path.join(out, "meta.json")) as fh:
        meta = json.load(fh)
    seeds = pl.DataFrame(meta["seeds"])
    assert seeds.height and seeds.group_by("user_id").len()["len"].unique().to_list() == [5]


def _store(path, plays):
    users = sorted({p["user_id"] for p in plays})
    return write_store(path, plays, dict(user_id=users, source_id=[f"u{u}" for u in users]),
                       dict(artist_id=list(range(10, 20)), name=[f"a{a}" for a in range(10, 20)]),
                       dict(track_id=[100], artist_id=[10]))


@pytest.mark.parametrize("users, argv, message", [
    # one listener: every held-out artist is theirs alone, so none is in the training part
    ([1], ["--protocol", "user-holdout", "--item", "artist"],
     "the test part holds only items no training row has: the store has 1 listener after cleaning, so no held-out artist is in anyone's "
     "training plays; user-holdout needs more listeners"),
    # at track level only one play per listener is left
    ([1, 2, 3], ["--protocol", "user-holdout", "--item", "track"],
     "the test part is empty: 27 of 30 plays have no track id at --item track level; try --item artist"),
    # too few listeners share artists for a validation part (the test part alone is fine)
    ([1, 2, 3], ["--protocol", "user-holdout", "--item", "artist", "--valid-frac", "0.04"],
     "the validation part is empty: user-holdout held out no rows for it"),
])
def test_an_empty_test_or_validation_part_is_an_error(tmp_path, capsys, users, argv, message):
    plays = [dict(user_id=u, artist_id=10 + k, track_id=100 if k == 0 else None, play_count=1, source="x",
                  timestamp=T0 + timedelta(seconds=1000 * k + u)) for u in users for k in range(10)]
    store = _store(tmp_path / "store", plays)
    out = tmp_path / "split"
    code, _, err = run(["split", store, "--out", str(out), *argv], capsys)
    assert code == 2 and err.startswith(f"error: {message}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    if "--valid-frac" in argv:       # no validation part by design is fine
        code, _, err = run(["split", store, "--out", str(out), *argv[:-1], "0"], capsys)
        assert code == 0 and not err, err


def test_split_import_of_an_empty_part_is_an_error(store, tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("user_id\titem_id\nu1\tt100\n")
    (tmp_path / "test.tsv").write_text("user_id\titem_id\n")
    code, _, err = run(["split", "import", store, "--train", str(tmp_path / "train.tsv"), "--test",
                        str(tmp_path / "test.tsv"), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: the test part is empty: {tmp_path / 'test.tsv'} has a header but no rows")


def test_drop_unseen_flag_applies_to_user_protocols_only(tmp_path, capsys):
    # listener 1 alone plays artists 30-39, so their held-out artists are never in training
    plays = [dict(user_id=u, artist_id=(30 + k if u == 1 else 10 + k), track_id=None, play_count=1, source="x",
                  timestamp=T0 + timedelta(seconds=1000 * k + u)) for u in (1, 2, 3, 4) for k in range(10)]
    store = _store(tmp_path / "store", plays)
    code, out_keep, _ = run(["split", store, "--out", str(tmp_path / "keep"), "--protocol", "user-holdout",
                             "--item", "artist"], capsys)
    code_drop, _, _ = run(["split", store, "--out", str(tmp_path / "drop"), "--protocol", "user-holdout",
                           "--item", "artist", "--drop-unseen"], capsys)
    assert code == 0 and code_drop == 0
    from musicrec.preprocess.splitset import Split

    keep, drop = Split.load(str(tmp_path / "keep")), Split.load(str(tmp_path / "drop"))
    n_unseen = keep.meta["unseen_in_train"]["test"]
    assert n_unseen >= 2 and "kept (standard protocol" in out_keep
    assert keep.test.height == drop.test.height + n_unseen
    assert not set(drop.test["item_id"]) - set(drop.train["item_id"])
    code, _, err = run(["split", store, "--out", str(tmp_path / "s"), "--protocol", "session-lastday",
                        "--drop-unseen"], capsys)
    assert code == 2 and "--drop-unseen do(es) not apply to protocol session-lastday" in err
