"""`musicrec serve` as a real process on loopback: it answers, shuts down cleanly on SIGTERM, and
refuses to listen on a public address without an API key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

START_S = 60      # upper bound for the server to load the model and listen


def _serve(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "musicrec.cli.main", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(shared_data, tmp_path_factory) -> str:
    """A most-popular model on HetRec (trains instantly)."""
    from musicrec.preprocess.split import make_split
    from musicrec.serve.bundle import ModelBundle
    from musicrec.store import ingest_path
    from musicrec.train.fit import fit_model

    root = tmp_path_factory.mktemp("serve-cmd")
    store, split_dir, out = str(root / "store"), str(root / "split"), str(root / "model")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), store)
    split = make_split(store, "user-holdout", out=split_dir, seed=0, k_core_item=20)
    model, _ = fit_model("most-popular", split)
    ModelBundle(model, split.items, split.users, {"item_level": "artist", "split": split_dir}).save(out)
    return out


def test_serves_and_shuts_down_cleanly_on_sigterm(model_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("cli-test-key\n")
    port = _free_port()
    proc = _serve(model_dir, "--port", str(port), "--api-key-file", str(key_file))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        resp = httpx.post(f"{base}/v1/recommendations", json={"seed_artists": ["Madonna"], "k": 3},
                          headers={"X-API-Key": "cli-test-key"}, timeout=10)
        assert resp.status_code == 200 and len(resp.json()["items"]) == 3
        assert httpx.get(f"{base}/v1/search?q=madonna", timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn finishes in-flight requests, then re-raises the signal so the exit status says
    # "terminated by SIGTERM" (recent versions) or exits 0 (older ones): both are a clean stop
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err and "Application shutdown complete" in err and "Finished server process" in err


def test_refuses_a_public_address_without_a_key(model_dir, tmp_path):
    proc = _serve(model_dir, "--host", "0.0.0.0", "--port", str(_free_port()))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "refusing to serve on 0.0.0.0 without an API key" in err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    proc = _serve(model_dir, "--api-key-file", str(empty))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and err.startswith("error:") and "API key" in err


def test_bad_model_folder_is_a_one_line_error(tmp_path):
    proc = _serve(str(tmp_path / "missing"), "--port", str(_free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.startswith("error:") and "Traceback" not in err
