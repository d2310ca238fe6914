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
    # SASRec's padded positions still take part in attention (as keys): no cutting there
    assert not registry.model_class("sasrec").padding_free
