"""POST bodies are JSON whatever the Content-Type says (what `curl -d` sends), and a body that is
not one JSON object gets a 422 saying what was expected and how to send it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serve_helpers import TEST_HOSTS

from musicrec.serve.app import create_app

FORM = "application/x-www-form-urlencoded"          # curl's default for -d


@pytest.fixture(scope="module")
def client(ease_dir):
    with TestClient(create_app(ease_dir, allowed_hosts=TEST_HOSTS)) as c:
        yield c


@pytest.mark.parametrize("content_type", [FORM, "text/plain", "multipart/form-data; boundary=x", None,
                                          "application/json", "application/vnd.api+json"])
def test_session_body_is_json_whatever_the_content_type(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.post("/v1/recommendations", content=b'{"seed_artists": ["radiohead", "bjork"], "k": 3}',
                       headers=headers)
    assert resp.status_code == 200, resp.text
    names = [c["name"] for c in resp.json()["items"]]
    assert len(names) == 3 and "Radiohead" not in names


def test_events_body_is_json_with_a_form_content_type(als_dir, store_copy):
    with TestClient(create_app(als_dir, store_url=store_copy, allowed_hosts=TEST_HOSTS)) as c:
        user = c.app.state.holder.service.bundle.users["source_id"][0]
        resp = c.post(f"/v1/users/{user}/events", content=b'{"plays": [{"item_id": "Muse"}]}',
                      headers={"Content-Type": FORM})
        assert resp.status_code == 200, resp.text
        assert resp.json()["accepted"] == 1


def test_reload_without_a_body_still_works(client):
    resp = client.post("/admin/reload", headers={"Content-Type": FORM})
    assert resp.status_code == 200 and resp.json()["model"] == "ease"


@pytest.mark.parametrize("body, says", [
    (b"seed_artists=radiohead&k=10", "not valid JSON"),           # curl --data-urlencode / a real form
    (b"{not json", "not valid JSON"),
    (b'["radiohead"]', "JSON an array, not an object"),
    (b'"radiohead"', "JSON a string, not an object"),
    (b"", "empty"),
])
@pytest.mark.parametrize("content_type", [FORM, "application/json"])
def test_a_body_that_is_not_a_json_object_says_what_was_expected(client, body, says, content_type):
    resp = client.post("/v1/recommendations", content=body, headers={"Content-Type": content_type})
    message = resp.json()["error"]["message"]
    assert resp.status_code == 422 and says in message
    # what to send, and how
    assert '{"seed_artists": ["radiohead", "bjork"], "k": 10}' in message
    assert "Content-Type: application/json" in message and "curl" in message


def test_the_events_message_shows_an_events_body(client):
    resp = client.post("/v1/users/2/events", content=b"plays=Muse", headers={"Content-Type": FORM})
    assert resp.status_code == 422 and '{"plays": [{"item_id": "Muse"}]}' in resp.json()["error"]["message"]


def test_field_errors_keep_their_own_message(client):
    resp = client.post("/v1/recommendations", content=b'{"k": 0}', headers={"Content-Type": FORM})
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("body.k:")


def test_openapi_still_documents_json_bodies_with_examples(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/recommendations"]["post"]["requestBody"]
    assert list(body["content"]) == ["application/json"]
    schema = spec["components"]["schemas"]["SessionRequest"]
    assert schema["examples"] == [{"seed_artists": ["radiohead", "bjork"], "k": 10}]


def test_health_says_which_scorer_answers(client):
    """The README: a compressed model "scores through ONNX Runtime (/health says "scorer")"."""
    assert client.get("/health").json()["scorer"] == "native"
