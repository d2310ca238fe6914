import math

import numpy as np
import pytest
import torch
from models_synthetic import tiny_interactions

from musicrec import MusicrecError
from musicrec.features.interactions import Histories
from musicrec.models.multvae import MultVAE, multvae_loss

# user 0 plays item 0 twice and item 1 once; user 1 plays item 2 three times
TOY = [[0, 0, 1], [2, 2, 2]]
SMALL = dict(hidden_dims=4, latent_dim=2, epochs=1, batch_size=2)


def test_loss_by_hand():
    # uniform softmax over 3 items; row 0 has two plays, row 1 one
    logits = torch.zeros(2, 3)
    x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    # KL = 0.5 * sum(exp(logvar) + mu^2 - 1 - logvar): row 0 -> 0.5, row 1 -> 0.5 * (1 - log 2)
    nll = (2 * math.log(3) + math.log(3)) / 2
    kl = (0.5 + 0.5 * (1 - math.log(2))) / 2
    for beta in (0.0, 0.3):
        assert float(multvae_loss(logits, x, mu, logvar, beta)) == pytest.approx(nll + beta * kl, rel=1e-6)


def fixed_net_model(weighting: str) -> MultVAE:
    """A model whose net ignores its input: mu = (1, 0), logvar = (log 2, 0), softmax (1/4, 1/2, 1/4)."""
    train = tiny_interactions(TOY)
    model = MultVAE(**SMALL, weighting=weighting, anneal_cap=0.5, total_anneal_steps=4).fit(train)
    with torch.no_grad():
        for p in model.net_.parameters():
            p.zero_()
        model.net_.encoder[-1].bias.copy_(torch.tensor([1.0, 0.0, math.log(2.0), 0.0]))
        model.net_.decoder[-1].bias.copy_(torch.tensor([0.0, math.log(2.0), 0.0]))
        model.net_.updates.zero_()   # restart the annealing schedule
    model._training_data(train)   # the weighted rows (kept only while training)
    return model


@pytest.mark.parametrize("weighting, nll", [
    # raw counts: row 0 = 2 log 4 + log 2, row 1 = 3 log 4 -> mean 5.5 log 2
    ("raw", 5.5 * math.log(2)),
    # binary: row 0 = log 4 + log 2, row 1 = log 4 -> mean 2.5 log 2
    ("binary", 2.5 * math.log(2)),
])
def test_training_loss_densifies_weights_and_anneals_beta(weighting, nll):
    model = fixed_net_model(weighting)
    kl = 0.5 * (2.0 + 1.0 - 1.0 - math.log(2.0))        # per user; both users share mu, logvar
    batch = {"user": torch.tensor([0, 1])}
    model.net_.train()   # sampling z and input dropout cannot matter: every weight is zero
    # beta = step / total_anneal_steps, capped at anneal_cap: 0, 0.25, 0.5, 0.5
    for beta in (0.0, 0.25, 0.5, 0.5):
        assert model._loss(model.net_, batch).item() == pytest.approx(nll + beta * kl, rel=1e-5)
    # evaluating (eval mode) does not advance the schedule
    model.net_.eval()
    assert model._loss(model.net_, batch).item() == pytest.approx(nll + 0.5 * kl, rel=1e-5)
    assert int(model.net_.updates) == 4


def test_seeded_fits_are_identical(synthetic):
    params = dict(hidden_dims=16, latent_dim=4, epochs=3, batch_size=16)
    hist = synthetic.histories([0, 50, 99])
    a = MultVAE(**params, seed=3).fit(synthetic)
    b = MultVAE(**params, seed=3).fit(synthetic)
    c = MultVAE(**params, seed=4).fit(synthetic)
    assert [h["loss"] for h in a.history_] == [h["loss"] for h in b.history_]
    np.testing.assert_array_equal(a.score(hist), b.score(hist))
    assert not np.allclose(a.score(hist), c.score(hist))


def test_new_listener_scored_like_known_user_with_same_plays(synthetic):
    model = MultVAE(hidden_dims=16, latent_dim=4, epochs=2, weighting="log1p").fit(synthetic)
    known = synthetic.histories([7])
    row = known.matrix
    new = Histories.from_sequences([row.indices], synthetic.n_items, counts=[row.data])
    assert new.users[0] == -1
    np.testing.assert_allclose(model.score(new), model.score(known), rtol=1e-6)


def test_item_similarity_is_cosine_of_decoder_rows(synthetic):
    model = MultVAE(hidden_dims=16, latent_dim=4, epochs=1).fit(synthetic)
    w = model.net_.decoder[-1].weight.detach().numpy().astype(np.float64)   # (I, H)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(model.item_similarity(np.array([5, 25])), w[[5, 25]] @ w.T, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_norm_layers_train_with_a_one_user_last_batch(norm):
    # 3 users, batches of 2: the last batch has one user (no batch statistics; skipped)
    train = tiny_interactions([[0, 1], [1, 2], [2, 3]])
    model = MultVAE(hidden_dims=[8, 4], latent_dim=2, epochs=2, batch_size=2, norm=norm).fit(train)
    assert np.isfinite(model.score(train.histories([0, 1, 2]))).all()
    assert model.n_parameters() > 0


@pytest.mark.parametrize("bad", [{"hidden_dims": "600"}, {"hidden_dims": [600, 0]}, {"hidden_dims": True},
                                 {"latent_dim": 0}, {"weighting": "tfidf"}, {"anneal_cap": -0.1},
                                 {"total_anneal_steps": 0}, {"dropout": 1.0}])
def test_invalid_hyperparameters(bad):
    with pytest.raises(MusicrecError, match="multvae"):
        MultVAE(**bad).fit(tiny_interactions(TOY))


def test_encoder_sees_the_l2_normalised_row(synthetic):
    # with raw counts, doubling every play count leaves the normalised input, hence the scores, unchanged
    model = MultVAE(hidden_dims=16, latent_dim=4, epochs=1, weighting="raw").fit(synthetic)
    row = synthetic.histories([7]).matrix
    once = Histories.from_sequences([row.indices], synthetic.n_items, counts=[row.data])
    twice = Histories.from_sequences([row.indices], synthetic.n_items, counts=[2 * row.data])
    np.testing.assert_allclose(model.score(twice), model.score(once), rtol=1e-5, atol=1e-6)


def test_one_listener_query_reads_only_their_columns(synthetic):
    # a history of few items takes the first layer's columns of those items only (serving);
    # the query must equal the dense product over the whole row
    model = MultVAE(hidden_dims=16, latent_dim=4, epochs=1).fit(synthetic)
    hist = Histories.from_sequences([[3, 5, 5, 40]], synthetic.n_items)
    assert 4 * 3 <= synthetic.n_items          # the columns path is taken
    rows = torch.from_numpy(hist.matrix.toarray())
    rows[rows > 0] = 1.0                        # binary weighting
    with torch.inference_mode():
        want = model.net_.queries(rows).numpy()
    np.testing.assert_allclose(model.query_vectors(hist), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.query_vectors(hist) @ model.item_vectors().T, model.score(hist),
                               rtol=1e-5, atol=1e-5)
