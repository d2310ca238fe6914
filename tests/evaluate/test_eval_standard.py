"""The standard user protocol (RecBole / Elliot / MS Recommenders full-sort), computed by hand.

A tiny user split built here, most-popular trained on train only. Training popularity
(distinct listeners): 101: 5 > 102: 4 > 103: 3 > 104: 2 > 105: 1, so every user's ranking is
101, 102, 103, 104, 105 minus the items excluded for them.

    user  train                 valid  test
    10    101                   102    103, 105, 999   999 is in no training row (a)
    20    101, 102                     104
    30    101, 102, 103                998             its only test item is unknown (c)
    40    101, 102, 103, 104
    50    101 ... 105
    60    (none)                       101             unknown user: skipped, counted

(b) user 10's validation item 102 is the most popular item they have not trained on: a model
fitted on train only would put it first in their test ranking unless it is excluded.
"""

import json
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from eval_helpers import FixedScores, events
from typer.testing import CliRunner

from musicrec import MusicrecError
from musicrec.cli import main
from musicrec.evaluate import evaluate
from musicrec.features.interactions import Interactions
from musicrec.preprocess.splitset import Split

L3 = math.log2(3)  # discount of rank 2 is 1 / L3, of rank 3 is 1 / log2(4) = 1 / 2

TRAIN = [(10, 101), (20, 101), (20, 102), (30, 101), (30, 102), (30, 103), (40, 101), (40, 102), (40, 103),
         (40, 104), (50, 101), (50, 102), (50, 103), (50, 104), (50, 105)]
VALID = [(10, 102)]
TEST = [(10, 103), (10, 105), (10, 999), (20, 104), (30, 998), (60, 101)]

# --- relevant="all" (the default), k = 1 and 3; per user (10, 20, 30):
#   u10: ranking excludes train 101 and valid 102 -> [103, 104, 105]; relevant {103, 105, 999}, |R| = 3
#        top-1 [103]: 1 hit.  precision 1/1, recall 1/3, ndcg 1/1 (ideal: min(1, 3) = 1 hit), mrr 1, AP 1/1
#        top-3 [103, 104, 105]: hits at ranks 1 and 3.  precision 2/3, recall 2/3,
#        ndcg (1 + 1/2) / (1 + 1/L3 + 1/2), mrr 1, AP (1/1 + 2/3) / min(3, 3) = 5/9
#   u20: ranking excludes 101, 102 -> [103, 104, 105]; relevant {104}
#        top-1 [103]: 0 everywhere.  top-3: hit at rank 2: precision 1/3, recall 1, ndcg 1/L3, mrr 1/2, AP 1/2
#   u30: ranking [104, 105]; relevant {998}, which no list can hold: 0 everywhere (evaluated, not skipped)
ALL = {
    "precision@1": (1 + 0 + 0) / 3, "precision@3": (2 / 3 + 1 / 3 + 0) / 3,
    "recall@1": (1 / 3 + 0 + 0) / 3, "recall@3": (2 / 3 + 1 + 0) / 3,
    # f1 = 2pr / (p + r): u10 @1 2(1)(1/3)/(4/3) = 1/2, @3 2/3; u20 @3 2(1/3)(1)/(4/3) = 1/2
    "f1@1": (1 / 2 + 0 + 0) / 3, "f1@3": (2 / 3 + 1 / 2 + 0) / 3,
    "ndcg@1": (1 + 0 + 0) / 3, "ndcg@3": (1.5 / (1.5 + 1 / L3) + 1 / L3 + 0) / 3,
    "hitrate@1": (1 + 0 + 0) / 3, "hitrate@3": (1 + 1 + 0) / 3,
    "mrr@1": (1 + 0 + 0) / 3, "mrr@3": (1 + 1 / 2 + 0) / 3,
    "map@1": (1 + 0 + 0) / 3, "map@3": (5 / 9 + 1 / 2 + 0) / 3,
}
# --- relevant="reachable" (before issue 11): only catalogue items are relevant, only train is excluded
#   u10: ranking [102, 103, 104, 105] (102 from valid is ranked first); relevant {103, 105}, |R| = 2
#        top-1 [102]: 0.  top-3: hit at rank 2: precision 1/3, recall 1/2, ndcg (1/L3) / (1 + 1/L3),
#        mrr 1/2, AP (1/2) / min(3, 2) = 1/4
#   u20: as above.   u30: no reachable item -> skipped, so the means are over 2 users
REACHABLE = {
    "precision@1": 0.0, "precision@3": (1 / 3 + 1 / 3) / 2,
    "recall@1": 0.0, "recall@3": (1 / 2 + 1) / 2,
    # f1@3: u10 2(1/3)(1/2)/(5/6) = 2/5, u20 1/2
    "f1@1": 0.0, "f1@3": (2 / 5 + 1 / 2) / 2,
    "ndcg@1": 0.0, "ndcg@3": ((1 / L3) / (1 + 1 / L3) + 1 / L3) / 2,
    "hitrate@1": 0.0, "hitrate@3": 1.0,
    "mrr@1": 0.0, "mrr@3": (1 / 2 + 1 / 2) / 2,
    "map@1": 0.0, "map@3": (1 / 4 + 1 / 2) / 2,
}


