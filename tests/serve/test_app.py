"""The HTTP API through FastAPI's TestClient: every endpoint, every error case, auth, reload, metrics."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time

import polars as pl
import pytest
from fastapi.testclient import TestClient
from serve_helpers import TEST_HOSTS, TINY, train_bundle

from musicrec.models.registry import MODELS
from musicrec.serve.app import create_app
from musicrec.store import Store

KEY = "s3cret-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _is_clean_error(resp, code: int) -> bool:
    """The JSON error shape, with the status, a message, and no trace of internals."""
    body = resp.json()
    return (resp.status_code == code and set(body) == {"error"} and body["error"]["code"] == code
            and isinstance(body["error"]["message"], str) and body["error"]["message"]
            and "Traceback" not in resp.text and 'File "' not in resp.text)


@pytest.fixture(scope="module")
def client(ease_dir):
    with TestClient(create_app(ease_dir, api_key=KEY, max_body_bytes=4096, allowed_hosts=TEST_HOSTS)) as c:
        yield c


@pytest.fixture(scope="module")
def user(client) -> str:
    return client.app.state.holder.service.bundle.users["source_id"][0]


# ---------------------------------------------------------------- endpoints
def test_health_needs_no_key(client, ease_dir):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "ease" and body["n_items"] > 0
    assert body["model_dir"] == os.path.basename(ease_dir) and body["version"]       # no path of the machine
    assert "store" not in body and ease_dir not in str(body) and body["accepts_plays"] is True


def test_user_recommendations(client, user):
    resp = client.get(f"/v1/users/{user}/recommendations", params={"k": 7}, headers=AUTH)
    body = resp.json()
    assert resp.status_code == 200 and body["user_id"] == user and body["model"] == "ease"
    assert len(body["items"]) == 7
    assert all(set(c) == {"item_id", "source_id", "name", "artist", "tags", "score", "reason"} for c in body["items"])
    capped = client.get(f"/v1/users/{user}/recommendations?k=5&exclude_seen=false&max_per_artist=1", headers=AUTH)
    assert capped.status_code == 200 and len(capped.json()["items"]) == 5


def test_session_recommendations(client):
    body = {"seed_artists": ["Radiohead"], "recent_plays": ["Muse", "coldplay"], "k": 5}
    resp = client.post("/v1/recommendations", json=body, headers=AUTH)
    names = [c["name"] for c in resp.json()["items"]]
    assert resp.status_code == 200 and len(names) == 5
    assert not {"Radiohead", "Muse", "Coldplay"} & set(names)
    popular = client.post("/v1/recommendations", json={}, headers=AUTH).json()["items"]
    assert len(popular) == 10 and popular[0]["reason"] == "popular now"


def test_onboarding_by_tags(client):
    """ "I like hip hop": the genre's best-known artists stand in as seeds."""
    bundle = client.app.state.holder.service.bundle
    resp = client.post("/v1/recommendations", json={"seed_tags": ["Hip Hop"], "k": 10, "exclude_seen": False},
                       headers=AUTH)
    assert resp.status_code == 200
    items = resp.json()["items"]
    spellings = ["hip-hop", "hip hop", "hiphop"]
    tagged = set(bundle.item_tags.filter(bundle.item_tags["tag"].is_in(spellings))["item_id"].to_list())
    # most answers are artists listeners tagged hip-hop, in any spelling
    assert len({c["item_id"] for c in items} & tagged) >= 6, [c["name"] for c in items]
    # the listener named a genre, not these artists: reasons never say "you like" about them
    assert not any("you like" in c["reason"] for c in items), [c["reason"] for c in items]
    assert any(c["reason"].startswith("close to") and "hip-hop" in c["reason"] for c in items), \
        [c["reason"] for c in items]
    unknown = client.post("/v1/recommendations", json={"seed_tags": ["zzqx no such genre"]}, headers=AUTH)
    assert _is_clean_error(unknown, 404) and "unknown tag" in unknown.json()["error"]["message"]


