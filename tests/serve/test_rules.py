"""Business rules after retrieval: properties over random candidate lists (hypothesis), plus
small cases with a known answer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicrec import MusicrecError
from musicrec.serve.rules import cosine_similarity, rerank

N_ITEMS = 40


@st.composite
def scenarios(draw):
    """Candidates (possibly repeated, best first), scores, exclusions, artists and vectors."""
    n = draw(st.integers(0, 30))
    cand = np.array(draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=n, max_size=n)), dtype=np.int64)
    raw = draw(st.lists(st.one_of(st.floats(-5, 5, allow_nan=False, width=32), st.just(-np.inf)),
                        min_size=n, max_size=n))
    scores = np.sort(np.array(raw, dtype=np.float32))[::-1].copy()
    exclude = np.array(draw(st.lists(st.integers(0, N_ITEMS - 1), max_size=10)), dtype=np.int64)
    artist_of = np.array(draw(st.lists(st.integers(-1, 5), min_size=N_ITEMS, max_size=N_ITEMS)), dtype=np.int64)
    seed = draw(st.integers(0, 2**16))
    vectors = np.random.default_rng(seed).standard_normal((N_ITEMS, 4)).astype(np.float32)
    return cand, scores, exclude, artist_of, vectors


def plain_topk(cand, scores, exclude, k):
    """The reference: first k showable, non-excluded, first-seen candidates."""
    out, seen = [], set()
    for c, s in zip(cand.tolist(), scores.tolist()):
        if np.isfinite(s) and c not in set(exclude.tolist()) and c not in seen:
            out.append(c)
            seen.add(c)
    return out[:k]


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(0, 12), st.one_of(st.none(), st.integers(1, 3)),
       st.one_of(st.none(), st.floats(0, 1)))
def test_rules_always_hold(case, k, cap, lam):
    cand, scores, exclude, artist_of, vectors = case
    idx, vals = rerank(cand, scores, k, exclude=exclude, artist_of=artist_of, max_per_artist=cap,
                       mmr_lambda=lam, item_vectors=vectors)
    assert idx.dtype == np.int64 and vals.dtype == np.float32 and len(idx) == len(vals) <= k
    assert set(idx.tolist()) <= set(cand.tolist())                     # a subset of the candidates
    assert len(set(idx.tolist())) == len(idx)                          # no duplicates
    assert not set(idx.tolist()) & set(exclude.tolist())               # never an excluded item
    assert np.isfinite(vals).all()                                     # never an unshowable one
    if cap is not None:
        artists = artist_of[idx]
        known = artists[artists >= 0]
        assert (np.bincount(known).max() if len(known) else 0) <= cap  # the cap per artist holds
    # scores are the candidates' own
    first_score = {}
    for c, s in zip(cand.tolist(), scores.tolist()):
        first_score.setdefault(c, s)
    np.testing.assert_array_equal(vals, [first_score[i] for i in idx.tolist()])
    # as many items as the rules allow: without a cap, min(k, what is left)
    if cap is None:
        assert len(idx) == min(k, len(plain_topk(cand, scores, exclude, N_ITEMS)))


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(0, 12))
def test_lambda_one_is_plain_top_k(case, k):
    cand, scores, exclude, _, vectors = case
    expected = plain_topk(cand, scores, exclude, k)
    for lam in (None, 1.0):
        idx, _ = rerank(cand, scores, k, exclude=exclude, mmr_lambda=lam, item_vectors=vectors)
        assert idx.tolist() == expected


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.integers(1, 12), st.floats(0, 1))
def test_mmr_first_pick_is_the_best(case, k, lam):
    cand, scores, exclude, _, vectors = case
    idx, _ = rerank(cand, scores, k, exclude=exclude, mmr_lambda=lam, item_vectors=vectors)
    expected = plain_topk(cand, scores, exclude, 1)
    # nothing picked yet, so no penalty: the most relevant candidate comes first (for lambda > 0)
    if expected and lam > 0:
        assert idx[0] == expected[0]


def test_artist_cap_skips_to_the_next_artist():
    cand = np.array([0, 1, 2, 3, 4])
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    artist_of = np.array([7, 7, 7, 8, -1])
    idx, vals = rerank(cand, scores, 4, artist_of=artist_of, max_per_artist=2)
    assert idx.tolist() == [0, 1, 3, 4]
    assert vals.tolist() == [5.0, 4.0, 2.0, 1.0]


def test_mmr_prefers_a_different_direction():
    # items 0 and 1 point the same way, item 2 elsewhere; 1 is more relevant than 2
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    cand, scores = np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5])
    plain, _ = rerank(cand, scores, 2, mmr_lambda=1.0, item_vectors=vectors)
    diverse, _ = rerank(cand, scores, 2, mmr_lambda=0.3, item_vectors=vectors)
    assert plain.tolist() == [0, 1]
    assert diverse.tolist() == [0, 2]
    # the same through a similarity callable (models without vectors)
    via_callable, _ = rerank(cand, scores, 2, mmr_lambda=0.3, similarity=lambda idx: cosine_similarity(vectors[idx]))
    assert via_callable.tolist() == [0, 2]


def test_more_diversity_lowers_redundancy():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    q = rng.standard_normal(8).astype(np.float32)
    scores = vectors @ q
    cand = np.argsort(-scores)[:100]

    def redundancy(lam):
        idx, _ = rerank(cand, scores[cand], 10, mmr_lambda=lam, item_vectors=vectors)
        sim = cosine_similarity(vectors[idx])
        return sim[np.triu_indices(len(idx), 1)].mean()

    assert redundancy(0.3) < redundancy(1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": -1}, "k must be"),
    ({"k": 3, "max_per_artist": 0, "artist_of": np.zeros(5, np.int64)}, "max_per_artist"),
    ({"k": 3, "max_per_artist": 2}, "artist"),
    ({"k": 3, "mmr_lambda": 1.5, "item_vectors": np.eye(5)}, "lambda"),
    ({"k": 3, "mmr_lambda": 0.5}, "item vectors or an item similarity"),
])
def test_invalid_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(MusicrecError, match=message):
        rerank(np.arange(5), np.arange(5, 0, -1), **kwargs)


def test_mismatched_lengths_are_a_clear_error():
    with pytest.raises(MusicrecError, match="scores"):
        rerank(np.arange(5), np.ones(4), 3)
