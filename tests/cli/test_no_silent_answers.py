"""Cases that used to exit 0 with a wrong or empty answer now stop with a one-line error, exit 2.

A three-track store, one split imported from files and one made by a protocol, and a
most-popular model trained on the imported one (each command through ``main``, in-process).
"""

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from cli_helpers import run, write_store

from musicrec.cli.main import main

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """{"store", "imported", "temporal", "model"}: u1 played every track, so the model has
    nothing left to recommend to them."""
    base = tmp_path_factory.mktemp("silent")
    plays = [dict(user_id=u, artist_id=10, track_id=100 + k % 3, play_count=1, source="x",
                  timestamp=T0 + timedelta(seconds=1000 * k + u)) for u in (1, 2, 3) for k in range(10)]
    store = write_store(base / "store", plays, dict(user_id=[1, 2, 3], source_id=["u1", "u2", "u3"]),
                        dict(artist_id=[10], source_id=["a10"], name=["Abba"]),
                        dict(track_id=[100, 101, 102], source_id=["t100", "t101", "t102"], name=["SOS", "Waterloo", "Fernando"],
                             artist_id=[10, 10, 10]))
    (base / "train.tsv").write_text("user_id\titem_id\nu1\tt100\nu1\tt101\nu1\tt102\nu2\tt100\nu2\tt101\nu3\tt100\n")
    (base / "test.tsv").write_text("user_id\titem_id\nu2\tt102\nu3\tt101\n")
    imported, temporal, model = (str(base / n) for n in ("imported", "temporal", "model"))
    argv_sets = [
        ["split", "import", store, "--train", str(base / "train.tsv"), "--test", str(base / "test.tsv"),
         "--out", imported],
        ["split", store, "--protocol", "temporal", "--out", temporal],
        ["train", "most-popular", "--split", imported, "--out", model],
    ]
    for argv in argv_sets:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert not exc.value.code, argv
    return {"store": store, "imported": imported, "temporal": temporal, "model": model, "base": base}


# ------------------------------------------------------------ 1. the split a model was trained on
def test_the_model_folder_records_its_split(world):
    with open(os.path.join(world["model"], "bundle.json")) as fh:
        meta = json.load(fh)
    assert meta["protocol"] == "import" and meta["store"] == world["store"] and meta["item_level"] == "track"
    assert meta["include_valid"] is False and meta["train_rows"] == 6 and len(meta["train_fingerprint"]) == 32


def test_evaluate_on_another_split_is_an_error(world, capsys):
    code, _, err = run(["evaluate", world["model"], "--split", world["imported"]], capsys)
    assert code == 0 and "warning" not in err
    code, _, err = run(["evaluate", world["model"], "--split", world["temporal"]], capsys)
    one_line_error(code, err, "trained on", "(import split of store", "not on", "(temporal split of store",
                   "--allow-other-split")
    code, out, _ = run(["evaluate", world["model"], "--split", world["temporal"], "--allow-other-split"], capsys)
    assert code == 0 and "most-popular" in out


def test_include_valid_models_are_checked_against_train_plus_valid(world, tmp_path, capsys):
    (tmp_path / "valid.tsv").write_text("user_id\titem_id\nu3\tt102\n")
    split, model = str(tmp_path / "split"), str(tmp_path / "model")
    base = world["base"]
    assert run(["split", "import", world["store"], "--train", str(base / "train.tsv"), "--test",
                str(base / "test.tsv"), "--valid", str(tmp_path / "valid.tsv"), "--out", split], capsys)[0] == 0
    assert run(["train", "most-popular", "--split", split, "--include-valid", "--out", model], capsys)[0] == 0
    assert json.load(open(os.path.join(model, "bundle.json")))["train_rows"] == 7
    code, _, err = run(["evaluate", model, "--split", split], capsys)
    assert code == 0, err
    # its validation part is training data for this model
    code, _, err = run(["evaluate", model, "--split", split, "--on", "valid"], capsys)
    one_line_error(code, err, "--include-valid", "--on test")
    # same training rows, no validation part: not the split the model was fitted on
    code, _, err = run(["evaluate", model, "--split", world["imported"]], capsys)
    one_line_error(code, err, "train + valid 7 rows", "train 6 rows")


def test_an_older_model_folder_warns_once_and_proceeds(world, tmp_path, capsys):
    import shutil

    old = str(tmp_path / "old")
    shutil.copytree(world["model"], old)
    meta = json.load(open(os.path.join(old, "bundle.json")))
    json.dump({k: meta[k] for k in ("item_level", "split", "protocol", "params")},
              open(os.path.join(old, "bundle.json"), "w"))
    code, out, err = run(["evaluate", old, "--split", world["temporal"]], capsys)
    assert code == 0 and "most-popular" in out
    assert err.count("warning:") == 1 and "does not record the split" in err


# ------------------------------------------------------------ 2. -k below 1
@pytest.mark.parametrize("argv, fragment", [
    (["recommend", "MODEL", "--user", "u2", "-k", "-1"], "-k must be at least 1, got -1"),
    (["recommend", "MODEL", "--seed", "SOS", "-k", "0"], "-k must be at least 1, got 0"),
    (["similar", "MODEL", "SOS", "-k", "-1"], "-k must be at least 1, got -1"),
    (["evaluate", "MODEL", "--split", "SPLIT", "--k", "0"], "--k values must be integers >= 1, got 0"),
    (["evaluate", "MODEL", "--split", "SPLIT", "--k", "-1"], "--k values must be integers >= 1, got -1"),
    (["evaluate", "MODEL", "--split", "SPLIT", "--k", "10", "0"], "--k values must be integers >= 1, got 0, 10"),
    (["compare", "--split", "SPLIT", "--models", "most-popular", "--k", "0"], "--k values must be integers >= 1"),
])
def test_k_below_one_is_an_error(world, capsys, argv, fragment):
    argv = [world["model"] if a == "MODEL" else world["imported"] if a == "SPLIT" else a for a in argv]
    code, out, err = run(argv, capsys)
    one_line_error(code, err, fragment)
    assert "top -1" not in out


def test_python_api_k_below_one_is_a_musicrec_error(world):
    from musicrec import MusicrecError
    from musicrec.serve.service import Service

    svc = Service.load(world["model"], one_off=True)
    for call in (lambda: svc.recommend_user("u2", k=0), lambda: svc.recommend_session([], ["SOS"], k=-1),
                 lambda: svc.similar("SOS", k=0),
                 lambda: svc.model.recommend_users([0], k=0), lambda: svc.model.similar_items([0], k=0)):
        with pytest.raises(MusicrecError, match="k must be an integer >= 1"):
            call()


# ------------------------------------------------------------ 4. nothing to recommend
def test_recommend_with_nothing_left_says_why(world, capsys):
    code, out, err = run(["recommend", world["model"], "--user", "u1"], capsys)
    one_line_error(code, err, "nothing to recommend for listener 'u1'", "all 3 items", "--include-seen")
    assert out == ""
    code, out, _ = run(["recommend", world["model"], "--user", "u1", "--include-seen"], capsys)
    assert code == 0 and "SOS" in out
    code, _, err = run(["recommend", world["model"], "--seed", "SOS", "--seed", "Waterloo", "--seed", "Fernando"],
                       capsys)
    one_line_error(code, err, "nothing to recommend for these seeds")
    code, out, _ = run(["recommend", world["model"], "--user", "u2"], capsys)
    assert code == 0 and "Fernando" in out
