"""Top-k retrieval of items by inner product: exact for small catalogues, FAISS ANN for large ones.

A dot-product model scores ``query_vectors(h) @ item_vectors().T`` (``models.base``), so the
best items for a listener are a maximum-inner-product search (MIPS) over the item vectors.
``ExactRetriever`` does the matrix product and a top-k; ``FaissRetriever`` uses an HNSW graph
or an IVF index. Both return the *exact* inner products of the items they find, best first,
so scores match ``model.score`` whichever index found them.

Why the ANN index holds only the "tail": inner products on vectors of very different norms
are not a metric, and recommender item vectors have power-law norms (popular items have long
vectors, and they fill most top-k lists: 90 % of the ALS top 100 on HetRec come from the 10 %
longest vectors). A plain inner-product index can then miss many of them: IVF sends a query to
the lists whose centroids it points at, not to those holding the long vectors, and an HNSW
graph routes by a similarity that is not a distance. The standard MIPS-to-L2 reduction (append
``sqrt(M^2 - |v|^2)``; Bachrach et al., RecSys 2014) fails the other way when norms span
orders of magnitude: almost every item then sits near one pole. Without a head, recall@100
of plain IVF was 0.71-0.80 on HetRec ALS and synthetic power-law vectors, and HNSW with the
reduction 0.74 on the synthetic set (benchmarks/ann_recall.py writes
benchmarks/results/ann_recall.md). So the ``head_share`` longest vectors are scored exactly,
and only the remaining items, whose norms are within a small factor of each other, go into
the index; the two top-k lists are merged. With a 5 % head both index kinds reached
recall@100 >= 0.96 on every set measured, including 1M unit vectors, where the head is no
help and recall is the index's alone. The reduction is kept as an option (``mips_to_l2``);
with the head it is no better than plain inner product.

faiss is imported lazily (only when an ANN index is built).
"""

from __future__ import annotations

import numpy as np

from musicrec import MusicrecError
from musicrec.models.base import topk

KINDS = ("exact", "hnsw", "ivf")
MODES = ("auto",) + KINDS

# Share of the items, longest vectors first, scored exactly next to the ANN index
HEAD_SHARE = 0.05
# HNSW graph: M links per node; efConstruction / efSearch are the candidate-list sizes while
# building / searching. efConstruction 80 doubled the 1M-item build (to ~4 min on 2 busy
# cores); efSearch 512 instead of 256 lifts recall@100 on 1M unit vectors (the index alone)
# from about 0.954 to 0.96 for ~0.3 ms more per query.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 512
# IVF: about 4 sqrt(I) k-means lists, ``nprobe`` of them scanned per query
IVF_NPROBE = 32
# "auto" scores exactly while the item vectors hold at most this many numbers (100,000 items of
# 64 dims), HNSW above: an exact query reads every number. By items alone, Mult-VAE's 601-dim
# vectors of HetRec's 14,160 artists (8.5M numbers, 34 MB) were scored exactly in 3.3 ms per
# query on 2 busy cores, where HNSW took 1.3 ms at recall@100 1.000
EXACT_MAX_FLOATS = 100_000 * 64
# Exact scoring works on blocks of at most this many (query, item) scores (float32: 256 MiB)
EXACT_BLOCK = 64_000_000


def _as_matrix(vectors, name: str) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (N, D) array; MusicrecError unless finite and 2-D."""
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise MusicrecError(f"{name} must be a 2-D array (N, D) with D >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise MusicrecError(f"{name} contain NaN or infinite values")
    return arr


class Retriever:
    """Maximum-inner-product search over ``n_items`` item vectors of size ``dim``.

    Attributes
    ----------
    kind : str
        "exact", "hnsw" or "ivf".
    n_items, dim : int
    params : dict
        The index's settings (empty for exact search), e.g. for a health report.
    """

    kind: str = ""

    def __init__(self, item_vectors: np.ndarray):
        self.items = _as_matrix(item_vectors, "item vectors")
        self.n_items, self.dim = self.items.shape
        self.params: dict = {}
        if self.n_items == 0:
            raise MusicrecError("no item vectors to search")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` items per query by inner product.

        Parameters
        ----------
        queries : ndarray, shape (B, D) (or (D,) for one query)
        k : int
            Capped at ``n_items``.

        Returns
        -------
        idx : ndarray, shape (B, k), int64
            Item indices, best first (ties towards the lower index).
        scores : ndarray, shape (B, k), float32
            Their exact inner products with the query; ``-inf`` marks places an ANN index
            left empty (it found fewer than ``k`` items, which IVF can).
        """
        q = _as_matrix(np.atleast_2d(queries), "queries")
        if q.shape[1] != self.dim:
            raise MusicrecError(f"queries have {q.shape[1]} dimensions, the item vectors {self.dim}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise MusicrecError(f"k must be an integer >= 1, got {k!r}")
        k = min(int(k), self.n_items)
        if len(q) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self._search(q, k)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, n_items={self.n_items}, dim={self.dim})"


