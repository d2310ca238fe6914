import numpy as np
import pytest
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.sknn import SKNN, prefix_vectors

# three sessions, s2 the most recent; item 5 appears only so popularity has a tie-breaker
SESSIONS = [[0, 1, 2], [1, 3], [2, 3, 4, 5]]
R3, R2 = 1 / np.sqrt(3), 1 / np.sqrt(2)


def test_cosine_neighbours_by_hand():
    model = SKNN(k=10, sample_size=0, position_decay="none").fit(tiny_interactions(SESSIONS))
    sims = model.neighbors(Histories.from_sequences([[1]], 6)).toarray()[0]
    np.testing.assert_allclose(sims, [R3, R2, 0.0], rtol=1e-6)
    scores = model.score(Histories.from_sequences([[1]], 6))[0]
    np.testing.assert_allclose(scores[:4], [R3, R3 + R2, R3, R2], rtol=1e-6)
    assert scores[4] < 0 and scores[5] < 0      # no neighbour has them


def test_k_and_sample_size_limit_neighbours():
    train = tiny_interactions(SESSIONS)
    hist = Histories.from_sequences([[1]], 6)
    top1 = SKNN(k=1, sample_size=0, position_decay="none").fit(train)
    np.testing.assert_allclose(top1.neighbors(hist).toarray()[0], [0, R2, 0], rtol=1e-6)
    # sample the single most recent candidate session: s1 (s2 shares no item with [1])
    recent = SKNN(k=10, sample_size=1, position_decay="none").fit(train)
    np.testing.assert_allclose(recent.neighbors(Histories.from_sequences([[0, 3]], 6)).toarray()[0],
                               [0, 0, 1 / np.sqrt(2 * 4)], rtol=1e-6)


def test_linear_position_decay():
    vec = prefix_vectors([[0, 1, 0, 2]], 3, "linear").toarray()[0]
    np.testing.assert_allclose(vec, [0.75, 0.5, 1.0])   # repeated 0 keeps its later position
    model = SKNN(k=10, sample_size=0, position_decay="linear").fit(tiny_interactions(SESSIONS))
    sims = model.neighbors(Histories.from_sequences([[0, 1]], 6)).toarray()[0]
    # weights 0.5 (item 0) and 1 (item 1); two distinct prefix items
    np.testing.assert_allclose(sims, [1.5 / np.sqrt(2 * 3), 1 / np.sqrt(2 * 2), 0], rtol=1e-6)


def test_known_user_skips_own_sessions():
    train = tiny_interactions(SESSIONS, users=[0, 1, 0])
    model = SKNN(k=10, sample_size=0, position_decay="none").fit(train)
    sims = model.neighbors(Histories(train.matrix[[0]], [np.array([1])], np.array([0]))).toarray()[0]
    assert sims[0] == 0 and sims[2] == 0 and sims[1] > 0


def test_item_similarity_is_session_cosine():
    model = SKNN().fit(tiny_interactions(SESSIONS))
    sim = model.item_similarity(np.array([3]))[0]
    # item 3 is in s1 and s2; item 2 in s0 and s2 (one shared), item 4 in s2 only
    np.testing.assert_allclose(sim[[0, 2, 4]], [0.0, 1 / 2, 1 / np.sqrt(2)], rtol=1e-6)


@pytest.mark.parametrize("decay", ["linear", "none"])
@pytest.mark.parametrize("sample_size", [0, 3])
def test_one_history_path_equals_the_batched_one(decay, sample_size):
    # a served request (one row) is scored by index gathers, batches by sparse products
    rng = np.random.default_rng(5)
    sessions = [list(rng.choice(30, size=rng.integers(1, 8), replace=False)) for _ in range(60)]
    train = tiny_interactions(sessions)
    model = SKNN(k=4, sample_size=sample_size, position_decay=decay).fit(train)
    rows = [np.array([3, 7, 3, 11]), np.array([29]), np.array([], np.int64), np.array([0, 1, 2, 3, 4, 5])]
    users = np.array([-1, -1, -1, 2])
    batch = model.score(Histories.from_sequences(rows, 30, users=users))
    for r, (seq, u) in enumerate(zip(rows, users)):
        one = model.score(Histories.from_sequences([seq], 30, users=np.array([u])))
        np.testing.assert_allclose(one[0], batch[r], rtol=1e-5, atol=1e-6)
