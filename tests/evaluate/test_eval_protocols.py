import json
import math

import numpy as np
import pytest
from eval_helpers import FixedScores, fitted

from musicrec import MusicrecError
from musicrec.evaluate import evaluate

L3 = math.log2(3)


def test_user_protocol_exact_values(user_split):
    # ranking over ids 100 > 101 > ... > 105, each user's training items removed:
    #   u10 (train 100, 101): [102, 103, 104, 105, pad]  relevant {102, 104, 999} (999 is not in the
    #                          catalogue: never hit, but counted; 100 is a training item: dropped)
    #   u20 (train 102):      [100, 101, 103, 104]       relevant {101}
    #   u30 (train 100, 103, 104, 105): [101, 102, pad]  relevant {101, 102}
    #   u40 unknown user, u50 only re-listens 100 -> both skipped
    model = fitted(FixedScores(order=[100, 101, 102, 103, 104, 105]), user_split)
    res = evaluate(model, user_split, ks=(2, 4))
    pu = res.per_user.sort("user_id")
    assert pu["user_id"].to_list() == [10, 20, 30]
    assert pu["n_relevant"].to_list() == [3, 1, 2]
    # u10 ndcg@2: 1 / (1 + 1/log2 3) (ideal: min(2, 3) = 2 hits);  u20: (1/log2 3) / 1;  u30: 1
    np.testing.assert_allclose(pu["ndcg@2"], [1 / (1 + 1 / L3), 1 / L3, 1.0])
    # u10 ndcg@4: hits at ranks 1 and 3 -> (1 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4) (ideal: min(4, 3) = 3 hits)
    np.testing.assert_allclose(pu["ndcg@4"], [1.5 / (1.5 + 1 / L3), 1 / L3, 1.0])
    np.testing.assert_allclose(pu["precision@2"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(pu["precision@4"], [0.5, 0.25, 0.5])  # u30's list is padded: 2 hits / 4
    np.testing.assert_allclose(pu["recall@2"], [1 / 3, 1.0, 1.0])
    np.testing.assert_allclose(pu["recall@4"], [2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(pu["mrr@2"], [1.0, 0.5, 1.0])
    # u10 AP@4 = (1/1 + 2/3) / min(4, 3)
    np.testing.assert_allclose(pu["map@4"], [(1 + 2 / 3) / 3, 0.5, 1.0])
    assert res.metrics["ndcg@2"] == pytest.approx((1 / (1 + 1 / L3) + 1 / L3 + 1) / 3)
    assert res.metrics["recall@4"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    info = res.info
    assert info["relevant"] == "all"
    assert (info["n_users"], info["n_users_unknown"], info["n_users_no_relevant"]) == (3, 1, 1)
    assert (info["n_pairs_unknown_item"], info["n_relevant_unreachable"], info["n_pairs_seen_dropped"]) == (1, 1, 2)
    assert info["n_relevant"] == 6 and info["n_valid_pairs_excluded"] == 0  # no validation part
    assert info["protocol"] == "user" and info["ks"] == [2, 4] and "eval_s" in info


def test_user_protocol_reachable_keeps_old_values(user_split):
    # relevant="reachable" is the convention before issue 11: 999 (not in the catalogue) is left out
    # of u10's relevant set {102, 104}, so u10's recall and NDCG come out higher than above
    model = fitted(FixedScores(order=[100, 101, 102, 103, 104, 105]), user_split)
    res = evaluate(model, user_split, ks=(2, 4), relevant="reachable")
    pu = res.per_user.sort("user_id")
    assert pu["user_id"].to_list() == [10, 20, 30]
    assert pu["n_relevant"].to_list() == [2, 1, 2]
    np.testing.assert_allclose(pu["ndcg@2"], [1 / (1 + 1 / L3), 1 / L3, 1.0])
    # u10 ndcg@4: (1 + 1/log2 4) / (1 + 1/log2 3) = 0.91972
    np.testing.assert_allclose(pu["ndcg@4"], [1.5 / (1 + 1 / L3), 1 / L3, 1.0])
    np.testing.assert_allclose(pu["recall@2"], [0.5, 1.0, 1.0])
    # u10 AP@4 = (1/1 + 2/3) / 2
    np.testing.assert_allclose(pu["map@4"], [(1 + 2 / 3) / 2, 0.5, 1.0])
    assert res.metrics["recall@4"] == pytest.approx(1.0)
    info = res.info
    assert info["relevant"] == "reachable"
    assert (info["n_users"], info["n_users_unknown"], info["n_users_no_relevant"]) == (3, 1, 1)
    assert (info["n_pairs_unknown_item"], info["n_relevant_unreachable"], info["n_pairs_seen_dropped"]) == (1, 0, 2)


def test_user_protocol_beyond_accuracy(user_split):
    model = fitted(FixedScores(order=[100, 101, 102, 103, 104, 105]), user_split)
    res = evaluate(model, user_split, ks=(2,))
    # top-2 lists: u10 [102, 103], u20 [100, 101], u30 [101, 102] -> 4 of 6 items
    assert res.metrics["coverage@2"] == pytest.approx(4 / 6)
    # popularity (training users of 4): 100 -> 3, every other item -> 1
    # novelty: u10 (2 + 2)/2, u20 (-log2(3/4) + 2)/2, u30 2
    nov_u20 = (-math.log2(3 / 4) + 2) / 2
    assert res.metrics["novelty@2"] == pytest.approx((2 + nov_u20 + 2) / 3)
    # arp: u10 (1/4 + 1/4)/2, u20 (3/4 + 1/4)/2, u30 1/4
    assert res.metrics["arp@2"] == pytest.approx((0.25 + 0.5 + 0.25) / 3)
    # tags: 100 rock, 101 rock, 102 pop: u10 has one tagged item (NaN), u20 rock/rock -> 0, u30 rock/pop -> 1
    assert res.metrics["diversity@2"] == pytest.approx(0.5)
    assert res.per_user["diversity@2"].is_nan().sum() == 1


def test_diversity_from_item_features(user_split):
    # one-hot features: every pair of distinct items is at cosine distance 1
    model = fitted(FixedScores(order=[100, 101, 102, 103, 104, 105]), user_split)
    res = evaluate(model, user_split, ks=(4,), item_features=np.eye(6))
    assert res.metrics["diversity@4"] == pytest.approx(1.0)
    assert res.info["diversity"] == "item_features"
    with pytest.raises(MusicrecError, match="item_features"):
        evaluate(model, user_split, item_features=np.eye(5))


def test_training_items_never_recommended(user_split):
    # the model likes each user's training items best; they must still not count
    model = fitted(FixedScores(order=[100, 101, 102, 103, 104, 105]), user_split)
    res = evaluate(model, user_split, ks=(1,))
    # if seen items were not excluded, u10's top-1 would be 100 (a training item, also in its test set)
    assert res.per_user.sort("user_id")["precision@1"].to_list() == [1.0, 0.0, 1.0]
    kept = evaluate(model, user_split, ks=(1,), exclude_seen=False)
    # without exclusion u10 ranks 100 first and 100 stays relevant; u20 ranks 100 (not relevant)
    pu = kept.per_user.sort("user_id")
    assert pu["user_id"].to_list() == [10, 20, 30, 50]
    assert pu["precision@1"].to_list() == [1.0, 0.0, 0.0, 1.0]
    # the scored histories are the users' training histories
    hist = model.calls_[0]
    assert hist.users.tolist() == [0, 1, 2]  # training indices of users 10, 20, 30


def test_session_protocol_by_hand(session_split):
    # model always ranks 101 first, then 100, then 102 (indices 1, 0, 2)
    model = fitted(FixedScores(order=[101, 100, 102]), session_split)
    res = evaluate(model, session_split, ks=(1, 3), batch_size=3)
    # prefixes (session 8 drops unknown item 999; session 9 is too short):
    #   s7 [101] -> 101: rank 1 (a repeat, NOT excluded)   s7 [101, 101] -> 102: rank 3
    #   s8 [100] -> 102: rank 3                              s8 [100, 102] -> 101: rank 1
    pu = res.per_user
    assert pu["session_id"].to_list() == [7, 7, 8, 8]
    assert pu["position"].to_list() == [1, 2, 1, 2]
    assert pu["target"].to_list() == [101, 102, 102, 101]
    assert pu["hitrate@1"].to_list() == [1.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(pu["mrr@3"], [1, 1 / 3, 1 / 3, 1])
    assert res.metrics["hitrate@1"] == pytest.approx(0.5)
    assert res.metrics["hitrate@3"] == pytest.approx(1.0)
    assert res.metrics["mrr@3"] == pytest.approx((1 + 1 / 3 + 1 / 3 + 1) / 4)
    assert res.metrics["ndcg@3"] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)  # rank 3 -> 1/log2(4)
    assert res.metrics["recall@3"] == res.metrics["hitrate@3"]
    assert res.metrics["precision@3"] == pytest.approx(1 / 3)
    assert "map@3" not in res.metrics
    assert (res.info["n_sessions"], res.info["n_prefixes"], res.info["n_sessions_too_short"]) == (2, 4, 1)
    assert res.info["n_events_unknown_item"] == 1
    # 999 (second in session 8) would have been a target: session-rec drops it, and info says so
    assert res.info["n_targets_unreachable"] == 1 and res.info["relevant"] == "reachable"
    # prefixes go in as anonymous histories, in listening order, in batches of <= 3
    seqs = [s.tolist() for h in model.calls_ for s in h.sequences]
    assert seqs == [[1], [1, 1], [0], [0, 2]]
    assert all((h.users == -1).all() for h in model.calls_)
    assert [len(h) for h in model.calls_] == [3, 1]


def test_progress_and_json(user_split, capsys):
    model = fitted(FixedScores(order=[100, 101]), user_split)
    res = evaluate(model, user_split, ks=(2,), progress=True, fit_s=1.25, name="fixed-a")
    out = res.to_json()
    assert set(out) == {"metrics", "model", "info"} and out["model"] == "fixed-a"
    assert out["info"]["fit_s"] == 1.25
    json.dumps(out, allow_nan=False)  # valid strict JSON


def test_errors(user_split):
    with pytest.raises(MusicrecError, match="fit"):
        evaluate(FixedScores(), user_split)
    model = fitted(FixedScores(order=[100]), user_split)
    with pytest.raises(MusicrecError, match="validation"):
        evaluate(model, user_split, on="valid")
    with pytest.raises(MusicrecError, match="ks"):
        evaluate(model, user_split, ks=(0,))
    user_split.test = user_split.test.filter(user_split.test["user_id"] == 40)
    with pytest.raises(MusicrecError, match="nothing to evaluate"):
        evaluate(model, user_split)


def test_bad_scores_are_reported(user_split):
    class Broken(FixedScores):
        def score(self, histories):
            return np.full((len(histories), 2), np.nan)

    with pytest.raises(MusicrecError, match="shape"):
        evaluate(fitted(Broken(), user_split), user_split)
