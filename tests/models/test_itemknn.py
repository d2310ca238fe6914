import numpy as np
import scipy.sparse as sp
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.itemknn import ItemKNN, cosine_similarity, top_per_row

# users x items: u0 plays 0,1; u1 plays 0,2; u2 plays 0,1,2
X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=np.float32))
S01 = 2 / (np.sqrt(3) * np.sqrt(2) + 1)     # dot 2, norms sqrt(3), sqrt(2), shrink 1
S12 = 1 / (np.sqrt(2) * np.sqrt(2) + 1)     # dot 1


def test_shrunk_cosine_by_hand():
    sim = cosine_similarity(X, shrink=1.0).toarray()
    expected = np.array([[0, S01, S01], [S01, 0, S12], [S01, S12, 0]])
    np.testing.assert_allclose(sim, expected, rtol=1e-6)


def test_top_per_row_keeps_largest_and_breaks_ties_low():
    m = sp.csr_matrix(np.array([[0, 3, 3, 1], [5, 0, 2, 9]], dtype=np.float32))
    np.testing.assert_array_equal(top_per_row(m, 2).toarray(), [[0, 3, 3, 0], [5, 0, 0, 9]])


def test_model_scores_with_one_neighbor():
    train = tiny_interactions([[0, 1], [0, 2], [0, 1, 2]])
    model = ItemKNN(neighbors=1, shrink=1.0, weighting="binary").fit(train)
    # neighbours: item 0 -> 1 (tie with 2, lower index), item 1 -> 0, item 2 -> 0
    np.testing.assert_allclose(model.item_similarity(np.array([0, 1, 2])),
                               [[0, S01, 0], [S01, 0, 0], [S01, 0, 0]], rtol=1e-6)
    # history {1}: item 0 counts 1 among its neighbours, item 2 does not
    scores = model.score(Histories.from_sequences([[1]], 3))
    np.testing.assert_allclose(scores, [[S01, 0, 0]], rtol=1e-6)
