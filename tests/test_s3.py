"""Storage anywhere: the pipeline on an S3-compatible endpoint (moto's server on loopback, started
here) gives exactly what it gives on local folders.

Credentials and the endpoint come only from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``), which botocore, and so
s3fs, read by themselves: musicrec has no S3 settings of its own.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

from musicrec import MusicrecError, fsio  # noqa: E402
from musicrec.bundle import ModelBundle  # noqa: E402
from musicrec.evaluate.protocols import evaluate  # noqa: E402
from musicrec.fsio import join, read_json  # noqa: E402
from musicrec.preprocess.split import make_split  # noqa: E402
from musicrec.preprocess.splitset import Split  # noqa: E402
from musicrec.serve.service import Service  # noqa: E402
from musicrec.store import TABLES, Store, ingest_path  # noqa: E402
from musicrec.train.fit import fit_model  # noqa: E402

BUCKET = "musicrec-test"
SECRET = "not-a-real-secret-5f2c9a"     # must never show up in any output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clear_s3_instances():
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()   # a cached client would keep an old endpoint


@pytest.fixture(scope="module")
def s3():
    """A fresh S3 endpoint on 127.0.0.1 with one bucket; the AWS_* variables point at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # no per-request log lines
    port = _free_port()
    # its own process: delta-rs holds the GIL while it waits for an answer, so a server thread in
    # this process could never answer it
    server = subprocess.Popen([sys.executable, "-c", "import sys, logging; from moto.server import ThreadedMotoServer;"
                               "logging.disable(logging.CRITICAL);"
                               f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False);"
                               "s.start(); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.2)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(key, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        _clear_s3_instances()
        import s3fs

        s3fs.S3FileSystem().mkdir(BUCKET)
        yield f"s3://{BUCKET}"
        _clear_s3_instances()
    server.stdin.close()
    server.terminate()
    server.wait(timeout=30)


def run_pipeline(root: str, shared_data: str) -> dict:
    """Ingest HetRec, split, train item-kNN, save, reload, evaluate and recommend under ``root``."""
    store, split_dir, model_dir = join(root, "store"), join(root, "split"), join(root, "model")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), store, partitions=4)
    made = make_split(store, "user-holdout", out=split_dir, seed=3)
    split = Split.load(split_dir)
    fitted, _ = fit_model("itemknn", split, {"neighbors": 50})
    ModelBundle(fitted, split.items, split.users, {"item_level": "artist", "split": split_dir}).save(model_dir)
    bundle = ModelBundle.load(model_dir)
    metrics = evaluate(bundle.model, split, ks=(10,)).metrics
    return {"store": Store(store), "made": made, "split": split, "bundle": bundle, "metrics": metrics,
            "arrays": {name: fsio.load_arrays(join(model_dir, name)) for name in ("state.npz", "interactions.npz")},
            "recs": [(c["item_id"], c["score"], c["reason"])
                     for c in Service(bundle, model_dir, one_off=True).recommend_user("2", k=10)]}


@pytest.fixture(scope="module")
def runs(s3, shared_data, tmp_path_factory):
    return {"local": run_pipeline(str(tmp_path_factory.mktemp("local")), shared_data),
            "s3": run_pipeline(join(s3, "run"), shared_data)}


def test_store_tables_are_identical(runs):
    local, remote = runs["local"]["store"], runs["s3"]["store"]
    assert remote.play_partitions()[0].startswith("s3://")
    for name in TABLES:
        assert local.table(name).equals(remote.table(name)), name
    assert remote.table("plays").height == 92_834


def test_split_frames_are_identical(runs):
    local, remote = runs["local"]["split"], runs["s3"]["split"]
    for part in ("train", "valid", "test", "items", "item_tags", "users"):
        assert getattr(local, part).equals(getattr(remote, part)), part
        assert getattr(remote, part).equals(getattr(runs["s3"]["made"], part)), part
    assert local.meta["counts"] == remote.meta["counts"]


def test_model_arrays_metrics_and_answers_are_identical(runs):
    local, remote = runs["local"], runs["s3"]
    for name in ("state.npz", "interactions.npz"):
        a, b = local["arrays"][name], remote["arrays"][name]
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert local["metrics"] == remote["metrics"] and local["metrics"]["ndcg@10"] > 0
    assert local["recs"] == remote["recs"] and len(local["recs"]) == 10
    # the bundle found the split's tags through the split's URL too
    assert remote["bundle"].item_tags.height > 0


def test_a_split_is_replaced_as_a_whole(s3, runs):
    url = join(s3, "replace")
    first = runs["s3"]["split"]
    first.save(url)
    assert Split.load(url).valid is not None
    Split(train=first.train, test=first.test, meta={"protocol": "x"}).save(url)
    again = Split.load(url)
    assert again.valid is None and again.meta["protocol"] == "x"   # no stale valid.parquet


def test_missing_things_are_one_line_errors(s3):
    with pytest.raises(MusicrecError, match="not a split folder"):
        Split.load(join(s3, "nothing-here"))
    with pytest.raises(MusicrecError, match="no such model folder"):
        ModelBundle.load(join(s3, "nothing-here"))
    with pytest.raises(MusicrecError, match="no musicrec store"):
        make_split(join(s3, "nothing-here"), "user-holdout")


def musicrec(*args):
    proc = subprocess.run([sys.executable, "-m", "musicrec.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "160"}, timeout=600)
    assert SECRET not in proc.stdout + proc.stderr
    return proc


def test_cli_on_s3_urls(s3, runs, shared_data):
    root = join(s3, "cli")
    store, split, model, metrics = (join(root, n) for n in ("store", "split", "model", "metrics.json"))
    steps = [
        ("ingest", "hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), "--store", store,
         "--partitions", "4"),
        ("split", store, "--protocol", "user-holdout", "--seed", "3", "--out", split),
        ("train", "itemknn", "--split", split, "--out", model, "--param", "neighbors=50"),
        ("evaluate", model, "--split", split, "--k", "10", "--json", metrics),
        ("recommend", model, "--user", "2", "-k", "5", "--json"),
    ]
    for args in steps:
        proc = musicrec(*args)
        assert proc.returncode == 0, (args[0], proc.stderr[-2000:])
    cards = json.loads(proc.stdout)
    assert len(cards) == 5 and all(c["reason"] for c in cards)
    assert Split.load(split).test.equals(runs["local"]["split"].test)
    assert read_json(metrics)["metrics"]["ndcg@10"] == pytest.approx(runs["local"]["metrics"]["ndcg@10"])
    proc = musicrec("recommend", join(root, "no-model"), "--user", "2")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "no such model folder" in proc.stderr
    assert not os.path.exists("s3:")      # nothing went to a local folder named like the URL
