import numpy as np
import pytest
from models_synthetic import tiny_interactions

from musicrec import fsio
from musicrec.features.interactions import Histories
from musicrec.features.weighting import weight
from musicrec.models import ease as ease_module
from musicrec.models.ease import EASE
from musicrec.models.registry import load_model

SESSIONS = [[0, 1, 2], [1, 2, 3], [0, 3], [2, 4], [0, 1, 3, 4]]


def textbook_b(x: np.ndarray, l2: float) -> np.ndarray:
    """B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1, in float64."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p / np.diag(p)[None, :]


def random_interactions(n_users: int, n_items: int, seed: int = 0):
    """Users with 1-9 distinct items and play counts 1-5; user 0 plays every item (ids == indices)."""
    rng = np.random.default_rng(seed)
    sessions = [list(range(n_items))] + [list(rng.choice(n_items, size=rng.integers(1, 10), replace=False))
                                         for _ in range(n_users - 1)]
    counts = [list(rng.integers(1, 6, size=len(s))) for s in sessions]
    return tiny_interactions(sessions, weights=counts)


def test_closed_form_matches_per_column_ridge():
    train = tiny_interactions(SESSIONS)
    model = EASE(l2=0.5, weighting="binary", min_item_users=1).fit(train)
    x = train.matrix.toarray().astype(np.float64)
    x[x > 0] = 1.0
    # column j of B is the ridge regression of item j on all other items
    b = np.zeros((5, 5))
    for j in range(5):
        rest = [i for i in range(5) if i != j]
        xr = x[:, rest]
        b[rest, j] = np.linalg.solve(xr.T @ xr + 0.5 * np.eye(4), xr.T @ x[:, j])
    np.testing.assert_allclose(b, textbook_b(x, 0.5), rtol=1e-8, atol=1e-10)
    # scores are history @ B; similarity of j is column j (zero diagonal)
    hist = Histories.from_sequences([[0, 2]], 5)
    np.testing.assert_allclose(model.score(hist)[0], b[0] + b[2], rtol=1e-4, atol=1e-5)
    sims = model.item_similarity(np.arange(5))
    np.testing.assert_allclose(sims, b.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.diag(sims), 0.0)


@pytest.mark.parametrize("n_users, n_items", [(30, 60), (60, 30)])   # user space, item space
@pytest.mark.parametrize("scheme", ["binary", "bm25"])
def test_both_solves_equal_the_textbook_form(n_users, n_items, scheme):
    train = random_interactions(n_users, n_items)
    model = EASE(l2=3.0, weighting=scheme, min_item_users=1).fit(train)
    # the smaller of the two spaces is solved: K (U, U) or P (I, I), never both, never larger
    assert model.inverse_.shape == (min(n_users, n_items),) * 2
    b = textbook_b(weight(train.matrix, scheme).toarray().astype(np.float64), 3.0)
    hist = Histories.from_sequences([[0, 3, 5], [7], [], list(range(0, n_items, 2))], n_items,
                                    counts=[[1, 2, 3], [4], [], [1] * len(range(0, n_items, 2))])
    x = weight(hist.matrix, scheme, reference=train.matrix).toarray()
    np.testing.assert_allclose(model.score(hist), x @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.item_similarity(np.array([2, 9, 0])), b[:, [2, 9, 0]].T, rtol=1e-5, atol=1e-5)


def test_batch_and_single_requests_agree():
    # a few rows take the sparse (no BLAS) path, batches the dense one
    train = random_interactions(40, 80, seed=1)
    model = EASE(l2=2.0, min_item_users=1).fit(train)
    hist = train.histories(np.arange(2 * ease_module.SMALL_BATCH + 5))
    batch = model.score(hist)
    single = np.vstack([model.score(train.histories([u])) for u in range(len(batch))])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)


def test_saved_model_keeps_no_item_by_item_matrix(tmp_path):
    train = random_interactions(30, 200, seed=2)
    model = EASE(l2=3.0, min_item_users=1).fit(train)
    model.save(str(tmp_path / "m"))
    with np.load(tmp_path / "m" / "state.npz", allow_pickle=False) as state:
        assert max(state[k].size for k in state.files) <= 30 * 30
    loaded = load_model(str(tmp_path / "m"))
    hist = Histories.from_sequences([[1, 2, 3]], 200)
    np.testing.assert_array_equal(loaded.score(hist), model.score(hist))
    np.testing.assert_array_equal(loaded.item_similarity(np.array([4])), model.item_similarity(np.array([4])))


def test_item_space_inverse_is_c_ordered_after_load(tmp_path):
    # a sparse history times a Fortran-ordered matrix makes scipy copy the matrix per request
    train = random_interactions(60, 20, seed=3)
    EASE(min_item_users=1).fit(train).save(str(tmp_path / "m"))
    assert load_model(str(tmp_path / "m")).inverse_.flags.c_contiguous


def test_older_dense_folder_is_a_clear_error(tmp_path):
    from musicrec import MusicrecError

    path = str(tmp_path / "m")
    model = EASE(min_item_users=1).fit(random_interactions(8, 12))
    model.save(path)
    fsio.atomic_savez(str(tmp_path / "m" / "state.npz"), {"active": model.active_, "weights": np.zeros((12, 12), np.float32),
                                                     "fallback": model.fallback_})
    with pytest.raises(MusicrecError, match="train it again"):
        load_model(path)


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


def test_user_space_equals_textbook_on_hetrec(shared_data):
    import os

    import polars as pl

    from musicrec import schema
    from musicrec.features.interactions import Interactions

    plays = pl.read_csv(os.path.join(shared_data, "hetrec2011-lastfm-2k", "user_artists.dat"), separator="\t")
    plays = plays.rename({"userID": "user_id", "artistID": "item_id"}).filter(pl.col("user_id") < 400)
    train = Interactions.from_frame(schema.conform(plays.with_columns(pl.col("weight").cast(pl.Float64)),
                                                   schema.SPLIT_EVENTS))
    model = EASE(l2=50.0, min_item_users=2).fit(train)
    assert model._user_space() and len(model.active_) > 4 * train.n_users   # 373 listeners, 2,199 artists
    x = weight(train.matrix, "binary").toarray().astype(np.float64)[:, model.active_]
    b = textbook_b(x, 50.0)
    hist = train.histories(np.arange(0, train.n_users, 10))
    scores = model.score(hist)[:, model.active_]
    np.testing.assert_allclose(scores, x[hist.users] @ b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_users, n_items", [(12, 30), (40, 15)])   # user space, item space
@pytest.mark.parametrize("factor_floats", [ease_module.FACTOR_FLOATS, 0])   # with and without the factor of K
def test_restricted_similarity_equals_the_full_one(n_users, n_items, factor_floats, monkeypatch):
    monkeypatch.setattr(ease_module, "FACTOR_FLOATS", factor_floats)
    train = random_interactions(n_users, n_items, seed=3)
    model = EASE(l2=3.0, min_item_users=2).fit(train)   # some items inactive: their entries are 0
    assert model._user_space() == (n_users < n_items)
    items = np.array([2, 9, 0, 2, n_items - 1])
    columns = np.array([0, 9, 5, 1, n_items - 2, 2, 2])
    full = model.item_similarity(items)
    np.testing.assert_allclose(model.item_similarity(items, columns=columns), full[:, columns], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.item_similarity(items, columns=np.array([], np.int64)).shape, (5, 0))


@pytest.mark.parametrize("scheme", ["binary", "bm25"])
def test_training_users_take_the_kernel_row_shortcut_with_textbook_scores(scheme):
    # x P = K_r X for a training user's own history; a history labelled with a user index but
    # changed since (plays posted) must not take it
    train = random_interactions(30, 60, seed=4)
    model = EASE(l2=3.0, weighting=scheme, min_item_users=1).fit(train)
    assert model._user_space()
    b = textbook_b(weight(train.matrix, scheme).toarray().astype(np.float64), 3.0)
    x = weight(train.matrix, scheme).toarray()
    users = np.array([0, 5, 17, 5])
    hist = train.histories(users)
    assert model._training_rows(model._active_columns(weight(hist.matrix, scheme, reference=train.matrix)),
                                users) is not None
    np.testing.assert_allclose(model.score(hist), x[users] @ b, rtol=1e-4, atol=1e-4)
    changed = Histories.from_sequences([np.append(train.user_sequences[5], 59)], 60, users=np.array([5]))
    assert model._training_rows(model._active_columns(weight(changed.matrix, scheme, reference=train.matrix)),
                                changed.users) is None
    xc = weight(changed.matrix, scheme, reference=train.matrix).toarray()
    np.testing.assert_allclose(model.score(changed), xc @ b, rtol=1e-4, atol=1e-4)