def test_similar_items_by_id_or_name_even_with_a_slash(client):
    hit = client.get("/v1/search", params={"q": "madonna"}, headers=AUTH).json()["items"][0]
    by_id = client.get(f"/v1/items/{hit['item_id']}/similar?k=4", headers=AUTH).json()
    by_name = client.get("/v1/items/Madonna/similar?k=4", headers=AUTH).json()
    assert by_id == by_name and by_id["item"]["name"] == "Madonna" and len(by_id["items"]) == 4
    acdc = client.get("/v1/items/AC%2FDC/similar", headers=AUTH)
    assert acdc.status_code == 200 and acdc.json()["item"]["name"] == "AC/DC"


def test_search(client):
    body = client.get("/v1/search?q=beatles&limit=3", headers=AUTH).json()
    assert body["query"] == "beatles" and body["items"][0]["name"] == "The Beatles" and len(body["items"]) <= 3
    assert set(body["items"][0]) == {"item_id", "source_id", "name", "artist", "tags"}


def test_docs_and_openapi(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/metrics", "/v1/users/{user_id}/recommendations", "/v1/recommendations",
                 "/v1/items/{item_id}/similar", "/v1/search", "/v1/users/{user_id}/events", "/admin/reload"):
        assert path in paths


def test_web_page_is_served_without_a_key(client):
    index = client.get("/")
    if index.status_code == 404:
        pytest.skip("the web page is not in this checkout")
    assert index.status_code == 200 and "<html" in index.text.lower()
    assert client.get("/static/app.js").status_code == 200


# ---------------------------------------------------------------- errors
def test_auth_missing_wrong_and_both_header_styles(client, user):
    url = f"/v1/users/{user}/recommendations"
    missing = client.get(url)
    assert _is_clean_error(missing, 401) and missing.headers["www-authenticate"] == "Bearer"
    assert _is_clean_error(client.get(url, headers={"X-API-Key": "wrong"}), 401)
    assert _is_clean_error(client.get(url, headers={"Authorization": "Bearer wrong"}), 401)
    assert _is_clean_error(client.get(url, headers={"Authorization": f"Basic {KEY}"}), 401)
    assert client.get(url, headers={"X-API-Key": KEY}).status_code == 200
    assert client.get(url, headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    # auth comes before parsing: a malformed body without a key is 401, not 422
    assert _is_clean_error(client.post("/v1/recommendations", content=b"{not json"), 401)
    for path in ("/metrics", "/v1/search?q=a", "/admin/reload"):
        assert client.request("POST" if "admin" in path else "GET", path).status_code == 401


def test_not_found(client, user):
    assert _is_clean_error(client.get("/v1/users/no-such-user/recommendations", headers=AUTH), 404)
    resp = client.get("/v1/items/qqqzzzxx/similar", headers=AUTH)
    assert _is_clean_error(resp, 404) and "qqqzzzxx" in resp.json()["error"]["message"]
    resp = client.post("/v1/recommendations", json={"recent_plays": ["qqqzzzxx"]}, headers=AUTH)
    assert _is_clean_error(resp, 404)
    assert _is_clean_error(client.get("/v1/nothing-here", headers=AUTH), 404)
    huge = 10**30                                     # no int64 store id: a name that matches nothing
    assert _is_clean_error(client.get(f"/v1/items/{huge}/similar", headers=AUTH), 404)
    assert _is_clean_error(client.get(f"/v1/users/{huge}/recommendations", headers=AUTH), 404)
    assert _is_clean_error(client.post("/v1/recommendations", json={"recent_plays": [huge]}, headers=AUTH), 404)


@pytest.mark.parametrize("query", ["k=0", "k=1001", "k=abc", "k=-3", "max_per_artist=0", "diversity=2",
                                   "exclude_seen=maybe"])
def test_invalid_query_parameters(client, user, query):
    resp = client.get(f"/v1/users/{user}/recommendations?{query}", headers=AUTH)
    assert _is_clean_error(resp, 422)


@pytest.mark.parametrize("path", ["/v1/items/Madonna/similar?k=0", "/v1/items/Madonna/similar?k=1001", "/v1/search",
                                  "/v1/search?q=", "/v1/search?q=" + "x" * 201, "/v1/search?q=a&limit=0"])
def test_invalid_parameters_elsewhere(client, path):
    assert _is_clean_error(client.get(path, headers=AUTH), 422)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"k": 0}', b'{"k": 5000}', b'{"recent_plays": "Muse"}',
                                  b'{"recent_plays": [1.5]}', b'{"seed_artists": [null]}', b'{"kk": 3}'])
