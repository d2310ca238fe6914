"""The repeat/explore head: a proper distribution, values by hand, NaN-free gradients, and it
learns to copy when the next play is always a repeat."""

import numpy as np
import pytest
import torch
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models import registry
from musicrec.models.gru4rec import GRU4Rec
from musicrec.models.repeat import RepeatExploreHead


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("mask_explore", [False, True])
def test_rows_are_distributions_with_finite_gradients(mask_explore):
    torch.manual_seed(0)
    head = RepeatExploreHead(4, max_len=5, mask_explore=mask_explore)
    items = torch.randn(3, 4, requires_grad=True)
    hidden = torch.randn(4, 4, requires_grad=True)
    seq = torch.tensor([[0, 0, 1, 2, 1],      # a repeated item
                        [0, 0, 0, 0, 0],      # empty session (predicting its first play)
                        [1, 2, 3, 1, 2],      # every item of the catalogue
                        [0, 0, 0, 0, 3]])
    out = head(hidden, seq, items)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(4))
    out[torch.arange(4), torch.tensor([0, 1, 2, 0])].sum().backward()
    assert torch.isfinite(items.grad).all() and torch.isfinite(hidden.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@torch.no_grad()
def test_values_by_hand():
    # zero query and item embeddings: attention is uniform over the plays, explore uniform
    # over the I = 4 items, the gate is sigmoid(0) = 1/2
    head = RepeatExploreHead(2, max_len=3)
    head.query.weight.zero_()
    head.gate.weight.zero_()
    head.gate.bias.zero_()
    seq = torch.tensor([[1, 2, 1], [0, 0, 0]])              # items 0, 1, 0; then an empty session
    p = head(torch.zeros(2, 2), seq, torch.zeros(4, 2)).exp().numpy()
    np.testing.assert_allclose(p[0], [0.5 * 2 / 3 + 0.5 / 4, 0.5 * 1 / 3 + 0.5 / 4, 0.5 / 4, 0.5 / 4], rtol=1e-6)
    np.testing.assert_allclose(p[1], [0.25] * 4, rtol=1e-6)   # no plays: explore only
    np.testing.assert_allclose(head.p_repeat(torch.zeros(2, 2), seq).numpy(), [0.5, 0.0])
    # masking the session's items out of explore leaves them only the repeat share
    head.mask_explore = True
    p = head(torch.zeros(1, 2), seq[:1], torch.zeros(4, 2)).exp().numpy()
    np.testing.assert_allclose(p[0], [0.5 * 2 / 3, 0.5 * 1 / 3, 0.25, 0.25], rtol=1e-6)


@torch.no_grad()
def test_recency_bias_favours_the_latest_play():
    head = RepeatExploreHead(2, max_len=3)
    head.query.weight.zero_()
    head.recency.copy_(torch.tensor([np.log(3.0), 0.0, 0.0]))   # most recent play x3
    p = head(torch.zeros(1, 2), torch.tensor([[0, 1, 2]]), torch.zeros(4, 2)).exp()
    p_rep = head.p_repeat(torch.zeros(1, 2), torch.tensor([[0, 1, 2]]))
    rep = (p[0] - (1 - p_rep) / 4) / p_rep                                # the repeat distribution
    np.testing.assert_allclose(rep.numpy(), [0.25, 0.75, 0.0, 0.0], rtol=1e-5, atol=1e-6)


def alternating_sessions(n: int, n_items: int = 30, length: int = 7, seed: int = 0) -> list[list[int]]:
    """a b a b ...: after two plays, the next one always repeats the play two steps back."""
    rng = np.random.default_rng(seed)
    pairs = [rng.choice(n_items, size=2, replace=False) for _ in range(n)]
    return [[int(p[k % 2]) for k in range(length)] for p in pairs]


@pytest.mark.parametrize("name,params", [
    ("gru4rec", dict(hidden_size=16, dropout_hidden=0.0, learning_rate=0.02)),
    ("sasrec", dict(embedding_dim=16, dropout=0.0, learning_rate=0.01)),
])
@pytest.mark.slow      # trains a network per case
def test_learns_to_repeat(name, params):
    train = tiny_interactions(alternating_sessions(150))
    model = registry.create(name, max_len=8, epochs=25, batch_size=32, loss="ce", repeat_head=True, **params).fit(train)
    # fresh pairs: only copying can predict them
    prefixes = [s[:k] for s in alternating_sessions(20, seed=1) for k in (2, 3, 5)]
    scores = model.score(Histories.from_sequences(prefixes, train.n_items))
    expected = [p[-2] for p in prefixes]
    assert np.mean(scores.argmax(1) == expected) >= 0.9
    with torch.no_grad():
        seq = torch.tensor([[0] * (8 - len(p)) + [i + 1 for i in p] for p in prefixes])
        p_repeat = model.net_.head.p_repeat(model.net_(seq)[:, -1], seq)
    assert p_repeat.min() > 0.8


def test_repeat_head_saves_and_loads(tmp_path):
    train = tiny_interactions(alternating_sessions(20))
    model = GRU4Rec(hidden_size=8, max_len=8, epochs=2, loss="ce", repeat_head=True).fit(train)
    model.save(str(tmp_path / "m"))
    loaded = registry.load_model(str(tmp_path / "m"))
    hist = Histories.from_sequences([[1, 2, 1], []], train.n_items)
    np.testing.assert_array_equal(loaded.score(hist), model.score(hist))
