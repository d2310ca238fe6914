import numpy as np
from models_synthetic import synthetic_events

from musicrec.features.interactions import Histories, Interactions
from musicrec.models.bpr import BPR


def test_bias_column_is_split_off():
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    train = Interactions.from_frame(synthetic_events())
    model = BPR(factors=8, iterations=20, random_state=3).fit(train)
    ref = BayesianPersonalizedRanking(factors=8, iterations=20, random_state=3, num_threads=1,
                                      learning_rate=model.learning_rate, regularization=model.regularization)
    ref.fit(train.matrix, show_progress=False)
    assert model.item_factors_.shape == (train.n_items, 8)
    # same seed, one thread: identical to implicit's own scores (which include the bias)
    np.testing.assert_allclose(model.score(train.histories([0, 55])),
                               ref.user_factors[[0, 55]] @ ref.item_factors.T, rtol=1e-5, atol=1e-5)


def test_new_listener_is_mean_of_item_factors():
    train = Interactions.from_frame(synthetic_events())
    model = BPR(factors=8, iterations=20).fit(train)
    hist = Histories.from_sequences([[1, 4, 4], []], train.n_items)
    vecs = model.user_vectors(hist)
    np.testing.assert_allclose(vecs[0], model.item_factors_[[1, 4]].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(vecs[1], 0.0)
    np.testing.assert_allclose(model.score(hist)[1], model.item_bias_)
