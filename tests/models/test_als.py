import numpy as np
import scipy.sparse as sp
from models_synthetic import synthetic_events

from musicrec.features.interactions import Histories, Interactions
from musicrec.features.weighting import weight
from musicrec.models.als import ALS, fold_in


def test_fold_in_solves_the_als_user_equation():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3))
    conf = sp.csr_matrix(np.array([[0, 2.0, 0, 5.0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    x = fold_in(conf, y, regularization=0.1)
    # dense form: C_u = 1 + (c - 1) on played items, p_u = 1 on played items
    c = np.array([1, 2.0, 1, 5.0, 1, 1])
    p = np.array([0, 1.0, 0, 1.0, 0, 0])
    expected = np.linalg.solve(y.T @ (c[:, None] * y) + 0.1 * np.eye(3), y.T @ (c * p))
    np.testing.assert_allclose(x[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(x[1], 0.0)


def test_fold_in_matches_implicit_recalculate_user():
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    train = Interactions.from_frame(synthetic_events())
    model = ALS(factors=4, regularization=1.0, alpha=2.0).fit(train)
    with threadpool_limits(1, "blas"):
        ref = AlternatingLeastSquares(factors=4, regularization=1.0, alpha=2.0)
    ref.item_factors = model.item_factors_.copy()
    ref.user_factors = model.user_factors_.copy()
    rows = weight(train.matrix[[3, 70]], "bm25", reference=train.matrix)
    hist = Histories(train.matrix[[3, 70]], [], np.array([-1, -1]))
    np.testing.assert_allclose(model.user_vectors(hist), ref.recalculate_user([3, 70], rows), rtol=1e-3, atol=1e-5)
    # a known user's trained vector is (near) the same fixed point
    known = model.user_vectors(train.histories([3, 70]))
    np.testing.assert_allclose(known, model.user_vectors(hist), atol=0.05)
