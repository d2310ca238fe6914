"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Items and positions are embedded, passed through pre-norm causal self-attention blocks, and
the hidden state at each position scores the next item by a dot product with the (shared)
item embeddings. Differences from the paper, on purpose: the loss is configurable (the
paper's BPR-style binary loss with one negative is ``loss="bpr"``; the default sampled
softmax trains better on large catalogues), and ``norm`` can swap layer for batch norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from musicrec.models.neural import LOSSES, NORMS, SequenceRecommender, TrainingConfig
from musicrec.models.nn_blocks import causal_mask, make_norm
from musicrec.models.repeat import WithRepeatHead, check_repeat_head


# ---------------------------------------------------------------- network
class SelfAttentionBlock(nn.Module):
    """Pre-norm causal multi-head attention + position-wise feed-forward, both residual."""

    def __init__(self, dim: int, heads: int, dropout: float, norm: str):
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = make_norm(norm, dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        return x + self.drop(self.ff(self.norm2(x)))


class SASRecNet(nn.Module):
    """(B, L) item indices + 1 (0 = padding) -> (B, L, D) hidden states, causal."""

    def __init__(self, n_items: int, dim: int, layers: int, heads: int, max_len: int, dropout: float, norm: str):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads, dropout, norm) for _ in range(layers))
        self.final_norm = make_norm(norm, dim)
        self.scale = math.sqrt(dim)
        nn.init.normal_(self.item_emb.weight, std=dim ** -0.5)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1:]

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        L = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1)
        pos = torch.arange(self.pos_emb.num_embeddings - L, self.pos_emb.num_embeddings, device=seq.device)
        x = self.drop(self.item_emb(seq) * self.scale + self.pos_emb(pos)) * keep
        mask = causal_mask(L, seq.device)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x)


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class SASRecConfig(TrainingConfig):
    embedding_dim: int = 64       # D: item/position embedding size
    n_layers: int = 2             # self-attention blocks
    n_heads: int = 1              # attention heads (must divide D)
    dropout: float = 0.2          # on embeddings, attention and feed-forward
    max_len: int = 50             # L: most recent plays the model looks at
    norm: str = "layer"           # "layer", "batch" or "none"
    loss: str = "sampled"         # "ce" full softmax, "sampled" softmax, or "bpr"
    n_negatives: int = 256        # popularity-sampled negatives for "sampled"/"bpr"
    repeat_head: bool = False     # repeat-vs-explore output head (models.repeat; needs loss="ce")
    train_on: str = "sessions"    # learn from "sessions" or whole "users" histories


class SASRec(SequenceRecommender):
    """Self-attention next-item model. Hyperparameters: see ``SASRecConfig``."""

    name = "sasrec"

    config = SASRecConfig

    def _validate(self) -> None:
        super()._validate()
        self._check_int("embedding_dim", 1)
        self._check_int("n_layers", 1)
        self._check_int("n_heads", 1)
        self._check_number("dropout", low=0, high=0.95)
        self._check_int("max_len", 1)
        self._check_choice("norm", NORMS)
        self._check_choice("loss", LOSSES)
        self._check_int("n_negatives", 1)
        self._check_choice("train_on", ("sessions", "users"))
        check_repeat_head(self)
        if self.embedding_dim % self.n_heads:
            from musicrec import MusicrecError

            raise MusicrecError(f"sasrec: n_heads ({self.n_heads}) must divide embedding_dim ({self.embedding_dim})")

    def _build_net(self, n_items: int, n_users: int) -> nn.Module:
        net = SASRecNet(n_items, self.embedding_dim, self.n_layers, self.n_heads, self.max_len, self.dropout, self.norm)
        return WithRepeatHead(net, self.embedding_dim, self.max_len) if self.repeat_head else net

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "embedding_dim": trial.suggest_categorical("embedding_dim", [32, 64, 128]),
            "n_layers": trial.suggest_int("n_layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "max_len": trial.suggest_categorical("max_len", [20, 50]),
        }
