"""A request with nothing to recommend is an error that says why, in the Python API and over HTTP.

A three-item catalogue where listener "u1" has played every item.
"""

from __future__ import annotations

import polars as pl
import pytest
from fastapi.testclient import TestClient
from serve_helpers import TEST_HOSTS

from musicrec import MusicrecError
from musicrec.bundle import ModelBundle, bundle_meta
from musicrec.preprocess.splitset import Split
from musicrec.serve.app import create_app
from musicrec.serve.service import Service
from musicrec.train.fit import fit_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("nothing")
    split = Split(
        train=pl.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [10, 11, 12, 10, 11]}),
        test=pl.DataFrame({"user_id": [2], "item_id": [12]}),
        items=pl.DataFrame({"item_id": [10, 11, 12], "source_id": ["a", "b", "c"], "name": ["Abba", "Blur", "Cher"]}),
        users=pl.DataFrame({"user_id": [1, 2], "source_id": ["u1", "u2"]}),
        meta={"protocol": "import", "item_level": "artist"},
    )
    split.save(str(base / "split"))
    model, fit_s = fit_model("most-popular", split)
    ModelBundle(model, split.items, split.users, bundle_meta(split, str(base / "split"), False, fit_s=fit_s)) \
        .save(str(base / "model"))
    return str(base / "model")


def test_the_core_says_why_there_is_nothing_to_recommend(model_dir):
    svc = Service.load(model_dir, one_off=True)
    with pytest.raises(MusicrecError, match="nothing to recommend for listener 'u1': their history already "
                                            "holds all 3 items"):
        svc.recommend_user("u1")
    assert [c["name"] for c in svc.recommend_user("u1", exclude_seen=False)] == ["Abba", "Blur", "Cher"]
    assert [c["name"] for c in svc.recommend_user("u2")] == ["Cher"]


def test_http_api_answers_nothing_to_recommend_with_a_json_error(model_dir):
    with TestClient(create_app(model_dir, allowed_hosts=TEST_HOSTS)) as client:
        resp = client.get("/v1/users/u1/recommendations")
        assert resp.status_code == 422
        message = resp.json()["error"]["message"]
        assert message.startswith("nothing to recommend for listener 'u1': their history already holds all 3 items")
        assert "exclude_seen=false" in message
        resp = client.post("/v1/recommendations", json={"recent_plays": ["Abba", "Blur", "Cher"]})
        assert resp.status_code == 422 and "nothing to recommend" in resp.json()["error"]["message"]
        ok = client.get("/v1/users/u1/recommendations", params={"exclude_seen": "false"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 3
        for path in ("/v1/users/u2/recommendations?k=0", "/v1/users/u2/recommendations?k=-1",
                     "/v1/items/Abba/similar?k=0"):
            bad = client.get(path)
            assert bad.status_code == 422 and bad.json()["error"]["message"], path
