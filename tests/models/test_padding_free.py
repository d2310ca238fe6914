"""Sequence models whose states ignore left padding score short histories on a cut window:
the queries equal the ones from the full ``max_len`` window."""

import numpy as np
import pytest
import torch
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models import registry
from musicrec.models.neural import left_pad

SESSIONS = [[0, 3, 1, 5, 2, 4, 0, 3], [1, 5, 2], [4, 0, 3, 1, 5, 2, 4, 0]]


@pytest.mark.parametrize("name,params", [
    ("gru4rec", {"hidden_size": 8}),
    ("gru4rec", {"hidden_size": 8, "constrained_embedding": False, "embedding_dim": 0}),
    ("nextitnet", {"embedding_dim": 8, "dilations": "1,2"}),
])
def test_cut_window_gives_the_full_window_queries(name, params):
    torch.set_num_threads(1)
    model = registry.create(name, **params, max_len=12, epochs=1, batch_size=4, n_negatives=2).fit(
        tiny_interactions(SESSIONS))
    assert model.padding_free
    hist = Histories.from_sequences([[2], [0, 3, 1], [], [5, 2, 4, 0, 3, 1, 5, 2, 4, 0, 3, 1, 5]], model.train_.n_items)
    with torch.inference_mode():
        full = model.net_(torch.from_numpy(left_pad(hist.sequences, model.max_len)))[:, -1, :].numpy()
    for rows in ([0], [1], [2], [0, 1], [0, 1, 2, 3]):
        part = Histories.from_sequences([hist.sequences[r] for r in rows], model.train_.n_items)
        np.testing.assert_allclose(model.query_vectors(part), full[rows], rtol=1e-5, atol=1e-6)


def test_attention_models_keep_the_full_window():
    # SASRec's padded positions still take part in attention (as keys): torch scoring never cuts
    assert not registry.model_class("sasrec").padding_free
    assert registry.model_class("sasrec").counts_padding


def _sasrec(**params):
    torch.set_num_threads(1)
    return registry.create("sasrec", embedding_dim=8, n_heads=2, n_layers=2, max_len=12, epochs=1, batch_size=4,
                           n_negatives=2, tie_embeddings=True, **params).fit(tiny_interactions(SESSIONS))


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_sasrec_cut_window_told_its_length_gives_the_full_window_states(norm):
    model = _sasrec(norm=norm)
    net = model.net_.eval()
    seqs = [[2], [0, 3, 1], [5, 2, 4, 0, 3], []]
    with torch.inference_mode():
        full = net(torch.from_numpy(left_pad(seqs, model.max_len)))[:, -1, :].numpy()
        for rows in ([0], [1], [0, 1, 2, 3], [2, 3]):
            width = max(len(seqs[r]) for r in rows) + 1          # the longest history + one padding column
            cut = net(torch.from_numpy(left_pad([seqs[r] for r in rows], width)), model.max_len)[:, -1, :]
            np.testing.assert_allclose(cut.numpy(), full[rows], rtol=1e-5, atol=1e-5)
            # without its length the cut window is a different (shorter-padded) input
            plain = net(torch.from_numpy(left_pad([seqs[r] for r in rows], width)))[:, -1, :].numpy()
            if rows == [1]:
                assert np.abs(plain - full[rows]).max() > 1e-4


def test_sasrec_served_through_onnx_runs_on_cut_windows():
    from musicrec.models.compress import memory_scorer

    model = _sasrec()
    scorer = memory_scorer(model)
    assert scorer.trim and scorer.pad_columns == 1
    widths = []
    run = scorer.session.run

    class Spy:
        def run(self, names, feeds):
            widths.append(next(iter(feeds.values())).shape[1])
            return run(names, feeds)

    scorer.session = Spy()
    seqs = [[2], [0, 3, 1], [5, 2, 4, 0, 3, 1, 5, 2, 4, 0, 3, 1, 5]]
    windows = left_pad(seqs, model.max_len)
    with torch.inference_mode():
        full = model.net_.eval()(torch.from_numpy(windows))[:, -1, :].numpy()
    for rows, width in (([0], 2), ([1], 4), ([0, 1], 4), ([0, 1, 2], model.max_len)):
        got = scorer.queries(windows[rows])
        assert widths[-1] == width
        np.testing.assert_allclose(got, full[rows], rtol=1e-4, atol=1e-5)
