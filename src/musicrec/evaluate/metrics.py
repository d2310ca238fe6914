"""Top-k ranking metrics as pure numpy functions.

Conventions shared by every function here:

* ``ranked`` holds item indices, best first, each item at most once. Entries ``< 0`` are
  padding (no item: fewer than k items could be recommended) and never count as hits.
* ``relevant`` is an array, list or set of item indices; duplicates are ignored. It may hold
  indices that no ranked list can contain, such as ``I, I + 1, ...`` for held-out items outside
  the training catalogue of I items (how the user protocol passes them): they count in
  |relevant|, so they stay in the denominators of recall, NDCG and MAP, but are never hit.
* A list shorter than ``k`` is treated as padded with non-relevant items, so precision
  always divides by ``k``.
* Binary relevance: an item is relevant or not, graded gains are not used.
* With no relevant items every metric is 0 (the protocols skip such users before scoring).

The single-list functions are written for reading; ``ranking_metrics`` computes the same
values for a whole batch at once and is what the evaluation protocols use.
"""

from __future__ import annotations

import numpy as np

#: metric names understood by ``ranking_metrics`` (keys are ``f"{name}@{k}"``)
METRIC_NAMES = ("precision", "recall", "f1", "ndcg", "hitrate", "mrr", "map")


def _hits(ranked, relevant, k: int) -> tuple[np.ndarray, int]:
    """Boolean hit vector of the first ``k`` positions (length <= k) and the number of relevant items."""
    rel = np.unique(np.asarray(list(relevant) if isinstance(relevant, (set, frozenset)) else relevant,
                               dtype=np.int64))
    top = np.asarray(ranked, dtype=np.int64)[:k]
    return (top >= 0) & np.isin(top, rel), len(rel)


def precision_at_k(ranked, relevant, k: int) -> float:
    """Fraction of the top ``k`` that is relevant: hits / k."""
    hits, n_rel = _hits(ranked, relevant, k)
    return float(hits.sum() / k) if n_rel else 0.0


def recall_at_k(ranked, relevant, k: int) -> float:
    """Fraction of the relevant items found in the top ``k``: hits / |relevant|.

    The denominator is |relevant| (not min(|relevant|, k)), so a user with more relevant
    items than ``k`` cannot reach 1.
    """
    hits, n_rel = _hits(ranked, relevant, k)
    return float(hits.sum() / n_rel) if n_rel else 0.0


def f1_at_k(ranked, relevant, k: int) -> float:
    """Harmonic mean of precision@k and recall@k (0 when both are 0)."""
    p, r = precision_at_k(ranked, relevant, k), recall_at_k(ranked, relevant, k)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def ndcg_at_k(ranked, relevant, k: int) -> float:
    """Normalised discounted cumulative gain with binary gains.

    DCG = sum over hit positions r (1-based, r <= k) of 1 / log2(r + 1); the ideal DCG puts
    min(|relevant|, k) hits at the top, so a perfect ranking scores 1.
    """
    hits, n_rel = _hits(ranked, relevant, k)
    if not n_rel:
        return 0.0
    dcg = float(np.sum(hits / np.log2(np.arange(2, len(hits) + 2))))
    idcg = float(np.sum(1.0 / np.log2(np.arange(2, min(n_rel, k) + 2))))
    return dcg / idcg


def hit_rate_at_k(ranked, relevant, k: int) -> float:
    """1 if any relevant item is in the top ``k``, else 0."""
    hits, n_rel = _hits(ranked, relevant, k)
    return float(hits.any()) if n_rel else 0.0


def mrr_at_k(ranked, relevant, k: int) -> float:
    """Reciprocal (1-based) rank of the first relevant item within the top ``k``; 0 if none."""
    hits, _ = _hits(ranked, relevant, k)
    first = np.flatnonzero(hits)
    return float(1.0 / (first[0] + 1)) if len(first) else 0.0


def average_precision_at_k(ranked, relevant, k: int) -> float:
    """Average precision: sum of precision@r over hit positions r <= k, / min(|relevant|, k).

    Averaged over users this is MAP@k; dividing by min(|relevant|, k) lets a perfect
    top-k score 1 even when the user has more than ``k`` relevant items.
    """
    hits, n_rel = _hits(ranked, relevant, k)
    if not n_rel:
        return 0.0
    prec_at_r = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(prec_at_r * hits) / min(n_rel, k))


