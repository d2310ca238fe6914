"""Retrieval: the exact path reproduces the model's ranking, the ANN paths find >= 95 % of the
exact top 100 on real HetRec ALS vectors, and the automatic choice follows the catalogue size.
Recall on large synthetic catalogues (50k-1M clustered vectors) is a benchmark, not a test:
``benchmarks/ann_recall.py``."""

import os

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError, schema
from musicrec.features.interactions import Histories, Interactions
from musicrec.models.als import ALS
from musicrec.models.most_popular import MostPopular
from musicrec.serve.retrieval import ExactRetriever, FaissRetriever, has_vectors, make_retriever, recall_at_k

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def hetrec_train(shared_data) -> Interactions:
    """Every HetRec Last.fm 2K user-artist play count (1,892 users, 17,632 artists)."""
    raw = pl.read_csv(os.path.join(shared_data, "hetrec2011-lastfm-2k", "user_artists.dat"), separator="\t")
    events = raw.select(pl.col("userID").alias("user_id"), pl.col("artistID").alias("item_id"),
                        pl.col("weight").cast(pl.Float64))
    return Interactions.from_frame(schema.conform(events, schema.SPLIT_EVENTS))


@pytest.fixture(scope="module")
def als(hetrec_train) -> ALS:
    return ALS(factors=32, iterations=3).fit(hetrec_train)


def clustered_vectors(n_items: int, dim: int, n_queries: int, seed: int = 0, norm_exponent: float = 0.3):
    """Item vectors (I, D) around sqrt(I) cluster directions with power-law norms (popular
    items are long; ``norm_exponent=0``: unit vectors), and queries (B, D) near one cluster
    plus a little of another."""
    rng = np.random.default_rng(seed)
    n_clusters = int(np.sqrt(n_items))
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    dirs = centres[rng.integers(0, n_clusters, n_items)] + 0.7 * rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    norms = (rng.permutation(n_items) + 1.0) ** -norm_exponent
    items = (dirs * norms[:, None]).astype(np.float32)
    queries = (centres[rng.integers(0, n_clusters, n_queries)]
               + rng.uniform(0, 0.5, (n_queries, 1)) * centres[rng.integers(0, n_clusters, n_queries)]
               + 0.3 * rng.standard_normal((n_queries, dim)) / np.sqrt(dim))
    return items, queries.astype(np.float32)


def test_exact_equals_model_recommend(als, hetrec_train):
    hist = hetrec_train.histories(np.arange(0, 1892, 40))
    new = Histories.from_sequences([[hetrec_train.items.index([289])[0], 5, 17]], hetrec_train.n_items)
    exact = ExactRetriever(als.item_vectors())
    for h in (hist, new):
        idx, scores = exact.search(als.query_vectors(h), 50)
        ref_idx, ref_scores = als.recommend(h, k=50, exclude_seen=False)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_on_real_als_vectors(kind, als, hetrec_train):
    items = als.item_vectors()
    queries = als.query_vectors(hetrec_train.histories(np.arange(hetrec_train.n_users)))
    recall = recall_at_k(FaissRetriever(items, kind), ExactRetriever(items), queries, k=100)
    assert recall >= 0.95, recall


def test_exact_head_lifts_recall(als, hetrec_train):
    # without the exactly scored head of long vectors, a plain inner-product IVF index misses
    # many of the popular, long vectors that fill the top 100: the reason the head exists
    items = als.item_vectors()
    queries = als.query_vectors(hetrec_train.histories(np.arange(0, hetrec_train.n_users, 4)))
    exact = ExactRetriever(items)
    bare = recall_at_k(FaissRetriever(items, "ivf", head_share=0.0), exact, queries, k=100)
    headed = recall_at_k(FaissRetriever(items, "ivf"), exact, queries, k=100)
    assert bare < headed - 0.1, (bare, headed)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_scores_are_exact_and_sorted(kind):
    items, queries = clustered_vectors(5_000, 16, 20, seed=1)
    idx, scores = FaissRetriever(items, kind).search(queries, 30)
    assert idx.shape == scores.shape == (20, 30) and idx.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries, items[idx]), rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert all(len(set(row)) == 30 for row in idx.tolist())


def test_k_is_capped_at_the_catalogue_size():
    items, queries = clustered_vectors(300, 8, 3)
    for retriever in (ExactRetriever(items), FaissRetriever(items, "hnsw"), FaissRetriever(items, "ivf")):
        idx, _ = retriever.search(queries, 1000)
        assert idx.shape == (3, 300)
        assert all(sorted(row) == list(range(300)) for row in idx.tolist())


def test_auto_mode_follows_the_size_of_the_item_vectors():
    small, _ = clustered_vectors(500, 8, 1)         # 4,000 numbers
    large, _ = clustered_vectors(3_000, 8, 1)       # 24,000 numbers
    assert make_retriever(small, exact_max_floats=8_000).kind == "exact"
    assert make_retriever(large, exact_max_floats=8_000).kind == "hnsw"
    assert make_retriever(large, mode="exact", exact_max_floats=8_000).kind == "exact"
    # few items of many dimensions cost as much to score exactly as many items of few
    wide = np.repeat(small, 6, axis=1)              # 500 x 48 = 24,000 numbers
    assert make_retriever(wide, exact_max_floats=8_000).kind == "hnsw"
    assert make_retriever(small, mode="ivf").kind == "ivf"
    assert make_retriever(small, mode="hnsw").n_items == 500


def test_has_vectors(als, hetrec_train):
    assert has_vectors(als)
    assert not has_vectors(MostPopular().fit(hetrec_train))


@pytest.mark.parametrize("call, message", [
    (lambda v: make_retriever(v, mode="lsh"), "unknown retrieval mode"),
    (lambda v: ExactRetriever(v).search(np.ones((2, 3), np.float32), 5), "dimensions"),
    (lambda v: ExactRetriever(v).search(np.ones((2, 8), np.float32), 0), "k must be"),
    (lambda v: ExactRetriever(np.full((4, 8), np.nan)), "NaN"),
    (lambda v: ExactRetriever(np.zeros((0, 8))), "no item vectors"),
    (lambda v: FaissRetriever(v, "flat"), "unknown ANN index"),
])
def test_clear_errors(call, message):
    items, _ = clustered_vectors(100, 8, 1)
    with pytest.raises(MusicrecError, match=message):
        call(items)


def test_memmap_top_k_matches_dense_scoring(tmp_path):
    from musicrec.serve.retrieval import memmap_item_vectors, top_k_memmap

    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(1000, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    np.save(tmp_path / "items.npy", items)
    mapped = memmap_item_vectors(str(tmp_path / "items.npy"))
    assert isinstance(mapped, np.memmap)
    idx, scores = top_k_memmap(queries, mapped, k=10, block_rows=64)
    dense = queries @ items.T
    np.testing.assert_array_equal(idx, np.argsort(-dense, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(dense, idx, 1), rtol=1e-6)
