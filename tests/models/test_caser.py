"""Caser: window examples by hand, learns a fixed cycle, scores known and unknown users."""

import numpy as np
import pytest
import torch
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.caser import Caser, CaserNet, window_examples

CYCLE = [3, 0, 6, 1, 7, 2, 5, 4]   # every session walks this cycle from a random start


def cycle_sessions(n: int = 40, length: int = 10, seed: int = 0) -> list[list[int]]:
    starts = np.random.default_rng(seed).integers(0, len(CYCLE), n)
    return [[CYCLE[(s + j) % len(CYCLE)] for j in range(length)] for s in starts]


def test_window_examples_by_hand():
    # items shift by +1 (0 = padding); one example per position after the first of each sequence
    windows, targets, owners = window_examples([[0, 1, 2, 3], [5], [6, 7]], np.array([9, 8, 7]), 2, 2)
    np.testing.assert_array_equal(windows, [[0, 1], [1, 2], [2, 3], [0, 7]])
    np.testing.assert_array_equal(targets, [[2, 3], [3, 4], [4, 0], [8, 0]])
    np.testing.assert_array_equal(owners, [9, 9, 9, 7])


@pytest.mark.slow      # trains a network
def test_learns_a_cycle():
    model = Caser(embedding_dim=16, max_len=3, n_h=4, n_v=2, epochs=10, batch_size=40, learning_rate=0.01,
                  n_negatives=5, dropout=0.0).fit(tiny_interactions(cycle_sessions()))
    prefixes = [[CYCLE[(p - 2) % 8], CYCLE[(p - 1) % 8], CYCLE[p]] for p in range(8)]
    idx, _ = model.recommend(Histories.from_sequences(prefixes, 8), k=1, exclude_seen=False)
    assert (idx[:, 0] == [CYCLE[(p + 1) % 8] for p in range(8)]).mean() >= 0.9


def test_net_shapes_with_and_without_user():
    window = torch.tensor([[0, 0, 3], [1, 2, 3]])
    users = torch.tensor([-1, 4])
    for use_user, width in ((False, 8), (True, 16)):
        net = CaserNet(n_items=10, n_users=5, dim=8, window=3, n_h=2, n_v=1, dropout=0.0, use_user=use_user,
                       tie_embeddings=False).eval()
        hidden = net(window, users)
        assert hidden.shape == (2, width)
        assert net.logits(hidden).shape == (2, 10)
        assert net.logits(hidden, torch.tensor([1, 7])).shape == (2, 2)
    # an unknown user's profile part is zero
    assert torch.equal(hidden[0, 8:], torch.zeros(8))


@pytest.mark.slow      # trains a network
def test_unknown_users_are_scored():
    sessions = cycle_sessions(20)
    model = Caser(embedding_dim=8, max_len=3, n_h=2, n_v=2, epochs=2, batch_size=64, n_negatives=5,
                  use_user=True).fit(tiny_interactions(sessions, users=[s % 4 for s in range(20)]))
    seq = [CYCLE[0], CYCLE[1]]
    # a known user, a new listener (-1), and an index the model never saw (treated as new)
    scores = model.score(Histories.from_sequences([seq, seq, seq], 8, users=[2, -1, 99]))
    assert scores.shape == (3, 8) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[1], scores[2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(scores[0], scores[1])   # the known user's profile counts
    # without a user the score is z . W[:, :D] + b
    with torch.no_grad():
        z = model.net_(torch.tensor([[0, CYCLE[0] + 1, CYCLE[1] + 1]]), torch.tensor([-1]))[:, :8]
        expected = z @ model.net_.item_embeddings()[:, :8].T + model.net_.out_bias
    np.testing.assert_allclose(scores[1], expected[0].numpy(), rtol=1e-5, atol=1e-6)
