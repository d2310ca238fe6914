"""The direct path for plain recommendation requests (serve/fast_routes.py): every request, valid,
clumsy or hostile, gets the same status, bytes and metrics as through FastAPI, and the plain ones
really skip FastAPI's route."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from serve_helpers import TEST_HOSTS

from musicrec.serve import fast_routes, guards
from musicrec.serve.app import create_app


@pytest.fixture(scope="module")
def clients(ease_dir):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as fast, \
            TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS, fast_routes=False)) as slow:
        yield fast, slow


def _user(client) -> str:
    return client.app.state.holder.service.bundle.users["source_id"][0]


USER_QUERIES = ["", "?k=5", "?k=1000", "?k=1001", "?k=0", "?k=05", "?k=abc", "?k=5&exclude_seen=false",
                "?k=3&max_per_artist=1", "?diversity=0.5", "?k=5&k=6", "?k="]
SESSION_BODIES = [b"{}", b'{"recent_plays": ["Muse", "coldplay"], "k": 5}', b'{"seed_artists": ["Radiohead"]}',
                  b'{"seed_tags": ["rock"], "exclude_seen": false}', b'{"k": "10"}', b'{"k": true}',
                  b'{"k": 0}', b'{"k": 1001}', b'{"colour": "blue"}', b'{"recent_plays": ["no such artist zz9"]}',
                  b'{"recent_plays": "Muse"}', b"[1, 2]", b"null", b"", b"{not json", b'{"k": 1e400}',
                  b'{"diversity": 2}', b'{"max_per_artist": 1, "recent_plays": ["Muse"]}',
                  json.dumps({"recent_plays": ["Muse"] * (guards.FEW_NAMES + 1)}).encode()]


def _same(fast, slow, method, url, **kw):
    a, b = fast.request(method, url, **kw), slow.request(method, url, **kw)
    assert (a.status_code, a.content, a.headers.get("content-type")) == \
        (b.status_code, b.content, b.headers.get("content-type")), url
    return a


@pytest.mark.parametrize("query", USER_QUERIES)
def test_user_requests_answer_as_fastapi_does(clients, query):
    fast, slow = clients
    _same(fast, slow, "GET", f"/v1/users/{_user(fast)}/recommendations{query}")


@pytest.mark.parametrize("user", ["nobody-here", "a" * 301, "a%2Fb", "%20", "1"])
def test_odd_listener_ids_answer_as_fastapi_does(clients, user):
    fast, slow = clients
    _same(fast, slow, "GET", f"/v1/users/{user}/recommendations")


@pytest.mark.parametrize("body", SESSION_BODIES)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_session_requests_answer_as_fastapi_does(clients, body, content_type):
    fast, slow = clients
    _same(fast, slow, "POST", "/v1/recommendations", content=body, headers={"content-type": content_type})


def test_plain_requests_skip_fastapi_and_are_counted_the_same(ease_dir, monkeypatch):
    answered = []
    user_path, session_answer = fast_routes.FastRoutes._user, fast_routes.FastRoutes._session_answer

    async def spy_user(self, *args):
        answered.append(await user_path(self, *args))
        return answered[-1]

    def spy_session(self, body):
        answered.append(session_answer(self, body) is not None)
        return None if not answered[-1] else session_answer(self, body)

    monkeypatch.setattr(fast_routes.FastRoutes, "_user", spy_user)
    monkeypatch.setattr(fast_routes.FastRoutes, "_session_answer", spy_session)
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as fast, \
            TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS, fast_routes=False)) as slow:
        user = _user(fast)
        for client in (fast, slow):
            client.get(f"/v1/users/{user}/recommendations?k=5")
            client.get("/v1/users/nobody-here/recommendations")
            client.post("/v1/recommendations", json={"recent_plays": ["Muse"]})
            client.post("/v1/recommendations", json={"k": "ten"})
        assert answered == [True, False, True, False]

        def counts(client):
            return sorted(line for line in client.get("/metrics").text.splitlines()
                          if line.startswith("musicrec_requests_total"))
        assert counts(fast) == counts(slow)
        assert any('route="/v1/recommendations"' in line and 'status="422"' in line for line in counts(fast))


def test_the_api_key_still_guards_the_direct_path(ease_dir):
    with TestClient(create_app(ease_dir, api_key="s3cret", allowed_hosts=TEST_HOSTS)) as client:
        user = _user(client)
        assert client.get(f"/v1/users/{user}/recommendations").status_code == 401
        assert client.post("/v1/recommendations", json={}).status_code == 401
        ok = client.get(f"/v1/users/{user}/recommendations", headers={"x-api-key": "s3cret"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 10


def test_an_oversized_body_is_refused_before_the_direct_path(ease_dir):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS, max_body_bytes=100)) as client:
        resp = client.post("/v1/recommendations", content=b'{"recent_plays": [' + b'"Muse", ' * 40 + b'"Muse"]}')
        assert resp.status_code == 413 and "larger than 100 bytes" in resp.json()["error"]["message"]
