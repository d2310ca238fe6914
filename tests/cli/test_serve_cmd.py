"""`musicrec serve` as a real process on loopback: it answers, shuts down cleanly on SIGTERM, and
refuses to listen on a public address without an API key."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import polars as pl
import pytest

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
    from musicrec.bundle import ModelBundle
    from musicrec.preprocess.split import make_split
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
    key_file.write_text("cli-test-key-of-16-chars\n")
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
                          headers={"X-API-Key": "cli-test-key-of-16-chars"}, timeout=10)
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


@pytest.mark.slow      # server processes
def test_bad_model_folder_is_a_one_line_error(tmp_path):
    proc = _serve(str(tmp_path / "missing"), "--port", str(_free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.startswith("error:") and "Traceback" not in err


def test_sigterm_lets_a_request_in_flight_finish(model_dir, tmp_path):
    """A request whose body is still arriving when SIGTERM comes is answered, and its plays stored."""
    from musicrec.store import Store

    store = str(tmp_path / "store")
    shutil.copytree(os.path.join(os.path.dirname(model_dir), "store"), store)
    port = _free_port()
    proc = _serve(model_dir, "--port", str(port), "--store", store)
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        plays = [{"item_id": "Madonna", "timestamp": 1_600_000_000 + 60 * i} for i in range(50)]
        body = json.dumps({"plays": plays}).encode()
        head = (f"POST /v1/users/2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[:50])
            time.sleep(0.5)                 # the server has the headers: the request is in flight
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None, "the server quit with a request in flight"
            sock.sendall(body[50:])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    status = answer.split(b"\r\n", 1)[0]
    assert b" 200 " in status, answer[:500]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["stored"] == 50
    assert Store(store).table("plays").filter(pl.col("source") == "api").height == 50, err
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err


def test_remote_model_folder_is_copied_locally_before_serving(model_dir, tmp_path, monkeypatch):
    """`musicrec serve s3://…/model` serves a local copy (memory:// stands in for the object store)."""
    import fsspec

    from musicrec import MusicrecError
    from musicrec.bundle import ModelBundle
    from musicrec.cli.serve_cmds import local_copy
    from musicrec.serve.service import Service

    monkeypatch.setenv("MUSICREC_HOME", str(tmp_path / "home"))
    fs = fsspec.filesystem("memory")
    fs.put(model_dir.rstrip("/") + "/", "/served-test/model/", recursive=True)
    local = local_copy("memory://served-test/model")
    assert local.startswith(str(tmp_path / "home"))
    assert sorted(os.listdir(local)) == sorted(os.listdir(model_dir))
    assert Service.load(local, one_off=True).recommend_user(ModelBundle.load(model_dir).users["source_id"][0], k=5)
    with pytest.raises(MusicrecError, match="not a model directory"):
        local_copy("memory://served-test/nothing-here")