def _rows(pairs, minute=0):
    return events([(u, i, minute + n, None) for n, (u, i) in enumerate(pairs)])


@pytest.fixture
def split():
    return Split(train=_rows(TRAIN), valid=_rows(VALID, 100), test=_rows(TEST, 200),
                 meta={"evaluation": "user", "protocol": "user-holdout"})


def _accuracy(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.split("@")[0] in {n.split("@")[0] for n in ALL}}


def _most_popular(split):
    from musicrec.models.most_popular import MostPopular

    return MostPopular().fit(Interactions.from_frame(split.train))


def test_standard_values_by_hand(split):
    res = evaluate(_most_popular(split), split, ks=(1, 3))
    assert _accuracy(res.metrics) == pytest.approx(ALL, abs=1e-12)
    pu = res.per_user.sort("user_id")
    assert pu["user_id"].to_list() == [10, 20, 30] and pu["n_relevant"].to_list() == [3, 1, 1]
    np.testing.assert_allclose(pu["recall@3"], [2 / 3, 1, 0])
    info = res.info
    assert info["relevant"] == "all"
    assert (info["n_test_users"], info["n_users"], info["n_users_unknown"], info["n_users_no_relevant"]) == (4, 3, 1, 0)
    assert (info["n_relevant"], info["n_relevant_unreachable"], info["n_pairs_unknown_item"]) == (5, 2, 2)
    assert (info["n_valid_pairs_excluded"], info["n_pairs_seen_dropped"]) == (1, 0)


def test_reachable_gives_the_old_values(split):
    res = evaluate(_most_popular(split), split, ks=(1, 3), relevant="reachable")
    assert _accuracy(res.metrics) == pytest.approx(REACHABLE, abs=1e-12)
    assert res.per_user.sort("user_id")["user_id"].to_list() == [10, 20]
    info = res.info
    assert info["relevant"] == "reachable"
    assert (info["n_users"], info["n_users_unknown"], info["n_users_no_relevant"]) == (2, 1, 1)
    assert (info["n_relevant"], info["n_relevant_unreachable"], info["n_valid_pairs_excluded"]) == (3, 0, 0)


