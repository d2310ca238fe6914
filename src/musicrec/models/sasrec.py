"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Items and positions are embedded, passed through pre-norm causal self-attention blocks, and
the hidden state at each position scores the next item by a dot product with the output item
embeddings. Differences from the paper, on purpose: the loss is configurable (the paper's
BPR-style binary loss with one negative is ``loss="bpr"``; the default sampled softmax with
2048 negatives trains better on large catalogues), ``norm`` can swap layer for batch norm, and
the output embeddings are the input ones (the paper) only where the data repeat:
``tie_embeddings="auto"`` gives next-track data, where most tracks are seen once or twice and
the next play is rarely already in the session, a separate output table (30Music next track:
MRR@20 0.095 tied, 0.174 separate; next artist is better tied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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
        """``mask``: (L, L) bool, True where attention is not allowed, or (B, 1, L, L) added to the
        attention logits (``SASRecNet.cut_mask``)."""
        h = self.norm1(x)
        a = self.attn(h, h, h, attn_mask=mask, need_weights=False)[0] if mask.dim() == 2 else self.attend(h, mask)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.norm2(x)))

    def attend(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``self.attn``'s computation (eval mode) written out with no fixed length, so an ONNX
        export takes windows of any length: (B, L, D), logit bias (B, 1, L, L) -> (B, L, D)."""
        a = self.attn
        q, k, v = (t.unflatten(-1, (a.num_heads, a.head_dim)).transpose(1, 2)        # (B, H, L, D / H)
                   for t in nn.functional.linear(h, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1))
        w = (q / math.sqrt(a.head_dim)) @ k.transpose(-1, -2) + bias
        return a.out_proj((w.softmax(-1) @ v).transpose(1, 2).flatten(-2))


class SASRecNet(nn.Module):
    """(B, L) item indices + 1 (0 = padding) -> (B, L, D) hidden states, causal."""

    def __init__(self, n_items: int, dim: int, layers: int, heads: int, max_len: int, dropout: float, norm: str,
                 tie_embeddings: bool = True):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        # untied, the output table learns "what follows X" apart from "what X is", which rare
        # tracks (seen once or twice) need: one shared network cannot map every input embedding
        # onto its successor's
        self.out_emb = None if tie_embeddings else nn.Embedding(n_items, dim)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads, dropout, norm) for _ in range(layers))
        self.final_norm = make_norm(norm, dim)
        self.scale = math.sqrt(dim)
        nn.init.normal_(self.item_emb.weight, std=dim ** -0.5)
        if self.out_emb is not None:
            nn.init.normal_(self.out_emb.weight, std=dim ** -0.5)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1:] if self.out_emb is None else self.out_emb.weight

    def forward(self, seq: torch.Tensor, full_len: int | None = None) -> torch.Tensor:
        """``full_len``: ``seq`` is the right end of left-padded windows ``full_len`` long, cut for
        speed, and each row keeps at least one padding column (unless nothing was cut): the
        result equals the full windows' (``cut_mask``)."""
        L = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1)
        pos = torch.arange(self.pos_emb.num_embeddings - L, self.pos_emb.num_embeddings, device=seq.device)
        x = self.drop(self.item_emb(seq) * self.scale + self.pos_emb(pos)) * keep
        mask = causal_mask(L, seq.device) if full_len is None else self.cut_mask(seq, full_len)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x)

    def cut_mask(self, seq: torch.Tensor, full_len: int) -> torch.Tensor:
        """(B, 1, L, L) additive attention mask of windows cut from ``full_len`` to L columns.

        Every padding position enters each block as a zero vector, so all padding columns have the
        same key and value: the ``full_len - L`` cut ones add as much weight as the row's padding
        columns left here times ``cut / n_pad``, i.e. a log(1 + cut / n_pad) bias on those columns.
        """
        L = seq.shape[1]
        pad = seq == 0
        n_pad = pad.sum(1, keepdim=True).clamp(min=1).float()
        bias = torch.log1p((full_len - L) / n_pad) * pad                                    # (B, L)
        causal = torch.zeros(L, L, device=seq.device).masked_fill(causal_mask(L, seq.device), float("-inf"))
        return (causal + bias[:, None, :])[:, None]


# ---------------------------------------------------------------- estimator
#: a repeat share (``repeat_share``) from which "auto" ties the output embeddings to the input ones
REPEAT_TIED = 0.3


