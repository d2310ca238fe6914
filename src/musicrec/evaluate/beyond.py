"""Beyond-accuracy metrics of top-k lists: coverage, novelty, popularity bias, diversity.

All functions are pure and take ``ranked`` (B, K) item indices, best first, with entries
``< 0`` as padding (ignored). Popularity is the number of *training users* who played an
item, so a heavy listener replaying one artist does not make it popular.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec.features.vocab import IdMap


def item_popularity(matrix: sp.spmatrix) -> np.ndarray:
    """Number of users with a positive entry per item: (U, I) matrix -> (I,) int64."""
    m = sp.csc_matrix(matrix)
    m.eliminate_zeros()
    return np.diff(m.indptr).astype(np.int64)


def recommended_mask(ranked: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Which of the ``n_items`` items appear in any top-``k`` list: bool (I,)."""
    top = np.asarray(ranked, dtype=np.int64)[:, :k]
    mask = np.zeros(n_items, dtype=bool)
    mask[top[top >= 0]] = True
    return mask


def coverage_at_k(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage: fraction of the ``n_items`` training items shown in at least one top-k list."""
    return float(recommended_mask(ranked, n_items, k).mean()) if n_items else 0.0


def _mean_over_list(values: np.ndarray, ranked: np.ndarray, k: int) -> np.ndarray:
    """Mean of per-item ``values`` over each row's top-k (padding ignored); NaN for an empty row."""
    top = np.asarray(ranked, dtype=np.int64)[:, :k]
    valid = top >= 0
    per_item = np.where(valid, values[np.where(valid, top, 0)], 0.0)
    n = valid.sum(axis=1)
    return np.divide(per_item.sum(axis=1), n, out=np.full(len(top), np.nan), where=n > 0)


def novelty_at_k(ranked: np.ndarray, item_pop: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Mean self-information -log2(pop_i / n_users) of each list's items, in bits: (B,).

    An item every training user played scores 0; rarer items score more. Items without
    training users (pop 0) are counted as played by one user, the rarest observable.
    """
    info = -np.log2(np.maximum(item_pop, 1) / max(n_users, 1))
    return _mean_over_list(info, ranked, k)


def arp_at_k(ranked: np.ndarray, item_pop: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Average recommendation popularity: mean fraction of training users who played each list's items: (B,).

    The fraction (not the raw count, as in Abdollahpouri et al.) keeps values in [0, 1] and
    comparable across datasets; higher means a stronger popularity bias.
    """
    return _mean_over_list(np.asarray(item_pop, dtype=np.float64) / max(n_users, 1), ranked, k)


def tag_matrix(item_tags: pl.DataFrame, items: IdMap) -> sp.csr_matrix | None:
    """Item x tag matrix (I, T) from ``item_tags`` (item_id, tag, weight), rows scaled to unit length.

    Items outside ``items`` are dropped; items without tags get a zero row. Returns None
    when no training item has a tag.
    """
    if item_tags is None or item_tags.height == 0:
        return None
    df = item_tags.with_columns(
        pl.Series("i", items.index(item_tags["item_id"].to_numpy())),
        pl.col("weight").fill_null(1.0),
    ).filter((pl.col("i") >= 0) & pl.col("tag").is_not_null() & (pl.col("weight") > 0))
    if df.height == 0:
        return None
    tags = df["tag"].to_numpy()
    vocab, tag_idx = np.unique(tags, return_inverse=True)
    m = sp.csr_matrix((df["weight"].to_numpy().astype(np.float64), (df["i"].to_numpy(), tag_idx)),
                      shape=(len(items), len(vocab)))
    m.sum_duplicates()
    return unit_rows(m)


def unit_rows(features) -> sp.csr_matrix:
    """Rows of a dense or sparse (I, D) matrix scaled to unit L2 norm (zero rows stay zero), as csr float64."""
    m = sp.csr_matrix(features, dtype=np.float64)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ m)


def diversity_at_k(ranked: np.ndarray, vectors: sp.csr_matrix, k: int) -> np.ndarray:
    """Intra-list diversity: mean pairwise cosine distance between the item vectors of each list: (B,).

    Parameters
    ----------
    ranked : ndarray, shape (B, K)
    vectors : csr_matrix, shape (I, D)
        Unit-length rows (``tag_matrix`` / ``unit_rows``); items with a zero row have no tags
        and are ignored.
    k : int

    Returns
    -------
    ndarray, shape (B,)
        NaN for lists with fewer than two tagged items.

    Notes
    -----
    For m unit vectors, the sum of cosines over ordered pairs i != j equals
    ||sum_i v_i||^2 - m, so the mean pairwise distance needs one sparse product per
    batch instead of a k x k Gram matrix per list.
    """
    top = np.asarray(ranked, dtype=np.int64)[:, :k]
    has_vec = np.diff(vectors.indptr) > 0
    valid = (top >= 0) & has_vec[np.where(top >= 0, top, 0)]
    rows = np.repeat(np.arange(len(top)), valid.sum(axis=1))
    pick = sp.csr_matrix((np.ones(len(rows)), (rows, top[valid])), shape=(len(top), vectors.shape[0]))
    summed = pick @ vectors
    sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    m = valid.sum(axis=1).astype(np.float64)
    pairs = m * (m - 1)
    mean_cos = np.divide(sq - m, pairs, out=np.full(len(top), np.nan), where=pairs > 0)
    return np.clip(1.0 - mean_cos, 0.0, 2.0)