def test_cli_json_gives_the_same_values(split, tmp_path):
    main._register()
    runner = CliRunner()
    split.save(str(tmp_path / "split"))
    out = runner.invoke(main.app, ["train", "most-popular", "--split", str(tmp_path / "split"),
                                   "--out", str(tmp_path / "model")])
    assert out.exit_code == 0, out.output
    for relevant, expected in (("all", ALL), ("reachable", REACHABLE)):
        args = ["evaluate", str(tmp_path / "model"), "--split", str(tmp_path / "split"), "--k", "1", "3",
                "--json", str(tmp_path / f"{relevant}.json")]
        out = runner.invoke(main.app, args + (["--relevant", relevant] if relevant != "all" else []))
        assert out.exit_code == 0, out.output
        got = json.loads((tmp_path / f"{relevant}.json").read_text())
        assert _accuracy(got["metrics"]) == pytest.approx(expected, abs=1e-12)
        assert got["info"]["relevant"] == relevant
        assert got["info"]["n_relevant_unreachable"] == (2 if relevant == "all" else 0)
        assert got["info"]["n_valid_pairs_excluded"] == (1 if relevant == "all" else 0)
    # a bad value: one line and status 2 from the real entry point
    bad = subprocess.run([sys.executable, "-m", "musicrec.cli.main", "evaluate", str(tmp_path / "model"),
                          "--split", str(tmp_path / "split"), "--relevant", "catalogue"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: relevant must be 'all' or 'reachable', got 'catalogue'"


def test_valid_excludes_train_only_and_refit_changes_nothing(split):
    order = [101, 102, 103, 104, 105]
    train_only = FixedScores(order=order).fit(Interactions.from_frame(split.train))
    # tuning on valid: u10's ranking excludes train (101) only, so 102 is first and a hit
    res = evaluate(train_only, split, ks=(1,), on="valid")
    assert res.per_user["user_id"].to_list() == [10] and res.metrics["precision@1"] == 1.0
    assert res.info["n_valid_pairs_excluded"] == 0
    # a refit on train + valid has 102 in u10's history already: same rankings, nothing extra excluded
    refit = FixedScores(order=order).fit(Interactions.from_frame(pl.concat([split.train, split.valid])))
    a, b = evaluate(train_only, split, ks=(1, 3)), evaluate(refit, split, ks=(1, 3))
    assert a.metrics == pytest.approx(b.metrics)
    assert (a.info["n_valid_pairs_excluded"], b.info["n_valid_pairs_excluded"]) == (1, 0)


def test_user_coldstart_seeds(split):
    # cold users 70 (seed 101, valid 103, test {102, 997}), 80 (seed 102, test {996}),
    # 90 (seed 995: not in the catalogue, so no history: skipped as unknown)
    cold = Split(train=split.train, valid=_rows([(70, 103)], 100),
                 test=_rows([(70, 102), (70, 997), (80, 996), (90, 101)], 200),
                 meta={"evaluation": "user", "protocol": "user-coldstart", "history": "seeds",
                       "seeds": {"user_id": [70, 80, 90], "item_id": [101, 102, 995]}})
    model = FixedScores(order=[101, 102, 103, 104, 105]).fit(Interactions.from_frame(cold.train))
    res = evaluate(model, cold, ks=(3,))
    # u70: excludes seed 101 and valid 103 -> [102, 104, 105]; relevant {102, 997}: recall 1/2,
    #      ndcg 1 / (1 + 1/L3);  u80: [101, 103, 104]; relevant {996}: 0
    pu = res.per_user.sort("user_id")
    assert pu["user_id"].to_list() == [70, 80]
    np.testing.assert_allclose(pu["recall@3"], [1 / 2, 0])
    np.testing.assert_allclose(pu["ndcg@3"], [1 / (1 + 1 / L3), 0])
    assert (res.info["n_users_unknown"], res.info["n_relevant_unreachable"], res.info["n_valid_pairs_excluded"]) == (1, 2, 1)
    # reachable: u70 ranks [102, 103, 104] against {102}; u80 has nothing reachable
    old = evaluate(model, cold, ks=(3,), relevant="reachable")
    assert old.per_user["user_id"].to_list() == [70]
    assert old.metrics["recall@3"] == 1.0 and old.metrics["ndcg@3"] == 1.0


def test_unknown_relevant_codes_never_hit():
    from musicrec.evaluate.metrics import hit_matrix, ranking_metrics

    # items >= I (here I = 3) and negative entries count in |relevant| but match nothing, padding included
    ranked = np.array([[0, 1, -1], [2, -1, -1]])
    hits, n_rel = hit_matrix(ranked, [np.array([1, 3, 4]), np.array([-1, 5])])
    assert hits.tolist() == [[False, True, False], [False, False, False]] and n_rel.tolist() == [3, 2]
    assert ranking_metrics(ranked, [np.array([1, 3, 4]), np.array([5])], ks=(3,))["recall@3"].tolist() == [1 / 3, 0.0]


def test_bad_relevant_value(split):
    with pytest.raises(MusicrecError, match="relevant must be 'all' or 'reachable', got 'some'"):
        evaluate(_most_popular(split), split, relevant="some")