# ---------------------------------------------------------------- batch
def hit_matrix(ranked: np.ndarray, relevant: list) -> tuple[np.ndarray, np.ndarray]:
    """Hits of a batch of ranked lists.

    Parameters
    ----------
    ranked : ndarray, shape (B, K), int
        Item indices per row, best first; entries < 0 are padding.
    relevant : list of B arrays of item indices, or ndarray, shape (B, R), int
        List form: every distinct entry counts as a relevant item, including indices no
        ranked list contains (``>= I``: items outside the catalogue, never hit). The 2-D form
        is a fast path for the session protocol (R = 1 target per row): each row must hold
        distinct items, entries < 0 are padding.

    Returns
    -------
    hits : ndarray, shape (B, K), bool
    n_relevant : ndarray, shape (B,), int64
        Number of distinct relevant items per row.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != len(relevant):
        raise ValueError(f"ranked must be (B, K) with B = len(relevant) = {len(relevant)}, got {ranked.shape}")
    if isinstance(relevant, np.ndarray) and relevant.ndim == 2:
        valid = relevant >= 0
        n_rel = valid.sum(axis=1).astype(np.int64)
        rel_flat = relevant[valid].astype(np.int64)  # row-major, so grouped by row like the list form
    else:
        rel = [np.unique(np.asarray(r, dtype=np.int64)) for r in relevant]
        n_rel = np.array([len(r) for r in rel], dtype=np.int64)
        rel_flat = np.concatenate(rel) if rel else np.zeros(0, np.int64)
    # encode (row, item) pairs as one int64 so one np.isin answers the whole batch; a negative
    # relevant entry can never be hit and would alias the previous row's keys, so it is left out
    rows_rel = np.repeat(np.arange(len(n_rel), dtype=np.int64), n_rel)
    matchable = rel_flat >= 0
    rows_rel, rel_flat = rows_rel[matchable], rel_flat[matchable]
    width = int(max(ranked.max(initial=0), rel_flat.max(initial=0))) + 1
    rel_keys = rows_rel * width + rel_flat
    rows = np.arange(ranked.shape[0], dtype=np.int64)[:, None]
    hits = (ranked >= 0) & np.isin(rows * width + ranked, rel_keys)
    return hits, n_rel


def ranking_metrics(ranked: np.ndarray, relevant: list, ks=(10, 20),
                    names=METRIC_NAMES) -> dict[str, np.ndarray]:
    """All metrics at every k for a batch of ranked lists, same conventions as the single-list functions.

    Parameters
    ----------
    ranked : ndarray, shape (B, Kmax), int
        Item indices per row, best first; entries < 0 are padding. Lists shorter than a
        requested k are padded with misses.
    relevant : list of B arrays of item indices, or ndarray (B, R)
        See ``hit_matrix``.
    ks : iterable of int
    names : iterable of str
        Subset of ``METRIC_NAMES``.

    Returns
    -------
    dict
        ``"ndcg@10"`` etc. -> ndarray, shape (B,), float64.
    """
    unknown = set(names) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {METRIC_NAMES}")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    hits_all, n_rel = hit_matrix(ranked, relevant)
    has_rel = n_rel > 0
    safe_rel = np.maximum(n_rel, 1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits = np.zeros((hits_all.shape[0], k), dtype=bool)
        width = min(k, hits_all.shape[1])
        hits[:, :width] = hits_all[:, :width]
        n_hits = hits.sum(axis=1)
        ranks = np.arange(1, k + 1)
        precision = np.where(has_rel, n_hits / k, 0.0)
        recall = np.where(has_rel, n_hits / safe_rel, 0.0)
        values = {"precision": precision, "recall": recall}
        if "f1" in names:
            denom = precision + recall
            values["f1"] = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        if "ndcg" in names:
            discount = 1.0 / np.log2(ranks + 1)
            ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m] = DCG of m hits on top
            values["ndcg"] = np.where(has_rel, (hits * discount).sum(axis=1) / ideal[np.minimum(safe_rel, k)], 0.0)
        if "hitrate" in names:
            values["hitrate"] = hits.any(axis=1).astype(np.float64)
        if "mrr" in names:
            first = hits.argmax(axis=1)
            values["mrr"] = np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)
        if "map" in names:
            prec_at_r = np.cumsum(hits, axis=1) / ranks
            values["map"] = np.where(has_rel, (prec_at_r * hits).sum(axis=1) / np.minimum(safe_rel, k), 0.0)
        for name in names:
            out[f"{name}@{k}"] = values[name].astype(np.float64)
    return out
