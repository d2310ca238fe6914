import numpy as np
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.sr import SequentialRules

# items: a=0 b=1 c=2 d=3
SESSIONS = [[0, 1, 2], [1, 2], [3, 0]]


def test_rule_weights_by_hand():
    model = SequentialRules(steps=2, weighting="div", pruning=0).fit(tiny_interactions(SESSIONS))
    expected = np.zeros((4, 4))
    expected[0, 1] = 1.0           # a -> b at distance 1
    expected[0, 2] = 0.5           # a -> c at distance 2
    expected[1, 2] = 1.0 + 1.0     # b -> c in two sessions
    expected[3, 0] = 1.0           # d -> a
    np.testing.assert_allclose(model.rules_.toarray(), expected)
    # one step: no a -> c
    short = SequentialRules(steps=1, pruning=0).fit(tiny_interactions(SESSIONS))
    assert short.rules_[0, 2] == 0


def test_pruning_keeps_strongest_rule():
    model = SequentialRules(steps=2, pruning=1).fit(tiny_interactions(SESSIONS))
    np.testing.assert_allclose(model.rules_.toarray()[0], [0, 1.0, 0, 0])


def test_scores_from_last_items():
    model = SequentialRules(steps=2, pruning=0, last_n=2).fit(tiny_interactions(SESSIONS))
    scores = model.score(Histories.from_sequences([[3, 0]], 4))[0]
    # last item a: a->b 1, a->c 0.5; the one before, d, weighs 1/2: d->a 1 * 0.5
    np.testing.assert_allclose(scores[[0, 1, 2]], [0.5, 1.0, 0.5])
    assert scores[3] < 0          # no rule reaches d: popularity fallback below all
    # similarity is symmetric: b is "near" a in both directions
    sim = model.item_similarity(np.array([1]))[0]
    np.testing.assert_allclose(sim, [1.0, 0, 2.0, 0])


def test_one_history_scores_exactly_as_the_sparse_product():
    """A single history adds its rules' rows directly; a batch multiplies sparse matrices: the
    very same float32 numbers, repeats (weights summed) included."""
    rng = np.random.default_rng(0)
    sessions = [list(rng.integers(0, 30, size=rng.integers(2, 9))) for _ in range(200)]
    model = SequentialRules(steps=3, last_n=4, pruning=0).fit(tiny_interactions(sessions))
    seqs = [[3, 4, 3, 5, 3], [7], [12, 13, 14, 15, 12, 12], [], [29, 0, 29]]
    batch = model.score(Histories.from_sequences(seqs, 30))
    for r, seq in enumerate(seqs):
        np.testing.assert_array_equal(model.score(Histories.from_sequences([seq], 30)), batch[r:r + 1])
    # the last item weighs 1, the one before 1/2, ...: 3 in [.., 3, 5, 3] weighs 1 + 1/3
    rules = model.rules_.toarray()
    want = rules[3] * np.float32(1 + 1 / 3) + rules[5] * np.float32(0.5) + rules[4] * np.float32(0.25)
    np.testing.assert_allclose(batch[0][want > 0], want[want > 0], rtol=1e-6)