def repeat_share(train) -> float:
    """Share of the plays after a session's first that repeat an item already in that session
    (or in the listener's history, for data without sessions)."""
    lengths = np.diff(train.session_indptr)
    if lengths.sum() <= len(lengths):
        return 0.0
    session = np.repeat(np.arange(len(lengths)), lengths)
    firsts = len(np.unique(session * np.int64(train.n_items) + train.session_items))
    return float((len(session) - firsts) / (len(session) - (lengths > 0).sum()))


@dataclass(frozen=True)
class SASRecConfig(TrainingConfig):
    embedding_dim: int = 128      # D: item/position embedding size (64: next track 0.89x SR, 128: 0.91x)
    n_layers: int = 2             # self-attention blocks
    n_heads: int = 1              # attention heads (must divide D)
    dropout: float = 0.2          # on embeddings, attention and feed-forward
    max_len: int = 50             # L: most recent plays the model looks at
    norm: str = "layer"           # "layer", "batch" or "none"
    # score against the input item embeddings (True), a separate output table (False), or "auto":
    # tied when the data repeat (a session's next play is often already in it), separate when it moves on
    tie_embeddings: bool | str = "auto"
    loss: str = "sampled"         # "ce" full softmax, "sampled" softmax, or "bpr"
    n_negatives: int = 2048       # popularity-sampled negatives for "sampled"/"bpr"
    learning_rate: float = 3e-3   # AdamW step size (1e-3 was still climbing after 20 epochs on 30Music)
    repeat_head: bool = False     # repeat-vs-explore output head (models.repeat; needs loss="ce")
    train_on: str = "sessions"    # learn from "sessions" or whole "users" histories


class SASRec(SequenceRecommender):
    """Self-attention next-item model. Hyperparameters: see ``SASRecConfig``."""

    name = "sasrec"
    # attention reads the padding, but all padding columns are alike: a window cut to its plays plus
    # one padding column, told its full length, gives the full window's state (SASRecNet.cut_mask)
    counts_padding = True

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
        if not isinstance(self.tie_embeddings, bool) and self.tie_embeddings != "auto":
            from musicrec import MusicrecError

            raise MusicrecError(f"sasrec: tie_embeddings must be true, false or \"auto\", got {self.tie_embeddings!r}")
        check_repeat_head(self)
        if self.embedding_dim % self.n_heads:
            from musicrec import MusicrecError

            raise MusicrecError(f"sasrec: n_heads ({self.n_heads}) must divide embedding_dim ({self.embedding_dim})")

    def _build_net(self, n_items: int, n_users: int) -> nn.Module:
        net = SASRecNet(n_items, self.embedding_dim, self.n_layers, self.n_heads, self.max_len, self.dropout, self.norm,
                        self.tied())
        return WithRepeatHead(net, self.embedding_dim, self.max_len) if self.repeat_head else net

    def tied(self) -> bool:
        """Whether output and input item embeddings are one table; "auto" decides from the training
        data (the same at load: the saved interactions). Measured on 30Music (benchmarks/results/
        deep_defaults.md): next artist (59 % of next plays repeat the session) is better tied, next
        track (12 %) far better separate (MRR@20 0.095 tied, 0.174 separate)."""
        if self.tie_embeddings != "auto":
            return bool(self.tie_embeddings)
        return repeat_share(self.train_) >= REPEAT_TIED

    def item_similarity(self, items) -> "np.ndarray":
        """Cosine over both tables when they are separate (what an item is, as input, and what it
        follows, as output), (B, I); tied, the one table's cosine."""
        import torch.nn.functional as F

        net = getattr(self.net_, "net", self.net_)       # under a repeat head, the wrapped network
        with torch.inference_mode():
            tables = [net.item_emb.weight[1:]] + ([] if net.out_emb is None else [net.out_emb.weight])
            emb = F.normalize(torch.cat([F.normalize(t, dim=1) for t in tables], dim=1), dim=1)
            return (emb[torch.as_tensor(items)] @ emb.T).numpy().astype(np.float32)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "embedding_dim": trial.suggest_categorical("embedding_dim", [32, 64, 128]),
            "n_layers": trial.suggest_int("n_layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "max_len": trial.suggest_categorical("max_len", [20, 50]),
        }
