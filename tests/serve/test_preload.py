"""What the service computes once per model: ONNX Runtime scoring of deep models and the cached
query vectors of training listeners (serve.preload), on real data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from serve_helpers import train_bundle

from musicrec.serve.preload import UserCandidates, UserQueries
from musicrec.serve.service import Service


@pytest.fixture(scope="module")
def sknn_dir(hetrec) -> str:
    return train_bundle("sknn", hetrec["split"], str(hetrec["root"] / "sknn"))


def _sessions(svc: Service, n: int = 12) -> list[list[str]]:
    seqs = [s for s in svc.train.user_sequences if len(s) >= 4][:n]
    return [[str(int(svc.item_ids[i])) for i in s[-4:]] for s in seqs]


def test_deep_model_serves_through_onnx_with_the_torch_answers(gru_dir, monkeypatch):
    fast = Service.load(gru_dir)
    assert fast.health()["scorer"].startswith("onnxruntime")
    assert fast.model.scorer_.trim          # GRU4Rec is padding-free: a session runs on its own plays only
    monkeypatch.setenv("MUSICREC_ONNX", "off")
    slow = Service.load(gru_dir)
    assert slow.health()["scorer"] == "torch"
    for plays in _sessions(fast):
        a = fast.recommend_session(plays, [], k=10)
        b = slow.recommend_session(plays, [], k=10)
        np.testing.assert_allclose([c["score"] for c in a], [c["score"] for c in b], rtol=1e-4, atol=1e-4)
        # the same items, up to the order of near-equal scores
        assert len({c["item_id"] for c in a} ^ {c["item_id"] for c in b}) <= 2


def test_cached_queries_equal_one_by_one_encoding(gru_dir):
    svc = Service.load(gru_dir)
    model, train = svc.model, svc.train
    eager = svc.user_queries
    lazy = UserQueries(model, train, eager_floats=0)
    assert eager.n_cached == train.n_users and lazy.n_cached == 0
    for u in (0, 3, train.n_users - 1):
        alone = model.query_vectors(train.histories([u]))
        np.testing.assert_allclose(eager(u), alone, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lazy(u), alone, rtol=1e-4, atol=1e-5)
    assert lazy.n_cached == 3


def test_posted_plays_bypass_the_cached_query(gru_dir, thirty, tmp_path):
    store = str(tmp_path / "store")
    shutil.copytree(thirty["store"], store)
    svc = Service.load(gru_dir, store_url=store)
    user = svc.bundle.users["source_id"][0]
    calls = []
    encode = svc.model.query_vectors
    svc.model.query_vectors = lambda h, *a, **kw: calls.append(len(h)) or encode(h, *a, **kw)
    before = svc.recommend_user(user, k=10)
    assert calls == []                            # the training history's query was computed at load
    played = [c["item_id"] for c in svc.recommend_session(_sessions(svc)[1], [], k=3)]
    calls.clear()
    svc.append_events(user, [{"item_id": i} for i in played])
    after = svc.recommend_user(user, k=10)
    assert calls == [1]                           # encoded again, with the posted plays
    assert [c["item_id"] for c in after] != [c["item_id"] for c in before]


@pytest.mark.integration     # its model folder is a fixture asked for by name
@pytest.mark.parametrize("fixture", ["ease_dir", "sknn_dir"])
def test_precomputed_candidates_give_the_live_answers(fixture, request):
    svc = Service.load(request.getfixturevalue(fixture))
    assert svc.user_candidates is not None and svc.user_candidates.n_cached == svc.train.n_users
    live = Service.load(request.getfixturevalue(fixture))
    live.user_candidates = None
    for n in (0, 5, 17, 40):
        user = svc.bundle.users["source_id"][n]
        for options in ({"k": 10}, {"k": 3, "max_per_artist": 1}, {"k": 10, "exclude_seen": False}):
            got = svc.recommend_user(user, **options)
            want = live.recommend_user(user, **options)
            assert [c["item_id"] for c in got] == [c["item_id"] for c in want]
            assert [c["reason"] for c in got] == [c["reason"] for c in want]
            np.testing.assert_allclose([c["score"] for c in got], [c["score"] for c in want], rtol=1e-5, atol=1e-6)


def test_candidates_computed_on_first_request_beyond_the_eager_ones(ease_dir):
    svc = Service.load(ease_dir)
    lazy = UserCandidates(svc.model, svc.train, eager_users=0)
    assert lazy.n_cached == 0
    idx, scores = lazy(7, 20)
    assert lazy.n_cached == 1 and idx.shape == (1, 20)
    np.testing.assert_array_equal(idx, svc.user_candidates(7, 20)[0])
    assert not np.isin(idx, svc.train.user_sequences[7]).any()     # never a played item
    assert lazy(7, lazy.n + 1) is None                              # more than kept: score live
