import numpy as np
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.most_popular import MostPopular


def test_users_versus_plays():
    train = tiny_interactions([[0, 1], [1], [2]], weights=[[1, 1], [1], [50]])
    hist = Histories.from_sequences([[0], []], 3)
    np.testing.assert_array_equal(MostPopular(by="users").fit(train).score(hist), [[1, 2, 1]] * 2)
    np.testing.assert_array_equal(MostPopular(by="plays").fit(train).score(hist), [[1, 2, 50]] * 2)
