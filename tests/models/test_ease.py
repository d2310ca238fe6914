import numpy as np
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.ease import EASE

SESSIONS = [[0, 1, 2], [1, 2, 3], [0, 3], [2, 4], [0, 1, 3, 4]]


def dense(train):
    return train.matrix.toarray().astype(np.float64)


def test_closed_form_matches_per_column_ridge():
    train = tiny_interactions(SESSIONS)
    model = EASE(l2=0.5, weighting="binary").fit(train)
    b = np.zeros((5, 5))
    np.testing.assert_allclose(np.diag(model.weights_), 0.0)
    # column j of B is the ridge regression of item j on all other items
    x = dense(train)
    for j in range(5):
        rest = [i for i in range(5) if i != j]
        xr = x[:, rest]
        b[rest, j] = np.linalg.solve(xr.T @ xr + 0.5 * np.eye(4), xr.T @ x[:, j])
    np.testing.assert_allclose(model.weights_, b, rtol=1e-4, atol=1e-5)
    # the textbook form: B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1
    p = np.linalg.inv(x.T @ x + 0.5 * np.eye(5))
    np.testing.assert_allclose(model.weights_, np.eye(5) - p / np.diag(p)[None, :], rtol=1e-4, atol=1e-5)
    # scores are history @ B; similarity of j is column j
    hist = Histories.from_sequences([[0, 2]], 5)
    np.testing.assert_allclose(model.score(hist)[0], b[0] + b[2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.item_similarity(np.array([3]))[0], b[:, 3], rtol=1e-4, atol=1e-5)


def test_min_item_users_leaves_rare_items_last():
    # items 5 and 6 have one user each
    train = tiny_interactions(SESSIONS + [[5, 0], [6, 1]])
    model = EASE(l2=0.5, weighting="binary", min_item_users=2).fit(train)
    np.testing.assert_array_equal(model.active_, [0, 1, 2, 3, 4])
    scores = model.score(Histories.from_sequences([[0, 2], [3]], 7))
    for row in scores:
        assert row[[5, 6]].max() < row[:5].min()
    np.testing.assert_array_equal(model.item_similarity(np.array([5]))[0], 0.0)
    assert model.item_similarity(np.array([6, 0]))[1, 1] != 0.0
