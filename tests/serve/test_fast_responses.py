"""The recommendation endpoints answer pre-encoded bytes (serve/responses.py): the same bytes
FastAPI's response-model path produced, every body valid under its response model, still documented."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serve_helpers import TEST_HOSTS

from musicrec.serve import responses
from musicrec.serve.app import ItemCard, Recommendations, SimilarItems, create_app


@pytest.fixture(scope="module")
def client(ease_dir):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as c:
        yield c


def _old_bytes(model, body: dict) -> bytes:
    """What FastAPI sent before: the dict validated by the response model, then dumped by it."""
    return model.model_validate(body).model_dump_json().encode()


def test_card_fields_are_item_card_fields():
    assert responses.CARD_FIELDS == tuple(ItemCard.model_fields)


@pytest.mark.parametrize("params", [{"k": 7}, {"k": 5, "exclude_seen": "false", "max_per_artist": 1},
                                    {"k": 10, "diversity": 0.5}])
def test_user_recommendations_bytes(client, params):
    svc = client.app.state.holder.service
    user = svc.bundle.users["source_id"][0]
    resp = client.get(f"/v1/users/{user}/recommendations", params=params)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    Recommendations.model_validate_json(resp.content)
    kw = {"k": params["k"], "exclude_seen": params.get("exclude_seen") != "false",
          "max_per_artist": params.get("max_per_artist"), "diversity": params.get("diversity")}
    items = svc.recommend_user(user, **kw)
    expected = {"model": svc.model.name, "version": svc.version, "user_id": user, "items": items}
    assert resp.content == _old_bytes(Recommendations, expected)
    assert len(resp.json()["items"]) == params["k"]


@pytest.mark.parametrize("body", [{}, {"seed_artists": ["Radiohead"], "recent_plays": ["Muse", "coldplay"], "k": 5},
                                  {"seed_tags": ["rock"], "k": 10, "exclude_seen": False}])
def test_session_recommendations_bytes(client, body):
    svc = client.app.state.holder.service
    resp = client.post("/v1/recommendations", json=body)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    parsed = Recommendations.model_validate_json(resp.content)
    assert parsed.user_id is None and resp.json()["user_id"] is None      # the field is there, as null
    items = svc.recommend_session(body.get("recent_plays", []), body.get("seed_artists", []),
                                  seed_tags=body.get("seed_tags", []), k=body.get("k", 10),
                                  exclude_seen=body.get("exclude_seen", True))
    expected = {"model": svc.model.name, "version": svc.version, "items": items}
    assert resp.content == _old_bytes(Recommendations, expected)


@pytest.mark.parametrize("item", ["Radiohead", "AC/DC"])
def test_similar_items_bytes(client, item):
    svc = client.app.state.holder.service
    resp = client.get(f"/v1/items/{item}/similar", params={"k": 6})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    SimilarItems.model_validate_json(resp.content)
    one, items = svc.similar(item, k=6)
    expected = {"model": svc.model.name, "version": svc.version, "item": one, "items": items}
    assert resp.content == _old_bytes(SimilarItems, expected)


def test_openapi_still_describes_the_answers(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, method, model in [("/v1/users/{user_id}/recommendations", "get", "Recommendations"),
                                ("/v1/recommendations", "post", "Recommendations"),
                                ("/v1/items/{item_id}/similar", "get", "SimilarItems")]:
        schema = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


def test_floats_are_formatted_as_before():
    """Tiny and huge scores keep pydantic's spelling (0.00001, not Python's 1e-05)."""
    for score in (1e-5, 6.183689966753316e-05, 1e16, 1.0, 0.1, -0.0, 3.4028234663852886e38):
        c = {"item_id": 1, "source_id": None, "name": "Björk \"x\"\n", "artist": None, "tags": ["a"],
             "score": score, "reason": ""}
        body = responses.recommendations("m", "v", None, [c]).body
        assert body == _old_bytes(Recommendations, {"model": "m", "version": "v", "items": [c]})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_score_is_a_clean_500_not_a_null(ease_dir, monkeypatch, bad):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS), raise_server_exceptions=False) as c:
        svc = c.app.state.holder.service
        real = svc.recommend_session
        monkeypatch.setattr(svc, "recommend_session",
                            lambda *a, **kw: [{**real(*a, **kw)[0], "score": bad}])
        resp = c.post("/v1/recommendations", json={})
    assert resp.status_code == 500 and resp.json() == {"error": {"code": 500, "message": "internal server error"}}
