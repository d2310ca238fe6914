"""Mult-VAE: variational autoencoder with a multinomial likelihood (Liang et al., WWW 2018).

A listener is one row ``x`` (I,) of the weighted user x item matrix; order is ignored, so it
suits data without play order (HetRec user-artist counts). The encoder maps the L2-normalised
row (with input dropout) through tanh layers to a Gaussian ``q(z|x) = N(mu, exp(logvar))``;
the decoder maps ``z`` back to logits over the whole catalogue. Training minimises

    -sum_i x_i log softmax(logits)_i  +  beta * KL(q(z|x) || N(0, I))

averaged over the users of a batch, with ``beta`` growing linearly from 0 by
``1 / total_anneal_steps`` per update until ``anneal_cap`` (the paper's partial
regularisation). Scoring uses ``z = mu``, so known users and new listeners go through the
same encoder. As in the paper ``norm="none"`` is the default; "batch"/"layer" add
normalisation after every hidden linear layer. Differences from the reference code, on
purpose: its L2 penalty on the weights is AdamW's ``weight_decay`` here, and training stops
early on a validation metric instead of running a fixed 200 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.features.weighting import SCHEMES, weight
from musicrec.models.neural import NORMS, NeuralRecommender, TrainingConfig
from musicrec.models.nn_blocks import make_norm


# ---------------------------------------------------------------- network
def mlp(dims: list[int], norm: str) -> nn.Sequential:
    """Linear layers through ``dims``; norm + tanh after every layer but the last."""
    layers: list[nn.Module] = []
    for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(d_in, d_out)
        # the reference code's initialisation: Xavier weights, tiny random biases
        nn.init.xavier_uniform_(linear.weight)
        nn.init.normal_(linear.bias, std=1e-3)
        layers.append(linear)
        if k < len(dims) - 2:
            layers += [make_norm(norm, d_out), nn.Tanh()]
    return nn.Sequential(*layers)


class MultVAENet(nn.Module):
    """(B, I) weighted play rows -> logits (B, I), mu (B, Z), logvar (B, Z)."""

    def __init__(self, n_items: int, hidden: list[int], latent: int, dropout: float, norm: str):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        # one encoder output of 2Z holds mu and logvar; the decoder mirrors the encoder
        self.encoder = mlp([n_items, *hidden, 2 * latent], norm)
        self.decoder = mlp([latent, *hidden[::-1], n_items], norm)
        self.latent = latent
        # optimiser updates so far: drives the KL annealing; a buffer, so checkpoints resume it
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def item_weights(self) -> torch.Tensor:
        """(I, H) rows of the decoder's output layer, one per item."""
        return self.decoder[-1].weight

    def encode(self, x: torch.Tensor, cols: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, I) rows -> mu, logvar (B, Z) each.

        With ``cols`` (C,), ``x`` is (B, C): the rows' values in those item columns only (every
        other column zero). Same result, but the first layer reads C of its I columns, not the
        whole (H, I) matrix: what makes one listener's query cheap.
        """
        x = self.drop(F.normalize(x, dim=1))
        if cols is None:
            h = self.encoder(x)
        else:
            first = self.encoder[0]
            h = self.encoder[1:](F.linear(x, first.weight[:, cols], first.bias))
        mu, logvar = h.split(self.latent, dim=1)
        return mu, logvar

    def queries(self, x: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """(B, I) rows (or (B, C) over ``cols``, see ``encode``) -> (B, H + 1): the decoder's last
        hidden layer at the posterior mean, then a constant 1, so that
        ``queries(x) @ item_vectors().T`` are the logits."""
        h = self.decoder[:-1](self.encode(x, cols)[0])
        return torch.cat([h, h.new_ones(len(h), 1)], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """(I, H + 1): the decoder's output weights, then its bias."""
        return torch.cat([self.decoder[-1].weight, self.decoder[-1].bias[:, None]], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        # reparameterisation trick while training; the posterior mean when scoring
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar


def multvae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 beta) -> torch.Tensor:
    """Negative ELBO per user, averaged over the batch.

    Parameters
    ----------
    logits, x : Tensor, shape (B, I)
        Decoder output and the weighted play row it reconstructs.
    mu, logvar : Tensor, shape (B, Z)
        Posterior mean and log-variance.
    beta : float or 0-d Tensor
        Weight of the KL term.
    """
    nll = -(F.log_softmax(logits, dim=1) * x).sum(1)
    kl = 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(1)
    return (nll + beta * kl).mean()


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class MultVAEConfig(TrainingConfig):
    hidden_dims: int | list = 600   # encoder hidden layer size(s): an int or a list; the decoder mirrors it
    latent_dim: int = 200           # Z: size of the latent code
    dropout: float = 0.5            # dropout on the normalised input row
    anneal_cap: float = 0.2         # largest KL weight beta (the paper's; HetRec prefers 1.0)
    total_anneal_steps: int = 2000  # updates for beta to grow from 0 to 1 (stops at anneal_cap)
    weighting: str = "binary"       # play-count weighting of the rows (features.weighting.SCHEMES)
    norm: str = "none"              # "none" (the paper), "batch" or "layer" after hidden layers
    epochs: int = 100               # one epoch is one pass over the users
    patience: int = 10


