"""GRU4Rec: causal, padding-independent hidden states in every input mode; learns a fixed
cycle; BPR-max trains; the repeat head option is validated."""

import numpy as np
import pytest
import torch
from models_synthetic import tiny_interactions

from musicrec import MusicrecError
from musicrec.features.interactions import Histories
from musicrec.models.gru4rec import GRU4Rec, GRU4RecNet
from musicrec.models.sasrec import SASRec

# a fixed cycle through 6 items: 0 -> 3 -> 1 -> 5 -> 2 -> 4 -> 0
CYCLE = [0, 3, 1, 5, 2, 4]
NEXT = {a: b for a, b in zip(CYCLE, CYCLE[1:] + CYCLE[:1])}
FAST = dict(hidden_size=16, max_len=8, epochs=40, batch_size=16, learning_rate=0.02, n_negatives=4, dropout_hidden=0.0)


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models: several threads only add synchronisation cost on a shared CPU
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def cyclic_sessions(n: int = 60, length: int = 8, seed: int = 0) -> list[list[int]]:
    """Sessions of ``length`` plays following CYCLE from random starts (so they repeat items)."""
    starts = np.random.default_rng(seed).integers(0, len(CYCLE), size=n)
    return [[CYCLE[(s + k) % len(CYCLE)] for k in range(length)] for s in starts]


def top1_hit_rate(model, prefixes: list[list[int]]) -> float:
    scores = model.score(Histories.from_sequences(prefixes, len(CYCLE)))
    return float(np.mean(scores.argmax(axis=1) == [NEXT[p[-1]] for p in prefixes]))


PREFIXES = [s[:k] for s in cyclic_sessions(12, 8, seed=1) for k in (1, 3, 7)]


@pytest.mark.parametrize("params", [
    {},                                                     # constrained embedding, sampled softmax
    {"constrained_embedding": False, "embedding_dim": 0},   # one-hot input
    {"constrained_embedding": False, "embedding_dim": 8, "loss": "bpr-max", "n_layers": 2},
    {"loss": "ce", "repeat_head": True},
], ids=["constrained", "one-hot", "embedding-bprmax-2layers", "repeat-head"])
@pytest.mark.slow      # trains a network per case
def test_learns_a_cycle(params):
    model = GRU4Rec(**{**FAST, **params}).fit(tiny_interactions(cyclic_sessions()))
    assert top1_hit_rate(model, PREFIXES) >= 0.9


@pytest.mark.slow      # trains a network
def test_sasrec_with_repeat_head_learns_a_cycle():
    model = SASRec(embedding_dim=16, max_len=8, epochs=40, batch_size=16, learning_rate=0.01, dropout=0.0,
                   loss="ce", repeat_head=True).fit(tiny_interactions(cyclic_sessions()))
    assert top1_hit_rate(model, PREFIXES) >= 0.9


@pytest.mark.parametrize("constrained,embedding_dim", [(True, 0), (False, 0), (False, 6)])
def test_hidden_states_are_causal_and_ignore_padding(constrained, embedding_dim):
    torch.manual_seed(0)
    net = GRU4RecNet(10, 8, 2, embedding_dim, constrained, 0.0, 0.0, "layer", True).eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7]])
    b = torch.tensor([[0, 0, 3, 4, 9, 1, 2]])           # differs from position 4 on
    with torch.no_grad():
        ha, hb = net(a), net(b)
        # up to position 3 nothing may change; afterwards it must (the test can fail)
        torch.testing.assert_close(ha[:, :4], hb[:, :4])
        assert (ha[:, 4:] - hb[:, 4:]).abs().amax() > 1e-3
        # the same session with more or less padding ends in the same state
        padded, short = net(torch.tensor([[0, 0, 0, 0, 0, 3, 4]])), net(torch.tensor([[3, 4]]))
        torch.testing.assert_close(padded[:, -1], short[:, -1])
        # positions before the session hold the zero start state: scores there are the output bias
        net.out_bias.normal_()
        torch.testing.assert_close(ha[0, :2] @ net.item_embeddings().T, net.out_bias.expand(2, -1))


def test_output_bias_is_last_embedding_column():
    net = GRU4RecNet(5, 4, 1, 0, True, 0.0, 0.0, "none", True)
    with torch.no_grad():
        net.out_bias.copy_(torch.arange(5.0))
    emb = net.item_embeddings()
    assert emb.shape == (5, 5)
    np.testing.assert_array_equal(emb[:, -1].detach().numpy(), np.arange(5.0))
    assert (net(torch.tensor([[1, 2]]))[..., -1] == 1).all()


@pytest.mark.parametrize("params,match", [
    ({"loss": "sampled", "repeat_head": True}, "repeat_head=True needs loss='ce'"),
    ({"repeat_head": "yes"}, "repeat_head must be True or False"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"embedding_dim": -1}, "embedding_dim"),
])
def test_invalid_settings(params, match):
    with pytest.raises(MusicrecError, match=match):
        GRU4Rec(**params).fit(tiny_interactions([[0, 1, 2]]))


def test_sasrec_repeat_head_needs_full_softmax():
    with pytest.raises(MusicrecError, match="sasrec: repeat_head=True needs loss='ce'"):
        SASRec(repeat_head=True).fit(tiny_interactions([[0, 1, 2]]))
