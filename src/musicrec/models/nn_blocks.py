"""Small PyTorch building blocks shared by the deep models."""

from __future__ import annotations

import torch
from torch import nn


class SequenceBatchNorm(nn.Module):
    """BatchNorm1d over the feature dimension of (B, L, D) or (N, D) inputs."""

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.bn(x)
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, dim: int) -> nn.Module:
    """"layer" -> LayerNorm, "batch" -> batch normalisation over features, "none" -> identity."""
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "batch":
        return SequenceBatchNorm(dim)
    return nn.Identity()


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(L, L) bool, True where attention is *not* allowed (a later position)."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)