def test_malformed_bodies(client, body):
    resp = client.post("/v1/recommendations", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert _is_clean_error(resp, 422)


def test_oversized_bodies(client):
    big = {"recent_plays": ["Muse" * 20] * 200}       # about 16 kB > 4096
    assert _is_clean_error(client.post("/v1/recommendations", json=big, headers=AUTH), 413)

    def chunks():                                     # no Content-Length: counted while streaming
        for _ in range(10):
            yield b" " * 1000
    resp = client.post("/v1/recommendations", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert _is_clean_error(resp, 413)


def test_internal_errors_say_nothing_about_internals(ease_dir, monkeypatch, caplog):
    app = create_app(ease_dir, allowed_hosts=TEST_HOSTS)
    svc = app.state.holder.service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(svc, "recommend_session", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        resp = c.post("/v1/recommendations", json={"recent_plays": ["Muse"]})
    assert _is_clean_error(resp, 500) and "secret" not in resp.text
    assert "secret internal detail" in caplog.text                  # logged server-side


# ---------------------------------------------------------------- events, reload, metrics
def test_events_are_stored_and_reflected_at_once(als_dir, store_copy):
    with TestClient(create_app(als_dir, store_url=store_copy, allowed_hosts=TEST_HOSTS)) as c:
        svc = c.app.state.holder.service
        user = svc.bundle.users["source_id"][7]
        url = f"/v1/users/{user}/recommendations?k=10"
        before = [x["item_id"] for x in c.get(url).json()["items"]]
        plays = [{"item_id": str(i), "timestamp": f"2024-06-01T10:0{n}:00Z"} for n, i in enumerate(before[:3])]
        resp = c.post(f"/v1/users/{user}/events", json={"plays": plays})
        assert resp.status_code == 200 and resp.json()["stored"] == 3
        after = [x["item_id"] for x in c.get(url).json()["items"]]
        assert not set(before[:3]) & set(after) and after != before
        stored = Store(store_copy).table("plays").filter(pl.col("source") == "api")
        assert sorted(stored["artist_id"].to_list()) == sorted(before[:3])
        # errors: unknown item, malformed plays, empty list, unknown field
        assert _is_clean_error(c.post(f"/v1/users/{user}/events", json={"plays": [{"item_id": "qqqzzzxx"}]}), 404)
        for bad in ({"plays": []}, {"plays": [{"timestamp": "2024-01-01"}]}, {"plays": [{"item_id": "Muse",
                    "timestamp": "yesterday"}]}, {"plays": [{"item_id": "Muse", "ms_played": -1}]}, {"play": []}):
            assert _is_clean_error(c.post(f"/v1/users/{user}/events", json=bad), 422)
        assert Store(store_copy).table("plays").filter(pl.col("source") == "api").height == 3
        # a new listener
        assert _is_clean_error(c.get("/v1/users/newbie/recommendations"), 404)
        assert c.post("/v1/users/newbie/events", json={"plays": [{"item_id": "Madonna"}]}).status_code == 200
        assert len(c.get("/v1/users/newbie/recommendations?k=3").json()["items"]) == 3


def test_hot_reload_swaps_the_model_and_never_serves_a_half_loaded_one(ease_dir, als_dir, user):
    with TestClient(create_app(ease_dir, api_key=KEY, allowed_hosts=TEST_HOSTS)) as c:
        assert c.get("/health").json()["model"] == "ease"
        failures = []

        def hammer():
            for _ in range(15):
                r = c.get(f"/v1/users/{user}/recommendations?k=5", headers=AUTH)
                if r.status_code != 200 or len(r.json()["items"]) != 5:
                    failures.append(r.status_code)

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        resp = c.post("/admin/reload", json={"model_dir": als_dir}, headers=AUTH)
        for t in threads:
            t.join(timeout=60)
        assert resp.status_code == 200 and resp.json()["model"] == "als"
        assert not failures
        health = c.get("/health").json()
        assert health["model"] == "als" and health["model_dir"] == os.path.basename(als_dir)
        assert c.get(f"/v1/users/{user}/recommendations", headers=AUTH).json()["model"] == "als"
        bad = c.post("/admin/reload", json={"model_dir": "/no/such/model"}, headers=AUTH)
        assert _is_clean_error(bad, 403) and c.get("/health").json()["model"] == "als"
        # no body: the same folder again
        assert c.post("/admin/reload", headers=AUTH).json()["model"] == "als"


def test_watching_the_model_folder_reloads_it(ease_dir, als_dir, tmp_path):
    live = str(tmp_path / "live")
    shutil.copytree(ease_dir, live)
    with TestClient(create_app(live, watch_s=0.1, allowed_hosts=TEST_HOSTS)) as c:
        assert c.get("/health").json()["model"] == "ease"
        time.sleep(0.05)                          # a new mtime even on coarse-clock file systems
        shutil.copytree(als_dir, live, dirs_exist_ok=True)
        deadline = time.monotonic() + 30
        while c.get("/health").json()["model"] != "als":
            assert time.monotonic() < deadline, "the changed folder was not reloaded"
            time.sleep(0.1)


def _sample(text: str, name: str, **labels) -> float:
    """Value of the sample ``name`` whose labels include ``labels`` (0 when absent)."""
    for m in re.finditer(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.items() <= have.items():
            return float(m.group(2))
    return 0.0


def test_metrics_count_requests_by_route_and_status(ease_dir, user):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as c:
        for _ in range(3):
            c.get(f"/v1/users/{user}/recommendations")
        c.get("/v1/users/no-such-user/recommendations")
        c.get("/v1/users/x/recommendations?k=0")
        text = c.get("/metrics").text
    route = "/v1/users/{user_id}/recommendations"
    assert _sample(text, "musicrec_requests_total", route=route, method="GET", status="200") == 3
    assert _sample(text, "musicrec_requests_total", route=route, method="GET", status="404") == 1
    assert _sample(text, "musicrec_requests_total", route=route, method="GET", status="422") == 1
    assert _sample(text, "musicrec_request_duration_seconds_count", route=route, method="GET") == 5
    assert _sample(text, "musicrec_model_info", model="ease", item_level="artist") == 1


# ---------------------------------------------------------------- every model type
@pytest.mark.parametrize("name", list(MODELS))
def test_serves_every_model_type(name, thirty, tmp_path):
    model_dir = train_bundle(name, thirty["split"], str(tmp_path / name), TINY[name])
    with TestClient(create_app(model_dir, allowed_hosts=TEST_HOSTS)) as c:
        svc = c.app.state.holder.service
        user = svc.bundle.users["source_id"][0]
        recent = [str(int(svc.item_ids[i])) for i in svc.train.user_sequences[0][-2:]]
        answers = [
            c.get(f"/v1/users/{user}/recommendations?k=5&max_per_artist=2"),
            c.post("/v1/recommendations", json={"recent_plays": recent, "k": 5}),
            c.get(f"/v1/items/{recent[-1]}/similar?k=5"),
        ]
        for resp in answers:
            assert resp.status_code == 200, resp.text
            items = resp.json()["items"]
            assert len(items) == 5 and all(x["name"] and x["reason"] for x in items)
        assert c.get("/health").json()["model"] == name


def test_the_served_model_is_frozen_out_of_the_collectors_walks(ease_dir, als_dir, user):
    """freeze_gc (what `musicrec serve` passes): the loaded model's objects are frozen at startup
    and again after a reload, and released when the server stops; answers are unchanged."""
    import gc

    assert gc.get_freeze_count() == 0
    with TestClient(create_app(ease_dir, api_key=KEY, allowed_hosts=TEST_HOSTS)) as plain:
        want = plain.get(f"/v1/users/{user}/recommendations?k=5", headers=AUTH).json()
        assert gc.get_freeze_count() == 0
    with TestClient(create_app(ease_dir, api_key=KEY, allowed_hosts=TEST_HOSTS, freeze_gc=True)) as c:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000
        assert c.get(f"/v1/users/{user}/recommendations?k=5", headers=AUTH).json() == want
        assert c.post("/admin/reload", json={"model_dir": als_dir}, headers=AUTH).json()["model"] == "als"
        assert gc.get_freeze_count() > 10_000
        assert c.get(f"/v1/users/{user}/recommendations?k=5", headers=AUTH).status_code == 200
    assert gc.get_freeze_count() == 0
