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
