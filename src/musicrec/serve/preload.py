"""What a server computes once per loaded model so that each request stays cheap.

* ``fast_scorer``: a deep sequence model (SASRec, GRU4Rec, NextItNet) whose folder has no ONNX
  export of its own is exported in memory and answers through ONNX Runtime: on 30Music a
  session request costs 1.0-1.2 ms instead of 1.4-3.8 ms through torch, whose per-module Python
  overhead dominates a one-row forward pass. ``MUSICREC_ONNX=off`` keeps torch.
* ``UserQueries``: a request for a listener of the training data with no plays posted since
  asks the same question every time, the query vector of their training history. Encoding it
  (a SASRec pass over up to ``max_len`` plays, Mult-VAE's or the two-tower's encoder) costs
  1-2 ms per request on one core, several times the dot products that follow, so it is computed
  once: in batches at load (SASRec encodes a HetRec listener in 0.4 ms batched, 1.5 ms alone)
  for as many listeners as ``EAGER_FLOATS`` allows, on first request for the rest. Plays posted
  since the data cut bypass the cache (the history is then no longer the training one), and a
  reload builds a new service, so a cached vector never outlives its model.
* ``UserCandidates``: the same idea one step further: a training listener's best ``CANDIDATES``
  unseen items, scored in batches at load (batched scoring shares the work: EASE's ``K X``, SKNN's
  neighbour search, one matrix product for a dot-product model's listeners), so a request re-ranks
  a short list instead of scoring or searching the catalogue. Dot-product models keep them while
  their item vectors are small enough (``CANDIDATE_VECTOR_FLOATS``: HetRec's Mult-VAE, 14,160 x 601,
  answered through HNSW at 1.5 ms a request on one core, and at 7 ms p50 under 500 requests/s
  over two workers); larger catalogues search the index per request. A request that needs more candidates
  than are kept, keeps seen items, or follows posted plays is scored live.
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np

from musicrec import MusicrecError
from musicrec.features.interactions import Interactions
from musicrec.models.base import topk

EAGER_FLOATS = 2_000_000       # computed at load: 8 MB, 31k listeners x 64 dimensions (~12 s for SASRec)
BATCH = 512
CANDIDATES = 256               # unseen items kept per training listener (model scored in full)
EAGER_USERS = 10_000           # listeners whose candidates are computed at load (31 MB)
CANDIDATE_VECTOR_FLOATS = 16_000_000  # dot-product models keep candidates while item vectors hold at most this many numbers
SCORE_FLOATS = 8_000_000       # one scoring batch holds at most this many scores (32 MB)


def fast_scorer(model) -> None:
    """Give an exportable deep ``model`` without an ONNX scorer an in-memory one (see the module doc)."""
    if getattr(model, "scorer_", None) is not None or os.environ.get("MUSICREC_ONNX", "auto") == "off":
        return
    from musicrec.models.compress import check_exportable, memory_scorer

    try:
        check_exportable(model)
    except MusicrecError:           # not a windowed sequence model: torch it is
        return
    try:
        model.scorer_ = memory_scorer(model)
    except Exception as exc:  # noqa: BLE001 - any exporter failure: serve with torch, slower but right
        warnings.warn(f"{model.name}: no ONNX Runtime scorer ({exc}); scoring with torch", stacklevel=2)


class UserQueries:
    """``query_vectors`` of training users, (1, D) float32 per call, cached.

    Parameters
    ----------
    model : Recommender
        A dot-product model (``query_vectors``).
    train : Interactions
        Its training data; user ``u``'s history is ``train.histories([u])``.
    eager_floats : int
        Vectors of the first ``eager_floats // D`` users are computed at construction.
    """

    def __init__(self, model, train: Interactions, eager_floats: int = EAGER_FLOATS):
        self.model, self.train = model, train
        n = train.n_users
        first = model.query_vectors(train.histories(np.arange(min(n, 1))))
        self.dim = first.shape[1]
        # np.empty of a large table only reserves address space: rows cost memory once written
        self._vectors = np.empty((n, self.dim), dtype=np.float32)
        self._done = np.zeros(n, dtype=bool)
        self._lock = threading.Lock()
        eager = min(n, max(0, int(eager_floats)) // max(self.dim, 1))
        for lo in range(0, eager, BATCH):
            users = np.arange(lo, min(lo + BATCH, eager))
            self._vectors[users] = model.query_vectors(train.histories(users))
            self._done[users] = True

    def __call__(self, user: int) -> np.ndarray:
        """The query vector (1, D) of training user index ``user``."""
        if not self._done[user]:
            vector = self.model.query_vectors(self.train.histories([user]))
            with self._lock:
                self._vectors[user] = vector[0]
                self._done[user] = True
        return self._vectors[user][None, :]

    @property
    def n_cached(self) -> int:
        return int(self._done.sum())


class UserCandidates:
    """A training listener's best unseen items by ``model.score``, (indices, scores) kept per user.

    Parameters
    ----------
    model : Recommender
        Scored in full (``score`` (B, I)).
    train : Interactions
        Its training data; user ``u``'s history is ``train.histories([u])`` and their seen items
        are ``train.user_sequences[u]``.
    n : int
        Candidates kept per listener (capped at the catalogue size).
    eager_users : int
        Candidates of the first ``eager_users`` listeners are computed at construction.
    score : callable(users (B,) int64) -> (B, I) scores, optional
        Instead of ``model.score``: a dot-product model's cached query vectors times its item
        vectors, the scores its exact retriever gives.
    """

    def __init__(self, model, train: Interactions, n: int = CANDIDATES, eager_users: int = EAGER_USERS,
                 score=None):
        self.model, self.train = model, train
        self._score = score if score is not None else (lambda users: model.score(train.histories(users)))
        self.n = min(int(n), train.n_items)
        users = train.n_users
        self._idx = np.empty((users, self.n), dtype=np.int64)        # rows cost memory once written
        self._scores = np.empty((users, self.n), dtype=np.float32)
        self._done = np.zeros(users, dtype=bool)
        self._lock = threading.Lock()
        batch = max(1, min(BATCH, SCORE_FLOATS // max(train.n_items, 1)))
        eager = min(users, max(0, int(eager_users)))
        for lo in range(0, eager, batch):
            self._fill(np.arange(lo, min(lo + batch, eager)))

    def _fill(self, users: np.ndarray) -> None:
        scores = np.array(self._score(users), dtype=np.float32, copy=True)
        for r, u in enumerate(users):     # the same exclusion as a live request: every played item
            scores[r, self.train.user_sequences[u]] = -np.inf
        idx, top = topk(scores, self.n)
        with self._lock:
            self._idx[users], self._scores[users] = idx, top
            self._done[users] = True

    def __call__(self, user: int, count: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The best ``count`` unseen items of training user ``user``, (1, count) each, or None
        when more are asked than are kept."""
        if count > self.n:
            return None
        if not self._done[user]:
            self._fill(np.array([user]))
        return self._idx[user, :count][None, :], self._scores[user, :count][None, :]

    @property
    def n_cached(self) -> int:
        return int(self._done.sum())