class MultVAE(NeuralRecommender):
    """Variational autoencoder over users' play rows. Hyperparameters: see ``MultVAEConfig``."""

    name = "multvae"

    config = MultVAEConfig

    def _hidden(self) -> list[int]:
        dims = self.hidden_dims
        dims = [dims] if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool) else dims
        if not (isinstance(dims, (list, tuple)) and all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in dims)):
            raise MusicrecError(f"{self.name}: hidden_dims must be an integer >= 1 or a list of them, "
                                f"got {self.hidden_dims!r}")
        return [int(d) for d in dims]

    def _validate(self) -> None:
        super()._validate()
        self._hidden()
        self._check_int("latent_dim", 1)
        self._check_number("dropout", low=0, high=0.95)
        self._check_number("anneal_cap", low=0)
        self._check_int("total_anneal_steps", 1)
        self._check_choice("weighting", SCHEMES)
        self._check_choice("norm", NORMS)

    def _build_net(self, n_items: int, n_users: int) -> MultVAENet:
        return MultVAENet(n_items, self._hidden(), self.latent_dim, self.dropout, self.norm)

    # ------------------------------------------------------------ the task
    def _fit(self, train: Interactions) -> None:
        try:
            super()._fit(train)
        finally:
            self._rows = None   # the weighted training rows are only needed while training

    def _training_data(self, train: Interactions) -> dict:
        # examples are users; rows are densified per batch in _loss (never the whole matrix)
        self._rows = weight(train.matrix, self.weighting).tocsr()
        return {"user": torch.arange(train.n_users)}

    def _loss(self, net, batch: dict):
        users = batch["user"]
        if net.training and self.norm == "batch" and len(users) == 1:
            # a one-row batch has no batch statistics: skip it (no update, no annealing step)
            return torch.zeros((), device=users.device, requires_grad=True)
        x = torch.from_numpy(self._rows[users.cpu().numpy()].toarray()).to(users.device)
        logits, mu, logvar = net(x)
        # beta grows linearly with the updates done so far, up to anneal_cap
        beta = (net.updates / self.total_anneal_steps).clamp(max=self.anneal_cap)
        if net.training:
            net.updates += 1
        return multvae_loss(logits, x, mu, logvar, beta)

    # ------------------------------------------------------------ scoring
    def _queries(self, histories: Histories, batch_size: int, items=None):
        """Decoder queries (b, H + 1) at each history's posterior mean (the logits' other side)."""
        rows = weight(histories.matrix, self.weighting, reference=self.train_.matrix).tocsr()
        for lo in range(0, rows.shape[0], batch_size):
            block = rows[lo:lo + batch_size]
            cols = np.unique(block.indices)
            if 4 * len(cols) <= block.shape[1]:     # few items (one listener): their columns only
                x = torch.from_numpy(block[:, cols].toarray()).to(self.device_)
                yield lo, self.net_.queries(x, torch.from_numpy(cols.astype(np.int64)).to(self.device_)), None
            else:
                x = torch.from_numpy(block.toarray()).to(self.device_)
                yield lo, self.net_.queries(x), None

    def _items(self) -> torch.Tensor:
        """``[W_i, b_i]`` (I, H + 1): the decoder's output layer."""
        return self.net_.item_vectors()

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the decoder's output weight rows, (B, I)."""
        with torch.inference_mode():
            emb = F.normalize(self.net_.item_weights(), dim=1)
            return (emb[torch.as_tensor(items)] @ emb.T).numpy().astype(np.float32)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "hidden_dims": trial.suggest_categorical("hidden_dims", [200, 600]),
            "latent_dim": trial.suggest_categorical("latent_dim", [64, 200]),
            "dropout": trial.suggest_float("dropout", 0.3, 0.8),
            # small catalogues/user bases (HetRec) prefer the full KL (beta = 1) or more
            "anneal_cap": trial.suggest_float("anneal_cap", 0.1, 2.0, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
            "weighting": trial.suggest_categorical("weighting", ["binary", "log1p"]),
        }