class ExactRetriever(Retriever):
    """Every item scored: ``queries @ items.T`` then a top-k, in blocks of queries."""

    kind = "exact"

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        step = max(1, EXACT_BLOCK // self.n_items)
        parts = [topk(q[lo:lo + step] @ self.items.T, k) for lo in range(0, len(q), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class FaissRetriever(Retriever):
    """Exact scores for the longest item vectors plus a FAISS index of the rest.

    Parameters
    ----------
    item_vectors : ndarray, shape (I, D)
    kind : {"hnsw", "ivf"}
        ``IndexHNSWFlat`` or ``IndexIVFFlat``, inner product.
    head_share : float in [0, 1)
        Share of the items (longest vectors first) scored exactly instead of indexed.
    m, ef_construction, ef_search : int
        HNSW links per node and candidate-list sizes (build, search); the search list is at
        least ``k`` long.
    nlist, nprobe : int, optional
        IVF lists (default about 4 sqrt(I)) and lists scanned per query.
    mips_to_l2 : bool
        Index ``[v, sqrt(M^2 - |v|^2)]`` in L2 instead of ``v`` by inner product (see the
        module docstring).
    seed : int
        Seeds IVF's k-means.
    """

    def __init__(self, item_vectors: np.ndarray, kind: str = "hnsw", *, head_share: float = HEAD_SHARE,
                 m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int = HNSW_EF_SEARCH,
                 nlist: int | None = None, nprobe: int = IVF_NPROBE, mips_to_l2: bool = False, seed: int = 0):
        super().__init__(item_vectors)
        if kind not in ("hnsw", "ivf"):
            raise MusicrecError(f"unknown ANN index {kind!r}; choose hnsw or ivf")
        if not (isinstance(head_share, (int, float)) and 0 <= head_share < 1):
            raise MusicrecError(f"head_share must be a number in [0, 1), got {head_share!r}")
        try:
            import faiss
        except ImportError:
            raise MusicrecError("the ANN index needs faiss: pip install faiss-cpu") from None
        self.kind = kind
        self.mips_to_l2 = bool(mips_to_l2)
        norms = np.linalg.norm(self.items, axis=1)
        order = np.argsort(-norms, kind="stable")
        n_head = min(int(round(head_share * self.n_items)), self.n_items - 1)
        self.head, self.tail = order[:n_head], order[n_head:]       # item indices, int64
        self.head_vectors = self.items[self.head]
        vectors = self.items[self.tail]
        if self.mips_to_l2:
            sq = norms[self.tail].astype(np.float64) ** 2
            vectors = np.hstack([vectors, np.sqrt(sq.max() - sq).astype(np.float32)[:, None]])
        d = vectors.shape[1]
        metric = faiss.METRIC_L2 if self.mips_to_l2 else faiss.METRIC_INNER_PRODUCT
        self.params = {"head": n_head}
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(m), metric)
            index.hnsw.efConstruction = int(ef_construction)
            self.params.update(m=int(m), ef_construction=int(ef_construction), ef_search=int(ef_search))
        else:
            n = len(vectors)
            # k-means wants >= 39 training points per list
            nlist = int(nlist or max(1, min(n // 39, round(4 * np.sqrt(n)))))
            quantizer = faiss.IndexFlatL2(d) if self.mips_to_l2 else faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
            index.cp.seed = int(seed)
            # k-means on at most 64 points per list (faiss's default 256 took minutes at 1M items)
            index.cp.max_points_per_centroid = 64
            index.train(vectors)
            self.params.update(nlist=nlist, nprobe=min(int(nprobe), nlist))
        index.add(vectors)
        self.index = index

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        head_idx, head_scores = topk(q @ self.head_vectors.T, k)
        # per-call parameters: the index is never modified, so searches may run in threads
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.params["ef_search"], k))
        else:
            params = faiss.SearchParametersIVF(nprobe=self.params["nprobe"])
        qi = np.hstack([q, np.zeros((len(q), 1), np.float32)]) if self.mips_to_l2 else q
        _, found = self.index.search(qi, min(k, len(self.tail)), params=params)
        # -1 marks "fewer found than asked" (an IVF probe of small lists): scored -inf, dropped last
        valid = found >= 0
        tail_idx = self.tail[np.where(valid, found, 0)]
        tail_scores = np.where(valid, np.einsum("bd,bkd->bk", q, self.items[tail_idx]), -np.inf)
        idx = np.hstack([self.head[head_idx], tail_idx])
        scores = np.hstack([head_scores, tail_scores]).astype(np.float32)
        # exact order of everything found: score desc, then index asc
        order = np.lexsort((idx, -scores), axis=1)[:, :k]
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(scores, order, axis=1)

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"FaissRetriever(kind={self.kind!r}, n_items={self.n_items}, dim={self.dim}, {extra})"


def make_retriever(item_vectors: np.ndarray, mode: str = "auto", exact_max_floats: int = EXACT_MAX_FLOATS,
                   **options) -> Retriever:
    """The retriever for a catalogue: ``mode`` "exact", "hnsw", "ivf", or "auto" (exact while the
    item vectors hold at most ``exact_max_floats`` numbers, HNSW above). ``options`` go to
    ``FaissRetriever``."""
    if mode not in MODES:
        raise MusicrecError(f"unknown retrieval mode {mode!r}; choose one of: {', '.join(MODES)}")
    shape = np.shape(item_vectors)
    size = int(np.prod(shape)) if len(shape) == 2 else 0
    if mode == "auto":
        mode = "exact" if size <= exact_max_floats else "hnsw"
    if mode == "exact":
        return ExactRetriever(item_vectors)
    return FaissRetriever(item_vectors, kind=mode, **options)


def recall_at_k(approx: Retriever, exact: Retriever, queries: np.ndarray, k: int = 100) -> float:
    """Mean share of the exact top ``k`` items that ``approx`` also returns in its top ``k``."""
    a, _ = approx.search(queries, k)
    e, _ = exact.search(queries, k)
    hits = [len(np.intersect1d(a[r], e[r])) for r in range(len(e))]
    return float(np.mean(hits) / e.shape[1]) if len(e) else 1.0


def has_vectors(model) -> bool:
    """Whether ``model`` scores by a dot product (``query_vectors``/``item_vectors``)."""
    try:
        model.item_vectors()
    except NotImplementedError:
        return False
    return True


# ---------------------------------------------------------------- catalogues larger than memory
def memmap_item_vectors(path: str) -> np.ndarray:
    """(I, D) item vectors saved with ``numpy.save``, memory-mapped read-only: pages are read
    on demand, so a table larger than RAM can still be scored."""
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MusicrecError(f"cannot memory-map item vectors {path}: {err}") from None
    if vectors.ndim != 2:
        raise MusicrecError(f"{path}: expected an (items, dim) array, got shape {vectors.shape}")
    return vectors


def top_k_memmap(queries: np.ndarray, items: np.ndarray, k: int, block_rows: int = 1 << 18) -> tuple:
    """Exact top-``k`` of ``queries @ items.T`` over ``items`` (I, D), possibly memory-mapped,
    read ``block_rows`` rows at a time: memory O(B x (block_rows + k)), not O(I).

    Returns (indices (B, k) int64, scores (B, k) float32), best first.
    """
    queries = np.asarray(queries, dtype=np.float32)
    n = items.shape[0]
    k = min(k, n)
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for lo in range(0, n, block_rows):
        block = np.asarray(items[lo:lo + block_rows], dtype=np.float32)
        scores = np.concatenate([best_s, queries @ block.T], axis=1)
        ids = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + len(block)), (len(queries), len(block)))],
                             axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        best_s = np.take_along_axis(scores, keep, 1)
        best_i = np.take_along_axis(ids, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_s, order, 1)
