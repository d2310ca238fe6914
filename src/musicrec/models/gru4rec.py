"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016;
Hidasi & Karatzoglou, CIKM 2018), following the official PyTorch code and the checklist of
Hidasi & Czapp, "The Effect of Third Party Implementations on Reproducibility" (RecSys 2023).

A GRU reads the session's items; its hidden state scores the next item by a dot product with
output item embeddings plus a per-item output bias. What the paper's checklist asks for, and
where it is here:

* three input modes: ``constrained_embedding`` (the default: the input embedding *is* the
  output embedding, so its size is the hidden size), a separate input embedding
  (``embedding_dim > 0``) or none at all (``embedding_dim = 0``): the one-hot input feeds the
  first GRU layer directly, as an (I, 3H) table of gate pre-activations, which is exactly
  ``one_hot @ W_ih`` without building the one-hot vectors;
* negative sampling: ``loss="sampled"`` is cross-entropy over in-batch + popularity-sampled
  negatives; ``loss="bpr-max"`` is the CIKM 2018 loss with its score regularisation ``bpreg``
  (on 30Music next-track the best of the losses, with ``n_negatives=2048``);
* dropout on the input embedding and on every GRU layer's output; a fresh hidden state
  (zeros) at every session start.

Differences, on purpose: sessions are cut into left-padded windows of ``max_len`` plays (the
framework's batches) instead of session-parallel mini-batches, so the GRU restarts at each
window; AdamW instead of Adagrad with momentum; BPR-max uses a linear final activation (the
official ``elu_param=0``) and skips candidates equal to the target instead of counting them
as negatives; an optional final ``norm``; ``repeat_head=True`` (with ``loss="ce"``) scores
through the repeat-vs-explore head of ``models.repeat``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrec.models.neural import LOSSES, NORMS, SequenceRecommender, TrainingConfig
from musicrec.models.nn_blocks import make_norm
from musicrec.models.repeat import WithRepeatHead, check_repeat_head


def _uniform_init(weight: torch.Tensor, fan_out_scale: int = 1) -> None:
    """GRU4Rec's init: U(-s, s), s = sqrt(6 / (rows + cols / fan_out_scale))."""
    s = math.sqrt(6.0 / (weight.shape[0] + weight.shape[1] / fan_out_scale))
    nn.init.uniform_(weight, -s, s)


# ---------------------------------------------------------------- network
class OneHotGRU(nn.Module):
    """A GRU layer over item ids, (B, L) -> (B, L, H): a one-hot input times W_ih is one row
    of W_ih, so the input weights are an (I + 1, 3H) table (row 0, padding, stays zero)."""

    def __init__(self, n_items: int, hidden: int):
        super().__init__()
        self.w_in = nn.Embedding(n_items + 1, 3 * hidden, padding_idx=0)
        self.b_in = nn.Parameter(torch.zeros(3 * hidden))
        self.w_hh = nn.Linear(hidden, 3 * hidden)
        _uniform_init(self.w_in.weight, 3)
        _uniform_init(self.w_hh.weight, 3)
        nn.init.zeros_(self.w_hh.bias)
        with torch.no_grad():
            self.w_in.weight[0].zero_()

    def forward(self, seq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``keep`` (B, L, 1): input dropout on the one-hot vectors (0 drops the whole play)."""
        x = self.w_in(seq) * keep + self.b_in                 # (B, L, 3H), same gate order as nn.GRU
        h = x.new_zeros(seq.shape[0], self.w_hh.in_features)
        out = []
        for t in range(seq.shape[1]):
            xr, xz, xn = x[:, t].chunk(3, dim=-1)
            hr, hz, hn = self.w_hh(h).chunk(3, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            out.append(h)
        return torch.stack(out, dim=1)


class GRU4RecNet(nn.Module):
    """(B, L) item indices + 1 (0 = padding) -> (B, L, H + 1) hidden states, causal.

    The last coordinate is a constant 1 matching the output bias stored as the last column
    of ``item_embeddings()``, so every loss and scorer of the framework applies the bias.
    """

    def __init__(self, n_items: int, hidden: int, layers: int, embedding_dim: int, constrained: bool,
                 dropout_embed: float, dropout_hidden: float, norm: str, output_bias: bool):
        super().__init__()
        self.out_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)   # row 0: padding
        self.out_bias = nn.Parameter(torch.zeros(n_items), requires_grad=output_bias)
        separate = not constrained and embedding_dim > 0
        self.in_emb = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0) if separate else None
        self.one_hot = OneHotGRU(n_items, hidden) if not constrained and embedding_dim == 0 else None
        n_in = hidden if constrained else embedding_dim
        self.grus = nn.ModuleList(nn.GRU(hidden if i or self.one_hot else n_in, hidden, batch_first=True)
                                  for i in range(layers - (self.one_hot is not None)))
        self.dropout_embed = dropout_embed
        self.drop_hidden = nn.Dropout(dropout_hidden)
        self.final_norm = make_norm(norm, hidden)
        for emb in (self.out_emb, self.in_emb):
            if emb is not None:
                _uniform_init(emb.weight)
                with torch.no_grad():
                    emb.weight[0].zero_()
        for gru in self.grus:
            _uniform_init(gru.weight_ih_l0, 3)
            _uniform_init(gru.weight_hh_l0, 3)
            nn.init.zeros_(gru.bias_ih_l0)
            nn.init.zeros_(gru.bias_hh_l0)

    def item_embeddings(self) -> torch.Tensor:
        return torch.cat([self.out_emb.weight[1:], self.out_bias[:, None]], dim=1)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        B, L = seq.shape
        n = (seq > 0).sum(dim=1, keepdim=True)
        cols = torch.arange(L, device=seq.device)[None, :]
        # move each session to the start of its row (pads after it): run left to right from a
        # zero state, every play sees only earlier plays, and what the GRU does with the
        # trailing pads is never used
        right = seq.gather(1, (cols + L - n) % L)
        if self.one_hot is not None:
            keep = F.dropout(torch.ones(B, L, 1, device=seq.device), self.dropout_embed, self.training)
            x = self.drop_hidden(self.one_hot(right, keep))
        else:
            emb = self.out_emb if self.in_emb is None else self.in_emb
            x = F.dropout(emb(right), self.dropout_embed, self.training)
        for gru in self.grus:
            x = self.drop_hidden(gru(x)[0])
        # back to left padding; positions before the session hold the zero start state
        x = x.gather(1, ((cols + n) % L)[..., None].expand(-1, -1, x.shape[-1])) * (seq > 0)[..., None]
        x = self.final_norm(x)
        return torch.cat([x, x.new_ones(B, L, 1)], dim=-1)


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class GRU4RecConfig(TrainingConfig):
    hidden_size: int = 100               # H: GRU state size (also the item embedding size)
    n_layers: int = 1                    # stacked GRU layers
    constrained_embedding: bool = True   # input embedding = output embedding (official default)
    embedding_dim: int = 0               # separate input embedding size; 0 = one-hot input (unconstrained only)
    dropout_embed: float = 0.4           # dropout on the input embedding / one-hot input
    dropout_hidden: float = 0.2          # dropout on every GRU layer's output
    output_bias: bool = True             # learn a per-item bias added to the scores
    norm: str = "none"                   # final "layer", "batch" or "none" normalisation
    max_len: int = 20                    # L: most recent plays the model looks at
    # defaults measured on 30Music (benchmarks/results/deep_defaults.md): BPR-max with 2048 negatives
    # and input dropout 0.4 beat sampled softmax with 512 at both levels (MRR@20 next track 0.196,
    # next artist 0.475, against 0.444 at artist level before)
    loss: str = "bpr-max"                # "sampled" softmax, "bpr-max", "ce" full softmax or "bpr"
    n_negatives: int = 2048              # popularity-sampled negatives for "sampled"/"bpr-max"/"bpr"
    bpreg: float = 1.0                   # BPR-max score regularisation
    repeat_head: bool = False            # repeat-vs-explore output head (needs loss="ce")
    train_on: str = "sessions"           # learn from "sessions" or whole "users" histories
    batch_size: int = 64                 # training windows per step
    learning_rate: float = 3e-3          # AdamW step size


class GRU4Rec(SequenceRecommender):
    """Recurrent next-item model. Hyperparameters: see ``GRU4RecConfig``."""

    name = "gru4rec"
    padding_free = True   # each session runs from a zero state at the start of its row: padding is never read

    config = GRU4RecConfig

    def _validate(self) -> None:
        super()._validate()
        self._check_int("hidden_size", 1)
        self._check_int("n_layers", 1)
        self._check_choice("constrained_embedding", (True, False))
        self._check_int("embedding_dim", 0)
        self._check_number("dropout_embed", low=0, high=0.95)
        self._check_number("dropout_hidden", low=0, high=0.95)
        self._check_choice("output_bias", (True, False))
        self._check_choice("norm", NORMS)
        self._check_int("max_len", 1)
        self._check_choice("loss", LOSSES + ("bpr-max",))
        self._check_int("n_negatives", 1)
        self._check_number("bpreg", low=0)
        self._check_choice("train_on", ("sessions", "users"))
        check_repeat_head(self)

    def _build_net(self, n_items: int, n_users: int) -> nn.Module:
        net = GRU4RecNet(n_items, self.hidden_size, self.n_layers, self.embedding_dim, self.constrained_embedding,
                         self.dropout_embed, self.dropout_hidden, self.norm, self.output_bias)
        return WithRepeatHead(net, self.hidden_size + 1, self.max_len) if self.repeat_head else net

    def _loss(self, net, batch: dict):
        if self.loss != "bpr-max":
            return super()._loss(net, batch)
        # BPR-max (Hidasi & Karatzoglou 2018): the target against a softmax-weighted mix of the
        # negatives, -log sum_j s_j sigmoid(r_t - r_j) + bpreg * sum_j s_j r_j^2
        inputs, targets = batch["seq"][:, :-1], batch["seq"][:, 1:]
        mask = targets > 0
        h, t = net(inputs)[mask], targets[mask] - 1
        sampled = torch.multinomial(self._neg_probs, self.n_negatives, replacement=True,
                                    generator=self._sampler).to(h.device)
        cands, inverse = torch.unique(torch.cat([t, sampled]), return_inverse=True)
        scores = h @ net.item_embeddings()[cands].T                      # (N, C)
        pos = inverse[: len(t)]
        target = scores.gather(1, pos[:, None])
        is_target = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, pos[:, None], True)
        weights = torch.softmax(scores.masked_fill(is_target, float("-inf")), dim=1)
        loss = -torch.log((torch.sigmoid(target - scores) * weights).sum(1) + 1e-24)
        return (loss + self.bpreg * (scores.square() * weights).sum(1)).mean()

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Sequence-neighbour similarity, (B, I): (cos(h_i, e_j) + cos(h_j, e_i)) / 2, with h_i
        the hidden state after the one-play session [i] and e_j the output embedding of j.

        Items the model expects right after (or right before) one another are similar. A GRU
        has no residual path from its input to its output, so unlike SASRec's shared
        embeddings the output embeddings alone do not place sequence neighbours together.
        """
        with torch.inference_mode():
            emb = F.normalize(self.net_.item_embeddings()[:, :-1], dim=1)               # (I, H), no bias
            one_play = torch.arange(1, emb.shape[0] + 1)[:, None]                       # every item as a session
            after = F.normalize(self.net_(one_play)[:, -1, :-1], dim=1)                 # (I, H), no constant
            q = torch.as_tensor(items)
            return ((after[q] @ emb.T + emb[q] @ after.T) / 2).numpy().astype(np.float32)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "hidden_size": trial.suggest_categorical("hidden_size", [64, 100, 160, 256]),
            "n_layers": trial.suggest_int("n_layers", 1, 2),
            "dropout_embed": trial.suggest_float("dropout_embed", 0.0, 0.5),
            "dropout_hidden": trial.suggest_float("dropout_hidden", 0.0, 0.6),
            "learning_rate": trial.suggest_float("learning_rate", 5e-4, 1e-2, log=True),
            "n_negatives": trial.suggest_categorical("n_negatives", [128, 512, 2048]),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        }
