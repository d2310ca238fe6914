"""SASRec's output embeddings: tied, separate, or chosen from how much the data repeat."""

import numpy as np
import pytest
from models_synthetic import tiny_interactions

from musicrec import MusicrecError
from musicrec.features.interactions import Histories
from musicrec.models.registry import create, load_model
from musicrec.models.sasrec import REPEAT_TIED, repeat_share

SMALL = {"embedding_dim": 8, "n_layers": 1, "max_len": 6, "epochs": 2, "n_negatives": 4}


def test_repeat_share_counts_plays_already_in_their_session():
    # session 0: 0 1 0 1 -> two of three later plays repeat; session 1: 2 3 -> none; a lone play counts nothing
    train = tiny_interactions([[0, 1, 0, 1], [2, 3], [4]])
    assert repeat_share(train) == pytest.approx(2 / 4)
    # the same item in two sessions is not a repeat
    assert repeat_share(tiny_interactions([[0, 1], [0, 1]])) == 0.0
    assert repeat_share(tiny_interactions([[0], [1]])) == 0.0


@pytest.mark.parametrize(("sessions", "tied"), [
    ([[0, 1, 0, 1, 0], [2, 3, 2, 3]], True),          # replays: the output table is the input one
    ([[0, 1, 2, 3], [4, 5, 6, 7], [0, 2, 4, 6]], False),   # always something new: a table of its own
])
def test_auto_ties_when_the_data_repeat(sessions, tied, tmp_path):
    train = tiny_interactions(sessions)
    assert (repeat_share(train) >= REPEAT_TIED) == tied
    model = create("sasrec", **SMALL).fit(train)
    assert model.tied() == tied and (model.net_.out_emb is None) == tied
    # loading builds the same network from the saved interactions
    model.save(str(tmp_path / "m"))
    again = load_model(str(tmp_path / "m"))
    h = Histories.from_sequences([[0, 1], [2]], train.n_items)
    np.testing.assert_allclose(again.score(h), model.score(h), rtol=1e-5)


def test_explicit_choice_wins_and_bad_values_are_one_line_errors():
    train = tiny_interactions([[0, 1, 0, 1, 0], [2, 3, 2, 3]])
    model = create("sasrec", tie_embeddings=False, **SMALL).fit(train)
    assert model.net_.out_emb is not None
    out = model.item_vectors()
    assert out.shape == (train.n_items, 8)
    assert not np.allclose(out, model.net_.item_emb.weight[1:].detach().numpy())
    # similar items read both tables: an item is its own nearest, and never its own answer
    sims = model.item_similarity(np.array([0, 2]))
    assert sims.shape == (2, train.n_items) and sims[0].argmax() == 0 and sims[1].argmax() == 2
    idx, _ = model.similar_items([0], k=2)
    assert 0 not in idx[0] and len(idx[0]) == 2
    with pytest.raises(MusicrecError, match="tie_embeddings"):
        create("sasrec", tie_embeddings="sometimes", **SMALL).fit(train)


def test_similar_items_under_a_repeat_head():
    train = tiny_interactions([[0, 1, 2, 3], [4, 5, 6, 7], [0, 2, 4, 6]])
    model = create("sasrec", repeat_head=True, loss="ce", **{**SMALL, "n_negatives": 1}).fit(train)
    sims = model.item_similarity(np.array([1]))
    assert sims.shape == (1, train.n_items) and sims[0].argmax() == 1
