"""Caser: convolutional sequence embedding (Tang & Wang, WSDM 2018, "Personalized Top-N
Sequential Recommendation via Convolutional Sequence Embedding").

The embeddings of the last L plays form an L x D "image". Horizontal filters of every height
1..L (``n_h`` each, max-pooled over time) catch union-level and skip patterns; ``n_v``
vertical L x 1 filters form weighted sums of the L embeddings. Both are concatenated, passed
through dropout and a fully connected layer to z; item i scores ``[z, P_u] . W_i + b_i``.

Caser predicts from a window, not from every position, so unlike the other sequence models it
trains on (window of the previous L items, next T items) examples as in the paper, one per
position of each training sequence (short prefixes left-padded), and scores the last window of
a history. Differences, on purpose: the user embedding P_u is optional (``use_user``, off by
default) because sessions and new listeners have no user (``users = -1``): they get P_u = 0.
The z part of W is by default the input item embedding (tied; the paper's separate W is
``tie_embeddings=False``, which scored MRR@20 0.38 instead of 0.49 on 30Music next-artist).
The loss is configurable (the paper's binary loss with sampled negatives is close to
``loss="bpr"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.models.neural import LOSSES, SequenceRecommender, TrainingConfig, left_pad


# ---------------------------------------------------------------- network
class CaserNet(nn.Module):
    """(B, L) windows of item indices + 1 (0 = padding) and (B,) user indices (-1 = unknown)
    -> (B, D') hidden ``[z, P_u]`` (D' = 2D with the user embedding, else D)."""

    def __init__(self, n_items: int, n_users: int, dim: int, window: int, n_h: int, n_v: int,
                 dropout: float, use_user: bool, tie_embeddings: bool):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        # a horizontal filter of height h spanning all D columns is a Conv1d over time with D channels
        self.horizontal = nn.ModuleList(nn.Conv1d(dim, n_h, h) for h in range(1, window + 1)) if n_h else None
        # a vertical L x 1 filter is a learned weighted sum of the L rows, per embedding column
        self.vertical = nn.Linear(window, n_v) if n_v else None
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(n_h * window + n_v * dim, dim)
        self.user_emb = nn.Embedding(n_users, dim) if use_user else None
        # W = [W_z, W_u]: W_z (the part z scores) is the input embedding when tied, W_u exists with P_u
        self.out_z = None if tie_embeddings else nn.Embedding(n_items, dim)
        self.out_user = nn.Embedding(n_items, dim) if use_user else None
        self.out_bias = nn.Parameter(torch.zeros(n_items))  # b
        for emb in (self.item_emb, self.user_emb, self.out_z, self.out_user):
            if emb is not None:
                nn.init.normal_(emb.weight, std=emb.embedding_dim ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_embeddings(self) -> torch.Tensor:
        """(I, D') output embeddings W."""
        w = self.item_emb.weight[1:] if self.out_z is None else self.out_z.weight
        return w if self.out_user is None else torch.cat([w, self.out_user.weight], dim=1)

    def forward(self, window: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        e = self.item_emb(window)                                     # (B, L, D)
        parts = []
        if self.horizontal is not None:
            cols = e.transpose(1, 2)                                  # (B, D, L)
            parts += [F.relu(conv(cols)).amax(dim=2) for conv in self.horizontal]   # (B, n_h) each
        if self.vertical is not None:
            parts.append(self.vertical(e.transpose(1, 2)).flatten(1))  # (B, D * n_v)
        z = F.relu(self.fc(self.drop(torch.cat(parts, dim=1))))       # (B, D)
        if self.user_emb is None:
            return z
        # sessions and new listeners have no long-term profile: P_u = 0
        known = (users >= 0).unsqueeze(1)
        p = self.user_emb(users.clamp(min=0)) * known
        return torch.cat([z, p], dim=1)

    def logits(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D') hidden -> (N, C) scores of ``items`` (C,), or of every item when None."""
        w = self.item_embeddings()
        if items is None:
            return hidden @ w.T + self.out_bias
        return hidden @ w[items].T + self.out_bias[items]


def window_examples(seqs: list, owners: np.ndarray, window: int, n_targets: int):
    """One example per position after the first of each sequence (all vectorised).

    Returns windows (N, window) of the preceding items, left-padded, targets (N, n_targets)
    of that item and the ones after it (0 past the sequence end), and owners (N,); items
    are shifted by +1 with 0 = padding.
    """
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    n_pos = np.maximum(lengths - 1, 0)
    if n_pos.sum() == 0:
        empty = np.zeros((0, window), np.int64)
        return empty, np.zeros((0, n_targets), np.int64), np.zeros(0, np.int64)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) + 1
    starts = np.cumsum(lengths) - lengths
    of = np.repeat(np.arange(len(seqs)), n_pos)
    pos = np.arange(n_pos.sum()) - np.repeat(np.cumsum(n_pos) - n_pos, n_pos) + starts[of] + 1
    lo, hi = starts[of][:, None], (starts + lengths)[of][:, None]
    before = pos[:, None] - window + np.arange(window)[None, :]
    after = pos[:, None] + np.arange(n_targets)[None, :]
    windows = np.where(before >= lo, flat[np.clip(before, 0, len(flat) - 1)], 0)
    targets = np.where(after < hi, flat[np.clip(after, 0, len(flat) - 1)], 0)
    return windows, targets, np.asarray(owners, dtype=np.int64)[of]


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class CaserConfig(TrainingConfig):
    embedding_dim: int = 64       # D: item (and user) embedding size
    max_len: int = 5              # L: the window of most recent plays (also the tallest horizontal filter)
    n_targets: int = 1            # T: items after each window it learns to predict
    n_h: int = 16                 # horizontal filters per height 1..L (0 = none)
    n_v: int = 4                  # vertical filters (0 = none)
    dropout: float = 0.5          # on the concatenated convolution outputs
    use_user: bool = False        # add the user embedding P_u (0 for sessions and new listeners)
    tie_embeddings: bool = True   # score z against the input item embeddings (False: a separate W, as the paper)
    loss: str = "sampled"         # "ce" full softmax, "sampled" softmax, or "bpr"
    n_negatives: int = 256        # popularity-sampled negatives for "sampled"/"bpr"
    train_on: str = "sessions"    # learn from "sessions" or whole "users" histories
    batch_size: int = 256         # windows per step: one window is one prediction, so larger than the default
    learning_rate: float = 5e-3   # AdamW step size


class Caser(SequenceRecommender):
    """Convolutional sequence embedding next-item model. Hyperparameters: see ``CaserConfig``."""

    name = "caser"

    config = CaserConfig

    def _validate(self) -> None:
        super()._validate()
        self._check_int("embedding_dim", 1)
        self._check_int("max_len", 1)
        self._check_int("n_targets", 1)
        self._check_int("n_h", 0)
        self._check_int("n_v", 0)
        if self.n_h == 0 and self.n_v == 0:
            raise MusicrecError("caser: n_h and n_v cannot both be 0 (no convolution left)")
        self._check_number("dropout", low=0, high=0.95)
        for key in ("use_user", "tie_embeddings"):
            if not isinstance(getattr(self, key), bool):
                raise MusicrecError(f"caser: {key} must be true or false, got {getattr(self, key)!r}")
        self._check_choice("loss", LOSSES)
        self._check_int("n_negatives", 1)
        self._check_choice("train_on", ("sessions", "users"))

    def _build_net(self, n_items: int, n_users: int) -> CaserNet:
        return CaserNet(n_items, n_users, self.embedding_dim, self.max_len, self.n_h, self.n_v,
                        self.dropout, self.use_user, self.tie_embeddings)

    # ------------------------------------------------------------ the task
    def _training_data(self, train: Interactions) -> dict:
        seqs = self._sequences(train)
        owners = np.arange(train.n_users) if self.train_on == "users" else train.session_user
        windows, targets, users = window_examples(seqs, owners, self.max_len, self.n_targets)
        counts = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in seqs]), minlength=train.n_items)
        # popularity negatives damped as in SequenceRecommender (alpha = 0.75)
        probs = np.power(counts + 1.0, 0.75)
        self._neg_probs = torch.tensor(probs / probs.sum(), dtype=torch.float32)
        return {"window": torch.from_numpy(windows), "targets": torch.from_numpy(targets),
                "user": torch.from_numpy(users)}

    def _loss(self, net, batch: dict):
        hidden = net(batch["window"], batch["user"])            # (B, D')
        targets = batch["targets"]                              # (B, T)
        mask = targets > 0
        h = hidden.unsqueeze(1).expand(-1, targets.shape[1], -1)[mask]   # (N, D')
        t = targets[mask] - 1                                   # (N,) item indices
        if self.loss == "ce":
            return F.cross_entropy(net.logits(h), t)
        sampled = torch.multinomial(self._neg_probs, self.n_negatives, replacement=True,
                                    generator=self._sampler).to(h.device)
        if self.loss == "sampled":
            # candidates: every target in the batch (in-batch negatives) + popularity samples
            cands, inverse = torch.unique(torch.cat([t, sampled]), return_inverse=True)
            return F.cross_entropy(net.logits(h, cands), inverse[: len(t)])
        neg = sampled[torch.randint(0, self.n_negatives, (len(t),), generator=self._sampler).to(h.device)]
        w = net.item_embeddings()
        pos_s = (h * w[t]).sum(-1) + net.out_bias[t]
        neg_s = (h * w[neg]).sum(-1) + net.out_bias[neg]
        return -F.logsigmoid(pos_s - neg_s).mean()

    # ------------------------------------------------------------ scoring
    def _queries(self, histories: Histories, batch_size: int, items=None):
        """``[hidden, 1]`` (b, D' + 1) of each history's last window; the 1 picks up the item bias."""
        x = torch.from_numpy(left_pad(histories.sequences, self.max_len))
        users = np.asarray(histories.users, dtype=np.int64)
        users = torch.from_numpy(np.where(users < self.train_.n_users, users, -1))
        for lo in range(0, len(x), batch_size):
            h = self.net_(x[lo:lo + batch_size].to(self.device_), users[lo:lo + batch_size].to(self.device_))
            yield lo, torch.cat([h, h.new_ones(len(h), 1)], dim=1), None

    def _items(self) -> torch.Tensor:
        """``[W_i, b_i]`` (I, D' + 1): output embeddings and bias."""
        return torch.cat([self.net_.item_embeddings(), self.net_.out_bias[:, None]], dim=1)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """How strongly items lead to each other, (B, I): the mean of cos(h_i, W_j) and cos(h_j, W_i).

        h_i is the hidden state of a window holding only item i (no user), W the output
        embeddings. Unlike in the residual models, Caser's input embeddings of items that
        follow each other need not be close (z is not a sum with the last item), so the
        similarity is read from the transitions the model predicts.
        """
        n = self.train_.n_items
        windows = torch.zeros((n, self.max_len), dtype=torch.int64)
        windows[:, -1] = torch.arange(1, n + 1)
        with torch.inference_mode():
            h = F.normalize(self.net_(windows, torch.full((n,), -1)), dim=1)   # (I, D')
            w = F.normalize(self.net_.item_embeddings(), dim=1)                 # (I, D')
            rows = torch.as_tensor(np.asarray(items, dtype=np.int64))
            return (0.5 * (h[rows] @ w.T + w[rows] @ h.T)).numpy().astype(np.float32)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "embedding_dim": trial.suggest_categorical("embedding_dim", [32, 64, 128]),
            "max_len": trial.suggest_int("max_len", 2, 9),
            "n_h": trial.suggest_categorical("n_h", [4, 8, 16, 32]),
            "n_v": trial.suggest_categorical("n_v", [0, 2, 4, 8]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.6),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        }
