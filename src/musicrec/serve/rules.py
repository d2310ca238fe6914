"""Business rules applied after retrieval: exclude items, cap items per artist, MMR diversity.

Retrieval returns more candidates than the listener will see, best first; ``rerank`` picks the
final ``k``. Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998) picks, one at a
time, the candidate maximising

    lambda * relevance(i) - (1 - lambda) * max_{j already picked} similarity(i, j),

with relevance the candidate scores rescaled to [0, 1] (scores are in model units, cosine
similarities in [-1, 1]); ``lambda = 1`` is the plain ranking, smaller values trade
relevance for variety.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from musicrec import MusicrecError


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (n, D) with rows scaled to length 1, float32 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine between every pair of rows of ``vectors`` (n, D) -> (n, n) float32 (0 for zero rows)."""
    unit = unit_rows(vectors)
    return unit @ unit.T


def rerank(candidates: np.ndarray, scores: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
           artist_of: np.ndarray | None = None, max_per_artist: int | None = None,
           mmr_lambda: float | None = None, item_vectors: np.ndarray | None = None,
           similarity: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The final ``k`` items from retrieval candidates.

    Parameters
    ----------
    candidates : ndarray, shape (n,), int
        Item indices, best first.
    scores : ndarray, shape (n,)
        Their scores; ``-inf`` (or NaN) marks an item that must not be shown.
    k : int >= 0
    exclude : ndarray of int, optional
        Items never to return (e.g. the listener's history).
    artist_of : ndarray, shape (I,), int, optional
        Artist id per item; negative = unknown (such items are not capped).
    max_per_artist : int >= 1, optional
        At most this many items of one artist (needs ``artist_of``).
    mmr_lambda : float in [0, 1], optional
        MMR trade-off; None or 1 keeps the candidates' order.
    item_vectors : ndarray, shape (I, D), optional
        MMR similarity = cosine of these rows.
    similarity : callable, optional
        ``similarity(idx (m,)) -> (m, m)`` item-item similarities, for models without vectors.

    Returns
    -------
    idx : ndarray, shape (<= k,), int64
    scores : ndarray, shape (<= k,), float32
        The chosen items and their original scores, in the chosen order. Fewer than ``k``
        when the rules leave fewer candidates; never a duplicate.
    """
    cand = np.asarray(candidates, dtype=np.int64).ravel()
    vals = np.asarray(scores, dtype=np.float32).ravel()
    if len(cand) != len(vals):
        raise MusicrecError(f"rerank: {len(cand)} candidates but {len(vals)} scores")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise MusicrecError(f"k must be an integer >= 0, got {k!r}")
    if max_per_artist is not None:
        if isinstance(max_per_artist, bool) or not isinstance(max_per_artist, (int, np.integer)) or max_per_artist < 1:
            raise MusicrecError(f"max_per_artist must be an integer >= 1, got {max_per_artist!r}")
        if artist_of is None:
            raise MusicrecError("max_per_artist needs the artist of every item")
    diverse = mmr_lambda is not None and mmr_lambda != 1
    if mmr_lambda is not None and not (isinstance(mmr_lambda, (int, float, np.floating)) and 0 <= mmr_lambda <= 1):
        raise MusicrecError(f"diversity (MMR lambda) must be a number in [0, 1], got {mmr_lambda!r}")
    if diverse and item_vectors is None and similarity is None:
        raise MusicrecError("MMR diversity needs item vectors or an item similarity")

    # drop unshowable, excluded and repeated candidates (first occurrence wins)
    keep = np.isfinite(vals)
    if exclude is not None and len(exclude):
        # item indices span at most the catalogue: a lookup table beats sorting both lists
        keep &= ~np.isin(cand, np.asarray(exclude, dtype=np.int64), kind="table")
    cand, vals = cand[keep], vals[keep]
    _, first = np.unique(cand, return_index=True)
    first.sort()
    cand, vals = cand[first], vals[first]

    artists = None
    if max_per_artist is not None:
        artists = np.asarray(artist_of, dtype=np.int64)[cand]
    if diverse:
        picked = _pick_mmr(cand, vals, artists, max_per_artist, k, float(mmr_lambda), item_vectors, similarity)
    else:
        picked = _pick_in_order(len(cand), artists, max_per_artist, k)
    picked = np.asarray(picked, dtype=np.int64)
    return cand[picked], vals[picked]


def _allowed(artist: int | None, counts: dict, cap: int | None) -> bool:
    return cap is None or artist is None or artist < 0 or counts.get(artist, 0) < cap


def _pick_in_order(n: int, artists: np.ndarray | None, cap: int | None, k: int) -> list[int]:
    """Positions of the first ``k`` of ``n`` candidates within the artist cap."""
    if artists is None:
        return list(range(min(k, n)))
    out, counts = [], {}
    for pos, artist in enumerate(artists.tolist()):
        if len(out) >= k:
            break
        if _allowed(artist, counts, cap):
            out.append(pos)
            counts[artist] = counts.get(artist, 0) + 1
    return out


def _pick_mmr(cand, vals, artists, cap, k, lam, item_vectors, similarity) -> list[int]:
    """Positions picked greedily by MMR (ties: the earlier candidate), within the artist cap."""
    n = len(cand)
    if n == 0 or k == 0:
        return []
    sim = (cosine_similarity(np.asarray(item_vectors)[cand]) if item_vectors is not None
           else np.asarray(similarity(cand), dtype=np.float32))
    if sim.shape != (n, n):
        raise MusicrecError(f"similarity must return an ({n}, {n}) array, got {sim.shape}")
    span = float(vals.max() - vals.min())
    relevance = (vals - vals.min()) / span if span > 0 else np.ones(n, np.float32)
    closest = np.full(n, -np.inf, dtype=np.float64)      # max similarity to anything picked so far
    available = np.ones(n, dtype=bool)
    out, counts = [], {}
    while len(out) < k and available.any():
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        pos = int(np.argmax(gain))                       # first maximum: the earlier candidate
        available[pos] = False
        artist = None if artists is None else int(artists[pos])
        if not _allowed(artist, counts, cap):
            continue
        out.append(pos)
        if artist is not None:
            counts[artist] = counts.get(artist, 0) + 1
        closest = np.maximum(closest, sim[pos])
    return out


def tag_codes(tags: dict, n_items: int, width: int) -> tuple[list[str], np.ndarray]:
    """(tag names sorted, (I, width) int32 codes into them per item, -1 padded) from ``tags``
    (item index -> tag names): built once, so a request's listener tags are one bincount, not a
    loop over its history's tags."""
    names = sorted({t for item_tags in tags.values() for t in item_tags})
    code = {t: c for c, t in enumerate(names)}
    codes = np.full((n_items, width), -1, dtype=np.int32)
    for i, item_tags in tags.items():
        codes[i, :len(item_tags)] = [code[t] for t in item_tags]
    return names, codes


def artist_codes(artists: list) -> np.ndarray:
    """An artist number per item (I,) int64; items without an artist name each get their own."""
    codes: dict[str, int] = {}
    out = np.empty(len(artists), dtype=np.int64)
    for i, a in enumerate(artists):
        out[i] = codes.setdefault(a, len(codes)) if a else -1 - i
    return out


def top_tags(item_tags: pl.DataFrame, index_of_ids, n: int) -> dict[int, list[str]]:
    """Item index -> its ``n`` heaviest tags (``index_of_ids``: store ids -> indices, -1 unknown)."""
    if not item_tags.height:
        return {}
    top = (item_tags.sort(["item_id", "weight", "tag"], descending=[False, True, False])
           .group_by("item_id", maintain_order=True).agg(pl.col("tag").head(n)))
    idx = index_of_ids(top["item_id"].to_numpy())
    return {int(i): tags for i, tags in zip(idx, top["tag"].to_list()) if i >= 0}
