import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicrec.evaluate.metrics import (
    METRIC_NAMES,
    average_precision_at_k,
    f1_at_k,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

SINGLE = {"precision": precision_at_k, "recall": recall_at_k, "f1": f1_at_k, "ndcg": ndcg_at_k,
          "hitrate": hit_rate_at_k, "mrr": mrr_at_k, "map": average_precision_at_k}

# ranked [3, 1, 4, 0, 5], relevant {1, 0, 9}: hits at ranks 2 and 4, |relevant| = 3
RANKED = np.array([3, 1, 4, 0, 5])
RELEVANT = {1, 0, 9}
L3, L5 = math.log2(3), math.log2(5)


def test_hand_values_k5():
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    # f1 = 2 * 0.4 * 2/3 / (0.4 + 2/3) = 0.5333 / 1.0667 = 0.5
    assert f1_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.5)
    # dcg = 1/log2(3) + 1/log2(5) = 1.06161; idcg over min(3, 5) = 3 hits = 1 + 1/log2(3) + 1/2 = 2.13093
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 / L3 + 1 / L5) / (1 + 1 / L3 + 0.5))
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.49819, abs=1e-5)
    assert hit_rate_at_k(RANKED, RELEVANT, 5) == 1.0
    assert mrr_at_k(RANKED, RELEVANT, 5) == pytest.approx(1 / 2)
    # AP = (P@2 + P@4) / min(3, 5) = (1/2 + 2/4) / 3 = 1/3
    assert average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(1 / 3)


def test_hand_values_small_k():
    # k = 1: top [3] has no hit
    for fn in SINGLE.values():
        assert fn(RANKED, RELEVANT, 1) == 0.0
    # k = 2: top [3, 1]; one hit at rank 2
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    # dcg = 1/log2(3) = 0.63093; idcg over min(3, 2) = 2 hits = 1 + 0.63093 -> 0.38685
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.38685, abs=1e-5)
    # AP = P@2 / min(3, 2) = 0.5 / 2
    assert average_precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.25)


def test_padding_and_short_lists():
    # -1 is padding, never a hit; precision still divides by k
    assert precision_at_k([-1, 2], [2], 2) == pytest.approx(0.5)
    assert ndcg_at_k([-1, 2], [2], 2) == pytest.approx(1 / L3)
    assert mrr_at_k([-1, 2], [2], 2) == pytest.approx(0.5)
    assert hit_rate_at_k([-1, -1], [-1], 2) == 0.0
    # list [2] shorter than k = 3, relevant {2, 5}
    assert precision_at_k([2], [2, 5], 3) == pytest.approx(1 / 3)
    assert recall_at_k([2], [2, 5], 3) == pytest.approx(1 / 2)
    assert ndcg_at_k([2], [2, 5], 3) == pytest.approx(1 / (1 + 1 / L3))  # ideal has 2 hits
    assert average_precision_at_k([2], [2, 5], 3) == pytest.approx(1 / 2)  # 1 / min(2, 3)
    # no relevant items -> 0 by convention
    for fn in SINGLE.values():
        assert fn([1, 2], [], 2) == 0.0


def test_recall_denominator_is_all_relevant():
    # 4 relevant, k = 2, both top items relevant: recall 2/4, but ndcg and AP are perfect
    assert recall_at_k([0, 1], [0, 1, 2, 3], 2) == pytest.approx(0.5)
    assert ndcg_at_k([0, 1], [0, 1, 2, 3], 2) == pytest.approx(1.0)
    assert average_precision_at_k([0, 1], [0, 1, 2, 3], 2) == pytest.approx(1.0)


def test_batch_hand_values_and_keys():
    ranked = np.array([[3, 1, 4, 0, 5], [2, -1, -1, -1, -1]])
    out = ranking_metrics(ranked, [np.array([1, 0, 9]), np.array([2, 2])], ks=(2, 5))
    assert set(out) == {f"{n}@{k}" for n in METRIC_NAMES for k in (2, 5)}
    np.testing.assert_allclose(out["ndcg@5"], [0.49819, 1.0], atol=1e-5)
    np.testing.assert_allclose(out["precision@5"], [0.4, 0.2])  # second: 1 hit / 5
    np.testing.assert_allclose(out["mrr@2"], [0.5, 1.0])
    np.testing.assert_allclose(out["map@5"], [1 / 3, 1.0])
    # the 2-D relevant fast path (one target per row) gives the same numbers
    fast = ranking_metrics(ranked, np.array([[1], [2]]), ks=(2,))
    slow = ranking_metrics(ranked, [np.array([1]), np.array([2])], ks=(2,))
    for key in slow:
        np.testing.assert_allclose(fast[key], slow[key])


def test_batch_rejects_bad_k():
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[0]]), [np.array([0])], ks=(0,))


@st.composite
def ranked_and_relevant(draw):
    n_items = draw(st.integers(1, 25))
    perm = draw(st.permutations(range(n_items)))
    length = draw(st.integers(1, n_items))
    relevant = draw(st.sets(st.integers(0, n_items - 1), min_size=1))
    return np.array(perm[:length]), relevant


@settings(max_examples=150, deadline=None)
@given(ranked_and_relevant(), st.integers(1, 30))
def test_properties_bounds_and_batch_equals_single(data, k):
    ranked, relevant = data
    batch = ranking_metrics(ranked[None, :], [np.array(sorted(relevant))], ks=(k,))
    for name, fn in SINGLE.items():
        value = fn(ranked, relevant, k)
        assert 0.0 <= value <= 1.0 + 1e-12
        assert batch[f"{name}@{k}"][0] == pytest.approx(value)


@settings(max_examples=100, deadline=None)
@given(ranked_and_relevant(), st.integers(1, 30))
def test_properties_perfect_ranking(data, k):
    _, relevant = data
    rel = sorted(relevant)
    ranked = np.array(rel + [max(rel) + 1 + j for j in range(5)])  # every relevant item first
    assert ndcg_at_k(ranked, relevant, k) == pytest.approx(1.0)
    assert average_precision_at_k(ranked, relevant, k) == pytest.approx(1.0)
    assert mrr_at_k(ranked, relevant, k) == 1.0
    assert precision_at_k(ranked, relevant, k) == pytest.approx(min(len(rel), k) / k)


@settings(max_examples=100, deadline=None)
@given(ranked_and_relevant())
def test_properties_recall_and_hitrate_monotone_in_k(data):
    ranked, relevant = data
    recalls = [recall_at_k(ranked, relevant, k) for k in range(1, len(ranked) + 2)]
    hits = [hit_rate_at_k(ranked, relevant, k) for k in range(1, len(ranked) + 2)]
    assert all(a <= b for a, b in zip(recalls, recalls[1:]))
    assert all(a <= b for a, b in zip(hits, hits[1:]))
