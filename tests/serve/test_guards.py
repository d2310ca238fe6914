"""What one request may ask of the server (serve.guards): names per request, fuzzy matching off the
event loop, range-checked body fields, the Host allow-list, the reload root, /health without paths,
the API key's length, and posted plays refused on a store that is not the model's."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from serve_helpers import TEST_HOSTS

from musicrec import MusicrecError
from musicrec.names import normalise
from musicrec.serve import guards
from musicrec.serve.app import create_app


def _clean(resp, code: int) -> str:
    body = resp.json()
    assert resp.status_code == code and set(body) == {"error"} and body["error"]["code"] == code, resp.text
    assert "Traceback" not in resp.text and "\n" not in body["error"]["message"]
    return body["error"]["message"]


@pytest.fixture(scope="module")
def client(ease_dir):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as c:
        yield c


# ---------------------------------------------------------------- names per request
def test_names_per_request_are_capped(client):
    assert client.post("/v1/recommendations", json={"recent_plays": ["Madonna"] * 200}).status_code == 200
    for field in ("recent_plays", "seed_artists"):
        msg = _clean(client.post("/v1/recommendations", json={field: ["Madonna"] * 201}), 422)
        assert field in msg and "200" in msg
    msg = _clean(client.post("/v1/recommendations", json={"seed_artists": ["x" * 301]}), 422)
    assert "300" in msg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_answers_while_many_misspelled_names_are_resolved(ease_dir):
    """A real server: one thread posts the most names a request may hold, every one a typo that
    needs fuzzy matching (made to cost 5 ms each, about 1 s in all); meanwhile /health answers
    within 100 ms, again and again."""
    app = create_app(ease_dir)
    index = app.state.holder.service.bundle.names
    typos = [t for t in (n[:3] + n[4:] + "q" for n in app.state.holder.service.names if len(n) >= 8)
             if index.find(t) is not None and normalise(t) not in index._by_norm][:guards.MAX_NAMES]
    assert len(typos) >= 100                                # a letter dropped, one added: still close
    find = index.find

    def slow_find(query):       # as on a catalogue of a million names: 5 ms of Python per typo
        until = time.perf_counter() + 0.005
        while time.perf_counter() < until:
            pass
        return find(query)

    index.find = slow_find
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and runner.is_alive(), "server did not start"
            time.sleep(0.05)
        done = threading.Event()
        answer = {}

        def post():
            try:
                answer["resp"] = httpx.post(f"{base}/v1/recommendations", json={"recent_plays": typos, "k": 5},
                                            timeout=120)
            finally:
                done.set()

        with httpx.Client(base_url=base, timeout=10) as health:
            health.get("/health")                       # connection open before the heavy request
            started = time.monotonic()
            poster = threading.Thread(target=post)
            poster.start()
            waits = []
            while not done.is_set() and time.monotonic() - started < 120:
                t = time.perf_counter()
                assert health.get("/health").status_code == 200
                waits.append(time.perf_counter() - t)
                time.sleep(0.01)
            took = time.monotonic() - started
            poster.join(timeout=120)
        assert answer["resp"].status_code == 200, answer["resp"].text
        # the worker thread holds the GIL in 5 ms slices, so a rare check waits a few slices more (once
        # 527 ms on a shared 2-core CI machine): the bound is on the 90th percentile; on the event loop
        # the heavy request would hold every check for its whole duration, which the cap rules out
        waits.sort()
        p90 = waits[int(0.9 * (len(waits) - 1))]
        assert len(waits) >= 5 and p90 < 0.1 and waits[-1] < 0.75 * took, \
            (f"/health took {p90 * 1000:.0f} ms (90th percentile), up to {waits[-1] * 1000:.0f} ms ({len(waits)} "
             f"checks during a {took * 1000:.0f} ms request)")
    finally:
        server.should_exit = True
        runner.join(timeout=30)


# ---------------------------------------------------------------- body fields in range
def test_ms_played_beyond_int64_or_negative_is_422_and_the_connection_stays(als_dir, store_copy):
    with TestClient(create_app(als_dir, store_url=store_copy, allowed_hosts=TEST_HOSTS)) as c:
        for ms in (2**63, 10**30, -1, 1e30):
            msg = _clean(c.post("/v1/users/2/events", json={"plays": [{"item_id": "Madonna", "ms_played": ms}]}), 422)
            assert "ms_played" in msg
        resp = c.post("/v1/users/2/events", json={"plays": [{"item_id": "Madonna", "ms_played": 2**63 - 1}]})
        assert resp.status_code == 200


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00",
                                   "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", 4_102_444_800, -1, 2**70,
                                   3e10, "4102444800", "nan", True])
def test_timestamps_outside_1970_to_2100_are_refused_on_every_path(als_dir, store_copy, stamp):
    with TestClient(create_app(als_dir, store_url=store_copy, allowed_hosts=TEST_HOSTS)) as c:
        msg = _clean(c.post("/v1/users/2/events", json={"plays": [{"item_id": "Madonna", "timestamp": stamp}]}), 422)
        assert "timestamp" in msg


def test_timestamps_in_range_are_read_as_utc():
    import datetime as dt

    assert guards.timestamp_after(guards.timestamp_before(0)) == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert guards.timestamp_before("1600000000.5").timestamp() == 1600000000.5
    assert guards.timestamp_after(dt.datetime(2024, 1, 1, 12)) == dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert guards.TIME_MAX.year == 2100 and guards.TIME_MIN.year == 1970


@pytest.mark.parametrize("body", [b'{"max_per_artist": 1000000000000000000000000000000}', b'{"diversity": NaN}',
                                  b'{"diversity": Infinity}', b'{"k": 18446744073709551616}'])
def test_other_numbers_out_of_range(client, body):
    _clean(client.post("/v1/recommendations", content=body, headers={"Content-Type": "application/json"}), 422)


# ---------------------------------------------------------------- posted plays and the store
def test_posting_to_a_store_of_another_catalogue_is_refused(gru_dir, hetrec, tmp_path):
    """A 30Music model over the HetRec store: its track ids mean other things there."""
    from musicrec.store import Store

    store = str(tmp_path / "store")
    shutil.copytree(hetrec["store"], store)
    n = Store(store).table("plays").height
    with TestClient(create_app(gru_dir, store_url=store, allowed_hosts=TEST_HOSTS)) as c:
        svc = c.app.state.holder.service
        track = int(svc.item_ids[0])
        for _ in range(2):
            msg = _clean(c.post("/v1/users/newbie/events", json={"plays": [{"item_id": track}]}), 409)
            assert "another store" in msg and store not in msg
        assert _clean(c.get("/v1/users/newbie/recommendations"), 404)       # nothing was recorded either
    assert Store(store).table("plays").height == n


# ---------------------------------------------------------------- hygiene
def test_foreign_host_headers_get_400(ease_dir):
    app = create_app(ease_dir)                              # production defaults: loopback names only
    with TestClient(app, base_url="http://localhost:8000") as c:
        assert c.get("/health").status_code == 200
        for host in ("127.0.0.1", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
            assert c.get("/health", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "testserver"):
            msg = _clean(c.get("/health", headers={"Host": host}), 400)
            assert "--allowed-host" in msg
        assert _clean(c.post("/admin/reload", headers={"Host": "evil.example"}), 400)
    with TestClient(create_app(ease_dir, allowed_hosts=["music.example", "*.lan"]),
                    base_url="http://music.example") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": "box.lan"}).status_code == 200
        assert c.get("/health", headers={"Host": "other.example"}).status_code == 400
    assert "[fe80::1]" in guards.allowed_hosts(["fe80::1"]) and guards.bind_hosts("0.0.0.0") == []
    with pytest.raises(MusicrecError):
        guards.allowed_hosts(["a.*.b"])


def test_reload_stays_under_the_root_and_keeps_the_old_model_on_any_failure(ease_dir, als_dir, tmp_path,
                                                                         monkeypatch):
    root = os.path.dirname(ease_dir)
    outside = str(tmp_path / "elsewhere")
    shutil.copytree(als_dir, outside)
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as c:
        refused = [_clean(c.post("/admin/reload", json={"model_dir": d}), 403)
                   for d in (outside, "/no/such/folder", "../" * 20 + "etc", "http://127.0.0.1:9/model",
                             "file:///etc", os.path.join(root, "..", "..", "x"))]
        assert len(set(refused)) == 1 and outside not in refused[0]   # nothing said about what exists
        assert _clean(c.post("/admin/reload", json={"model_dir": "x" * 5000}), 422)
        assert c.get("/health").json()["model"] == "ease"
        # relative to the root, and absolute under it
        assert c.post("/admin/reload", json={"model_dir": os.path.basename(als_dir)}).json()["model"] == "als"
        assert c.post("/admin/reload", json={"model_dir": ease_dir}).json()["model"] == "ease"

        def boom(*args, **kwargs):
            raise RecursionError("maximum recursion depth exceeded")

        with monkeypatch.context() as m:
            m.setattr("musicrec.serve.app.Service.load", boom)
            msg = _clean(c.post("/admin/reload", json={"model_dir": als_dir}), 422)
        assert "previous model" in msg
        assert c.get("/health").json()["model"] == "ease"
        assert c.post("/v1/recommendations", json={"seed_artists": ["Madonna"], "k": 3}).status_code == 200
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS, reload_root=str(tmp_path))) as c:
        assert c.post("/admin/reload", json={"model_dir": "elsewhere"}).json()["model"] == "als"
        assert _clean(c.post("/admin/reload", json={"model_dir": als_dir}), 403)
    with pytest.raises(MusicrecError, match="reload-root"):
        create_app(ease_dir, reload_root=str(tmp_path / "missing"))


def test_api_keys_need_16_characters(tmp_path):
    from musicrec.cli.serve_cmds import read_api_key

    short = tmp_path / "short"
    short.write_text("fifteen-chars-x\n")
    with pytest.raises(MusicrecError, match="at least 16") as err:
        read_api_key(str(short))
    assert "\n" not in str(err.value)
    ok = tmp_path / "ok"
    ok.write_text("sixteen-chars-xy\n")
    assert read_api_key(str(ok)) == "sixteen-chars-xy"
