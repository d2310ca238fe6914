"""NextItNet: a convolutional generative network for next-item recommendation (Yuan et al.,
WSDM 2019, "A Simple Convolutional Generative Network for Next Item Recommendation").

Items are embedded and passed through a stack of residual blocks of dilated 1-D *causal*
convolutions (padded on the left only, so position t never sees a later item); dilations
such as 1, 2, 4, 8 grow the receptive field exponentially without pooling. The hidden state
at each position scores the next item by a dot product with output item embeddings. Block
layout follows the paper's residual block (b) and the authors' code: conv (dilation d) ->
norm -> ReLU -> conv (dilation 2d) -> norm -> ReLU, plus the input.

Differences, on purpose: the output embeddings are by default the input ones (tied; the
paper's separate softmax weights are ``tie_embeddings=False``, which scored MRR@20 0.35
instead of 0.48 on 30Music next-artist: tied, replaying a recent item is easy to predict);
``norm`` can swap the paper's layer norm for batch norm (or none); dropout is added on the
embeddings and block outputs; the loss is configurable (the paper's full softmax is
``loss="ce"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from musicrec import MusicrecError
from musicrec.models.neural import LOSSES, NORMS, SequenceRecommender, TrainingConfig
from musicrec.models.nn_blocks import make_norm
from musicrec.models.validate import parse_dilations


# ---------------------------------------------------------------- network
class CausalConv1d(nn.Module):
    """(B, L, D) -> (B, L, D): a dilated convolution over time, left-padded by
    ``(kernel_size - 1) * dilation`` so output t depends on inputs <= t only."""

    def __init__(self, dim: int, kernel_size: int, dilation: int):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x.transpose(1, 2), (self.pad, 0))).transpose(1, 2)


class ResidualBlock(nn.Module):
    """Two causal dilated convolutions (dilation d, then 2d), each followed by norm + ReLU, plus the input."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float, norm: str):
        super().__init__()
        self.conv1 = CausalConv1d(dim, kernel_size, dilation)
        self.norm1 = make_norm(norm, dim)
        self.conv2 = CausalConv1d(dim, kernel_size, 2 * dilation)
        self.norm2 = make_norm(norm, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``keep`` (B, L, 1) is False at padding, which is zeroed after each convolution."""
        h = F.relu(self.norm1(self.conv1(x))) * keep
        h = F.relu(self.norm2(self.conv2(h)))
        return (x + self.drop(h)) * keep


class NextItNetNet(nn.Module):
    """(B, L) item indices + 1 (0 = padding) -> (B, L, D) hidden states, causal."""

    def __init__(self, n_items: int, dim: int, dilations: list[int], kernel_size: int, dropout: float, norm: str,
                 tie_embeddings: bool = True):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(ResidualBlock(dim, kernel_size, d, dropout, norm) for d in dilations)
        # the paper's softmax layer has its own output embeddings; tied, scoring is a dot product
        # with the input embeddings, which makes predicting a replay of a recent item easy
        self.out_emb = None if tie_embeddings else nn.Embedding(n_items, dim)
        nn.init.normal_(self.item_emb.weight, std=dim ** -0.5)
        if self.out_emb is not None:
            nn.init.normal_(self.out_emb.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[1:] if self.out_emb is None else self.out_emb.weight

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        # padding stays exactly zero (like the convolutions' own left padding), so a history
        # gives the same states however much padding precedes it
        keep = (seq > 0).unsqueeze(-1)
        x = self.drop(self.item_emb(seq))
        for block in self.blocks:
            x = block(x, keep)
        return x


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class NextItNetConfig(TrainingConfig):
    embedding_dim: int = 64       # D: item embedding size = convolution channels
    dilations: str = "1,2,4"      # dilation of each residual block ("1,2,4" or a list of ints)
    n_blocks: int = 1             # how many times the dilation stack is repeated
    kernel_size: int = 3          # convolution width (the paper uses 3)
    dropout: float = 0.3          # on embeddings and block outputs
    max_len: int = 20             # L: most recent plays the model looks at
    norm: str = "layer"           # "layer" (paper), "batch" or "none"
    tie_embeddings: bool = True   # score against the input item embeddings (False: separate ones, as the paper)
    loss: str = "sampled"         # "ce" full softmax (paper), "sampled" softmax, or "bpr"
    n_negatives: int = 256        # popularity-sampled negatives for "sampled"/"bpr"
    train_on: str = "sessions"    # learn from "sessions" or whole "users" histories
    batch_size: int = 64          # windows per step (more steps per epoch than the shared default)
    learning_rate: float = 3e-3   # AdamW step size (1e-3 was still climbing after 10 epochs on 30Music)


class NextItNet(SequenceRecommender):
    """Dilated causal CNN next-item model. Hyperparameters: see ``NextItNetConfig``."""

    name = "nextitnet"
    padding_free = True   # padding is zeroed after every convolution: states do not depend on it

    config = NextItNetConfig

    def _validate(self) -> None:
        super()._validate()
        self._check_int("embedding_dim", 1)
        try:
            parse_dilations(self.dilations)
        except (ValueError, TypeError):
            raise MusicrecError(f"nextitnet: dilations must be positive integers like '1,2,4' or [1, 2, 4], "
                                f"got {self.dilations!r}") from None
        self._check_int("n_blocks", 1)
        self._check_int("kernel_size", 2)
        self._check_number("dropout", low=0, high=0.95)
        self._check_int("max_len", 1)
        self._check_choice("norm", NORMS)
        if not isinstance(self.tie_embeddings, bool):
            raise MusicrecError(f"nextitnet: tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        self._check_choice("loss", LOSSES)
        self._check_int("n_negatives", 1)
        self._check_choice("train_on", ("sessions", "users"))

    def _build_net(self, n_items: int, n_users: int) -> NextItNetNet:
        dilations = parse_dilations(self.dilations) * self.n_blocks
        return NextItNetNet(n_items, self.embedding_dim, dilations, self.kernel_size, self.dropout, self.norm,
                            self.tie_embeddings)

    def receptive_field(self) -> int:
        """How many most recent plays the last position can see (before ``max_len`` cuts it)."""
        # each block adds (k - 1) * d from its first convolution and (k - 1) * 2d from its second
        return 1 + 3 * (self.kernel_size - 1) * sum(parse_dilations(self.dilations) * self.n_blocks)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "embedding_dim": trial.suggest_categorical("embedding_dim", [32, 64, 128]),
            "dilations": trial.suggest_categorical("dilations", ["1,2", "1,2,4", "1,2,4,8"]),
            "n_blocks": trial.suggest_int("n_blocks", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "max_len": trial.suggest_categorical("max_len", [10, 20, 50]),
        }
