import numpy as np
import pytest
import scipy.sparse as sp

from musicrec import MusicrecError
from musicrec.features.weighting import weight

COUNTS = sp.csr_matrix(np.array([[4.0, 0.0, 1.0], [0.0, 2.0, 1.0]], dtype=np.float32))


def test_binary_and_log1p():
    np.testing.assert_array_equal(weight(COUNTS, "binary").toarray(), [[1, 0, 1], [0, 1, 1]])
    np.testing.assert_allclose(weight(COUNTS, "log1p").toarray(),
                               [[np.log(5), 0, np.log(2)], [0, np.log(3), np.log(2)]], rtol=1e-6)
    np.testing.assert_array_equal(weight(COUNTS, "raw").toarray(), COUNTS.toarray())


def test_bm25_by_hand():
    # 2 users; document frequencies: item0 1, item1 1, item2 2 -> idf = log(2) - log1p(df)
    # row sums 5 and 3, mean 4; length norm = 0.25 + 0.75 * sum / 4
    k1, b = 1.2, 0.75
    idf = np.log(2) - np.log1p(np.array([1, 1, 2]))
    norm = 0.25 + 0.75 * np.array([5, 3]) / 4
    expected = np.zeros((2, 3))
    for u, i, c in [(0, 0, 4), (0, 2, 1), (1, 1, 2), (1, 2, 1)]:
        expected[u, i] = c * (k1 + 1) / (k1 * norm[u] + c) * idf[i]
    np.testing.assert_allclose(weight(COUNTS, "bm25").toarray(), expected, rtol=1e-5)


def test_bm25_reference_uses_training_statistics_for_a_new_history():
    one = sp.csr_matrix(np.array([[0.0, 2.0, 1.0]], dtype=np.float32))
    with_ref = weight(one, "bm25", reference=COUNTS).toarray()
    np.testing.assert_allclose(with_ref, weight(COUNTS, "bm25").toarray()[1:2], rtol=1e-5)


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(MusicrecError, match="unknown weighting"):
        weight(COUNTS, "tfidf")


def test_input_is_not_modified():
    before = COUNTS.toarray().copy()
    weight(COUNTS, "log1p")
    np.testing.assert_array_equal(COUNTS.toarray(), before)


def test_bm25_reference_statistics_are_reused_only_for_the_same_matrix():
    ref = sp.csr_matrix(COUNTS, dtype=np.float32, copy=True)
    one = ref[1:2]
    first = weight(one, "bm25", reference=ref).toarray()
    np.testing.assert_allclose(weight(one, "bm25", reference=ref).toarray(), first)   # cached
    # another training matrix (one user more, who played item 0) changes the IDF: no stale cache
    bigger = sp.vstack([ref, sp.csr_matrix(np.eye(1, ref.shape[1], dtype=np.float32))]).tocsr()
    other = weight(one, "bm25", reference=bigger).toarray()
    assert not np.allclose(other, first)
    np.testing.assert_allclose(other, weight(bigger, "bm25").toarray()[1:2], rtol=1e-5)
