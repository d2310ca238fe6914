"""NextItNet: learns a fixed cycle, is causal, and ignores how much padding precedes a history."""

import numpy as np
import pytest
import torch
from models_synthetic import tiny_interactions

from musicrec import MusicrecError
from musicrec.features.interactions import Histories
from musicrec.models.nextitnet import NextItNet, NextItNetNet, parse_dilations

CYCLE = [3, 0, 6, 1, 7, 2, 5, 4]   # every session walks this cycle from a random start


def cycle_sessions(n: int = 40, length: int = 10, seed: int = 0) -> list[list[int]]:
    starts = np.random.default_rng(seed).integers(0, len(CYCLE), n)
    return [[CYCLE[(s + j) % len(CYCLE)] for j in range(length)] for s in starts]


def test_learns_a_cycle():
    model = NextItNet(embedding_dim=16, dilations="1,2", max_len=8, epochs=30, batch_size=40,
                      learning_rate=0.01, n_negatives=5, dropout=0.0).fit(tiny_interactions(cycle_sessions()))
    prefixes = [[CYCLE[(p - 2) % 8], CYCLE[(p - 1) % 8], CYCLE[p]] for p in range(8)]
    idx, _ = model.recommend(Histories.from_sequences(prefixes, 8), k=1, exclude_seen=False)
    hits = idx[:, 0] == [CYCLE[(p + 1) % 8] for p in range(8)]
    assert hits.mean() >= 0.9


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_hidden_state_never_sees_later_items(norm):
    torch.manual_seed(0)
    net = NextItNetNet(n_items=20, dim=8, dilations=[1, 2, 4], kernel_size=3, dropout=0.0, norm=norm).eval()
    seq = torch.randint(1, 21, (4, 12))
    changed = seq.clone()
    t = 5
    changed[:, t + 1:] = torch.randint(1, 21, (4, 12 - t - 1))
    with torch.no_grad():
        a, b = net(seq), net(changed)
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


def test_receptive_field():
    # kernel 3, dilations 1 and 2: each block sees back 2d + 4d, so 1 + 6 * (1 + 2) = 19 plays
    model = NextItNet(dilations="1,2", kernel_size=3)
    assert model.receptive_field() == 19
    torch.manual_seed(0)
    net = NextItNetNet(n_items=20, dim=8, dilations=[1, 2], kernel_size=3, dropout=0.0, norm="layer").eval()
    seq = torch.randint(1, 21, (1, 25))
    last = 24
    with torch.no_grad():
        base = net(seq)[0, last]
        for back, influences in ((18, True), (19, False)):
            other = seq.clone()
            other[0, last - back] = other[0, last - back] % 20 + 1
            assert (not torch.allclose(net(other)[0, last], base)) == influences


def test_padding_does_not_change_the_state():
    torch.manual_seed(0)
    net = NextItNetNet(n_items=20, dim=8, dilations=[1, 2], kernel_size=3, dropout=0.0, norm="layer").eval()
    with torch.no_grad():
        short = net(torch.tensor([[0, 3, 4]]))[0, -1]
        long = net(torch.tensor([[0, 0, 0, 0, 0, 3, 4]]))[0, -1]
    torch.testing.assert_close(short, long)


def test_dilations_as_text_or_list():
    assert parse_dilations("1, 2,4") == parse_dilations([1, 2, 4]) == [1, 2, 4]
    with pytest.raises(MusicrecError, match="dilations"):
        NextItNet(dilations="1,x").fit(tiny_interactions(cycle_sessions(4)))
