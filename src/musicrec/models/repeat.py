"""A repeat-vs-explore output head, in the spirit of RepeatNet (Ren et al., AAAI 2019).

Listeners replay: on 30Music the next artist equals the current one about half the time. A
plain ``hidden @ items.T`` softmax must learn to push every session item up through the
hidden state; this head instead mixes two explicit distributions,

    P(i) = p_repeat * P_repeat(i) + (1 - p_repeat) * P_explore(i),

where ``p_repeat = sigmoid(w . h + b)`` is a learned gate, ``P_repeat`` spreads attention of
``h`` over the session's positions onto their item ids (an item played twice collects both
weights; an optional learned bias per position from the end favours recent plays) and
``P_explore = softmax(h @ E.T)`` over the catalogue (RepeatNet masks the session's
items out of it; here that is an option, off by default).

Used by the sequence networks through their ``score_all(hidden, seq)``; the framework's
"ce" loss applies cross-entropy to the returned log-probabilities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RepeatExploreHead(nn.Module):
    """(N, D) hidden states + (N, L) sessions -> (N, I) log-probabilities of the next item.

    Parameters
    ----------
    dim : int
        D, the size of the hidden states and item embeddings.
    max_len : int
        Longest session (L) the head sees; sizes the recency bias.
    recency : bool
        Learn an attention bias per position counted from the most recent play.
    mask_explore : bool
        Remove the session's items from the explore distribution (RepeatNet's choice), so
        repeats can only come through the repeat branch.
    """

    def __init__(self, dim: int, max_len: int, recency: bool = True, mask_explore: bool = False):
        super().__init__()
        self.gate = nn.Linear(dim, 1)
        self.query = nn.Linear(dim, dim, bias=False)
        # zero init: attention starts uniform over the session, recency is learned from there
        self.recency = nn.Parameter(torch.zeros(max_len)) if recency else None
        self.mask_explore = mask_explore
        self.scale = 1.0 / math.sqrt(dim)

    def gate_logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N,) logit of p_repeat."""
        return self.gate(hidden).squeeze(-1)

    def forward(self, hidden: torch.Tensor, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, I); ``exp`` of each row sums to 1.

        Parameters
        ----------
        hidden : (N, D) float
        seq : (N, L) int64
            The session so far, item indices + 1, 0 = padding, most recent at L-1.
        items : (I, D) float
            Item embeddings (the network's output embeddings).
        """
        L = seq.shape[1]
        valid = seq > 0                                            # (N, L)
        has_items = valid.any(dim=1)
        idx = (seq - 1).clamp(min=0)                               # pads point at item 0, weight 0

        # repeat branch: attention over the session's plays ...
        att = torch.einsum("nd,nld->nl", self.query(hidden), items[idx]) * self.scale
        if self.recency is not None:
            att = att + self.recency[torch.arange(L - 1, -1, -1, device=seq.device)]
        # an empty session (predicting its first play) keeps finite logits, so no NaN reaches
        # the gradients; its weights are zeroed and its gate closed below
        att = att.masked_fill(~valid & has_items[:, None], float("-inf"))
        weights = torch.softmax(att, dim=1).masked_fill(~valid, 0.0)
        # ... summed per item: P_repeat of the item played at each position, (N, L); working
        # on the L plays instead of an (N, I) scatter keeps the head cheap for large catalogues
        same = (seq[:, :, None] == seq[:, None, :]) & valid[:, None, :]          # (N, L, L)
        p_rep = (same.to(weights.dtype) @ weights[..., None]).squeeze(-1)

        # explore branch: the whole catalogue
        logits = hidden @ items.T
        if self.mask_explore:
            rows, cols = valid.nonzero(as_tuple=True)
            # finfo.min, not -inf: a session holding every item leaves a uniform row, not NaN
            logits = logits.index_put((rows, idx[rows, cols]), logits.new_tensor(torch.finfo(logits.dtype).min))
        log_explore = torch.log_softmax(logits, dim=1)

        # mix in log space, log(p_r P_r + (1 - p_r) P_e), so the long tail does not underflow
        g = self.gate_logit(hidden)
        out = log_explore + torch.where(has_items, F.logsigmoid(-g), torch.zeros_like(g))[:, None]
        # write each session item once (at its latest play), so no gradient is counted twice
        later = torch.ones(L, L, dtype=torch.bool, device=seq.device).triu(diagonal=1)
        last = valid & ~(same & later).any(dim=2)
        rows, cols = last.nonzero(as_tuple=True)
        items_at = idx[rows, cols]
        # the clamp only guards an underflowed weight against a NaN gradient
        rep = F.logsigmoid(g)[rows] + torch.log(p_rep[rows, cols].clamp(min=1e-30))
        return out.index_put((rows, items_at), torch.logaddexp(rep, out[rows, items_at]))

    def p_repeat(self, hidden: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """(N,) probability of the repeat branch (0 for an empty session)."""
        return torch.sigmoid(self.gate_logit(hidden)) * (seq > 0).any(dim=1)


class WithRepeatHead(nn.Module):
    """A sequence network whose scores come from a ``RepeatExploreHead``: ``forward`` and
    ``item_embeddings`` are the wrapped network's, ``score_all`` mixes repeat and explore."""

    def __init__(self, net: nn.Module, dim: int, max_len: int, recency: bool = True, mask_explore: bool = False):
        super().__init__()
        self.net = net
        self.head = RepeatExploreHead(dim, max_len, recency=recency, mask_explore=mask_explore)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.net(seq)

    def item_embeddings(self) -> torch.Tensor:
        return self.net.item_embeddings()

    def score_all(self, hidden: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """(N, D) hidden states, (N, L) sessions -> (N, I) log-probabilities."""
        return self.head(hidden, seq, self.item_embeddings())


def check_repeat_head(model) -> None:
    """Validate an estimator's ``repeat_head`` flag: a bool, and only with the full-softmax loss
    (the head returns a distribution over the whole catalogue, not sampled scores)."""
    from musicrec import MusicrecError

    if not isinstance(model.repeat_head, bool):
        raise MusicrecError(f"{model.name}: repeat_head must be True or False, got {model.repeat_head!r}")
    if model.repeat_head and model.loss != "ce":
        raise MusicrecError(f"{model.name}: repeat_head=True needs loss='ce' (full softmax), got loss={model.loss!r}")
