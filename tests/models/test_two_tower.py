"""Two-tower model: cold items placed by content, persistence of the content path."""

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from models_synthetic import GROUP_A, GROUP_B, N_ITEMS, synthetic_events

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.features.vocab import IdMap
from musicrec.models import registry

COLD = np.array([17, 18, 19, 37, 38, 39])   # no training plays; group A: 17-19, group B: 37-39
PARAMS = {"embedding_dim": 16, "epochs": 30, "batch_size": 64, "learning_rate": 0.01, "n_negatives": 20}


def content(n_items=N_ITEMS, seed=0) -> sp.csr_matrix:
    """Tag-like rows: a group tag plus one of three noisy sub-tags (popular items: tag 8)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(n_items):
        if i in GROUP_A:
            tags = [0, 1 + rng.integers(3)]
        elif i in GROUP_B:
            tags = [4, 5 + rng.integers(3)]
        else:
            tags = [8]
        rows += [i] * len(tags)
        cols += tags
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_items, 9))
    return sp.csr_matrix(m.multiply(1.0 / np.sqrt(m.sum(axis=1))), dtype=np.float32)


@pytest.fixture(scope="module")
def train() -> Interactions:
    events = synthetic_events().filter(~pl.col("item_id").is_in(COLD.tolist()))
    return Interactions.from_frame(events, items=IdMap.fit(np.arange(N_ITEMS)))


@pytest.fixture(scope="module")
def fitted(train):
    return registry.create("two-tower", **PARAMS).set_item_content(content()).fit(train)


def test_cold_items_are_ranked_by_content(fitted, train):
    assert train.matrix[:, COLD].nnz == 0
    hist = Histories.from_sequences([[0, 1, 2], [20, 21, 22], [5]], N_ITEMS)
    scores = fitted.score(hist)[:, COLD]
    top = COLD[np.argsort(-scores, axis=1)[:, :3]]
    assert np.isin(top[0], GROUP_A).all() and np.isin(top[1], GROUP_B).all() and np.isin(top[2], GROUP_A).all()


def test_without_content_cold_items_score_zero(train):
    model = registry.create("two-tower", **PARAMS).fit(train)
    hist = Histories.from_sequences([[0, 1, 2]], N_ITEMS)
    np.testing.assert_array_equal(model.score(hist)[:, COLD], 0.0)
    assert model.score(hist)[0, 3:17].mean() > model.score(hist)[0, 23:37].mean()


def test_content_must_match_catalogue(train):
    model = registry.create("two-tower", **PARAMS).set_item_content(content(N_ITEMS - 1))
    with pytest.raises(MusicrecError, match="two-tower: item content has 43 rows"):
        model.fit(train)
    with pytest.raises(MusicrecError, match="NaN"):
        registry.create("two-tower").set_item_content(np.full((2, 2), np.nan))


def test_save_load_keeps_content(fitted, tmp_path):
    fitted.save(str(tmp_path / "tt"))
    loaded = registry.load_model(str(tmp_path / "tt"))
    assert (loaded.content_ != fitted.content_).nnz == 0
    hist = Histories.from_sequences([[0, 1, 2], [30]], N_ITEMS)
    np.testing.assert_array_equal(loaded.score(hist), fitted.score(hist))
    np.testing.assert_allclose(loaded.query_vectors(hist) @ loaded.item_vectors().T, fitted.score(hist),
                               rtol=1e-5, atol=1e-5)


def test_query_builds_only_the_history_towers(fitted):
    # serving: query_vectors computes the towers of the history's items, not the catalogue's;
    # the same queries as from the full item table (also for an empty history and repeats)
    import torch

    hist = Histories.from_sequences([[0, 1, 1, 2], [], [30], COLD[:2]], N_ITEMS)
    with torch.inference_mode():
        items = fitted._items()
        want = np.vstack([q.numpy() for _, q, _ in fitted._queries(hist, 2, items)])
    np.testing.assert_allclose(fitted.query_vectors(hist, batch_size=2), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(want[1], np.r_[np.zeros(want.shape[1] - 1), 1.0], atol=1e-7)
