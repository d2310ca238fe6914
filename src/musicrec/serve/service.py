"""What the HTTP API answers, as plain dicts: recommendations, similar items, search, new plays.

A ``Service`` wraps one ``ModelBundle``. It resolves the ids people send (a listener's own id
or store id; an item's store id, source id or a forgiving name), builds the history to score
(training history + plays posted since, or a live session), retrieves candidates (a vector
index for dot-product models, else the model's full scores), applies the business rules
(exclude seen, cap per artist, MMR diversity) and returns *item cards*::

    {"item_id": int (store id), "source_id": str | None, "name": str, "artist": str | None,
     "tags": [str, ... up to 5], "score": float, "reason": str}

A Service never changes after it is built (only its event overlay grows), so the app swaps a
whole new one in on reload.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec import MusicrecError
from musicrec.bundle import ModelBundle, data_cut_time, model_version, nothing_to_recommend, stored_store_url
from musicrec.features.interactions import Histories
from musicrec.models.base import Recommender, similarity_block, takes_columns, topk
from musicrec.models.base import check_k as _check_k
from musicrec.names import normalise
from musicrec.serve import rules
from musicrec.serve.events import EventOverlay, StoreWriter, check_store
from musicrec.serve.preload import CANDIDATE_VECTOR_FLOATS, UserCandidates, UserQueries, fast_scorer
from musicrec.serve.search import CatalogueSearch

N_TAGS = 5             # tags on an item card
SEED_TRACKS = 3        # track-level models: a seed artist stands for their most played tracks
MAX_CANDIDATE_MARGIN = 200


class NotFound(MusicrecError):
    """An unknown listener or item (HTTP 404)."""


class NoStore(MusicrecError):
    """Plays cannot be persisted: no store is known for this model (HTTP 503)."""


@dataclass
class _Query:
    """One history to recommend for, in item indices (most recent last)."""

    histories: Histories      # one row
    history: np.ndarray       # (H,) ordered item indices
    liked: frozenset          # indices the listener picked as seeds ("you like")
    session: bool             # recent plays given: sequence models continue them
    user: int = -1            # training user asking with their training history only (cached query)
    tagged: dict = field(default_factory=dict)  # seed index -> the named tags it stands for
    who: str = "this listener"                  # for the error when nothing is left to recommend


class Service:
    """Recommendations from one model folder. See the module docstring for the card format.

    Parameters
    ----------
    bundle : ModelBundle
    model_dir : str, optional
        Where the bundle came from (reported by ``health``).
    store_url : str, optional
        Store that posted plays go to; default the store of the model's split.
    ann : {"auto", "exact", "hnsw", "ivf"}
        Retrieval index for dot-product models (``serve.retrieval.make_retriever``).
    overlay : EventOverlay, optional
        Plays posted so far (kept across reloads).
    one_off : bool
        Answer a question or two and go (the CLI): nothing is computed ahead for every listener,
        no store is opened for posted plays. The answers are the same.
    """

    def __init__(self, bundle: ModelBundle, model_dir: str | None = None, store_url: str | None = None,
                 ann: str = "auto", overlay: EventOverlay | None = None, one_off: bool = False):
        self.bundle = bundle
        self.one_off = one_off
        self.model: Recommender = bundle.model
        self.model_dir = os.path.abspath(model_dir) if model_dir else None
        train = self.model.train_
        self.train = train
        self.n_items = train.n_items
        self.item_level = bundle.item_level
        self.item_ids = np.asarray(train.items.ids, dtype=np.int64)
        self.names = bundle.items["name"].to_list()
        self.source_ids = bundle.items["source_id"].to_list()
        self.artists = self.names if self.item_level == "artist" else bundle.items["artist_name"].to_list()
        self.artist_of = rules.artist_codes(self.artists)
        self.popularity = bundle.popularity.astype(np.int64)
        self.tags = rules.top_tags(bundle.item_tags, self.index_of_ids, N_TAGS)
        self.has_similarity = type(self.model).item_similarity is not Recommender.item_similarity
        # models whose item_similarity takes `columns` compute only the block a request reads
        self._similarity_takes_columns = takes_columns(self.model)
        fast_scorer(self.model)
        self.retriever, self.item_vectors = self._build_retriever(ann)
        eager = 0 if one_off else None
        self.user_queries = (UserQueries(self.model, train, **_given(eager_floats=eager))
                             if self.retriever is not None else None)
        self.user_candidates = self._candidates()
        self.events = overlay if overlay is not None else EventOverlay()
        split = bundle.meta.get("split")
        # recorded in the folder at training (older folders: read from their split, if it is there)
        self.data_cut = float(bundle.meta.get("data_cut") or data_cut_time(split))
        url = None if one_off else check_store(store_url) if store_url else stored_store_url(bundle.meta, split)
        self.writer = StoreWriter(url, bundle.items, self.item_level) if url else None
        self.version = model_version(self.model_dir) if self.model_dir else ""
        self.loaded_at = time.time()
        self.catalogue_search = CatalogueSearch(self.names, self.artists, self.popularity, bundle.names)
        if not one_off:
            self._warm_up()

    def _warm_up(self) -> None:
        """Answer one listener at load, and their plays as a session (scored live, not from the
        kept candidates), so that state a model builds on first use (EASE's factor of K: 0.3 s on
        HetRec; the ranker's compiled tree walk, up to 1 s) is not paid by the first request."""
        if self.train.n_users:
            hist = self.train.histories([0])
            for session, user in ((False, 0), (True, -1)):
                try:
                    self._recommend(_Query(hist, np.asarray(hist.sequences[0]), frozenset(), session, user=user),
                                    10, True, None, None)
                except MusicrecError:       # e.g. nothing left to recommend to that listener
                    pass

    def _candidates(self) -> UserCandidates | None:
        """Training listeners' best unseen items, kept (see ``preload``): scored in full, or, for a
        dot-product model with a small enough catalogue, its exact dot products."""
        eager = _given(eager_users=0 if self.one_off else None)
        if self.retriever is None:
            return UserCandidates(self.model, self.train, **eager)
        if self.item_vectors.size > CANDIDATE_VECTOR_FLOATS:
            return None
        queries, vectors = self.user_queries, self.item_vectors
        return UserCandidates(self.model, self.train, **eager,
                              score=lambda users: np.vstack([queries(int(u)) for u in users]) @ vectors.T)

    @classmethod
    def load(cls, model_dir: str, store_url: str | None = None, ann: str = "auto",
             overlay: EventOverlay | None = None, one_off: bool = False) -> "Service":
        """A Service over the model folder ``model_dir`` (see the class parameters)."""
        return cls(ModelBundle.load(model_dir), model_dir, store_url=store_url, ann=ann, overlay=overlay,
                   one_off=one_off)

    def _build_retriever(self, ann: str):
        from musicrec.serve.retrieval import MODES, has_vectors, make_retriever

        if ann not in MODES:
            raise MusicrecError(f"unknown retrieval mode {ann!r}; choose one of: {', '.join(MODES)}")
        if not has_vectors(self.model):
            return None, None
        vectors = np.ascontiguousarray(self.model.item_vectors(), dtype=np.float32)
        return make_retriever(vectors, mode=ann), vectors

    def health(self) -> dict:
        # public: the folder's name only, no path of this machine
        return {"status": "ok", "model": self.model.name, "version": self.version,
                "model_dir": os.path.basename(self.model_dir) if self.model_dir else None,
                "item_level": self.item_level, "n_items": self.n_items, "n_users": self.train.n_users,
                "retrieval": self.retriever.kind if self.retriever is not None else "scores",
                "scorer": getattr(self.model, "scorer", "native"),
                "accepts_plays": self.writer is not None,
                "loaded_at": dt.datetime.fromtimestamp(self.loaded_at, dt.timezone.utc).isoformat(timespec="seconds")}

    # ------------------------------------------------------------ resolving ids
    def index_of_ids(self, ids) -> np.ndarray:
        """Model indices of store item ids (N,) -> (N,) int64, -1 when not in the catalogue."""
        return self.train.items.index(ids)

    def resolve_item(self, item) -> int:
        """Index of an item given by store id, source id or (forgiving) name; NotFound otherwise."""
        text = str(item).strip()
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit() and abs(int(text)) < 2**63:
            idx = int(self.index_of_ids([int(text)])[0])
            if idx >= 0:
                return idx
        idx = self.bundle.names.find(text)
        if idx is None:
            hint = self.bundle.names.suggest(text)
            raise NotFound(f"unknown {self._kind()} {text!r}" + (f"; did you mean: {', '.join(hint)}?" if hint else ""))
        return idx

    def resolve_seed(self, seed) -> list[int]:
        """Indices a seed artist stands for: the item itself (artist level, or a track id/name), or
        at track level an artist's ``SEED_TRACKS`` most played tracks."""
        if self.item_level == "track":
            key = normalise(str(seed))
            by_artist = np.flatnonzero(self.catalogue_search.artists() == key) if key else np.zeros(0, np.int64)
            if len(by_artist):
                return by_artist[np.argsort(-self.popularity[by_artist], kind="stable")][:SEED_TRACKS].tolist()
        return [self.resolve_item(seed)]

    def _kind(self) -> str:
        return "artist" if self.item_level == "artist" else "track"

    def _user(self, user_id: str) -> tuple[int, tuple]:
        """(training index or -1, overlay key) of a listener."""
        try:
            u = self.bundle.user_index(str(user_id))
        except MusicrecError:
            return -1, ("new", str(user_id))
        return u, ("user", int(self.train.users.ids[u]))

    # ------------------------------------------------------------ recommending
    def recommend_user(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                       max_per_artist: int | None = None, diversity: float | None = None) -> list[dict]:
        """Top ``k`` cards for a listener: their training history plus plays posted since.

        A listener not in the training data is known once they have posted plays; NotFound before.
        """
        u, key = self._user(user_id)
        new = self.index_of_ids(self.events.items(key, since=self.data_cut))
        new = new[new >= 0]
        if u < 0 and not len(new):
            raise NotFound(f"unknown user {user_id!r}: not in the model's training data and no plays posted")
        if u >= 0 and not len(new):
            hist = self.train.histories([u])                     # the learned user vector where there is one
        else:
            # known plays + new ones, scored as a new listener so ALS/BPR fold the user in
            base = self.train.user_sequences[u] if u >= 0 else np.zeros(0, np.int64)
            matrix = sp.csr_matrix((np.ones(len(new), np.float32), (np.zeros(len(new), np.int64), new)),
                                   shape=(1, self.n_items))
            if u >= 0:
                matrix = matrix + self.train.matrix[u]
            hist = Histories(sp.csr_matrix(matrix, dtype=np.float32), [np.concatenate([base, new])],
                             np.array([-1], dtype=np.int64))
        query = _Query(hist, np.asarray(hist.sequences[0], np.int64), frozenset(), session=len(new) > 0,
                       user=u if not len(new) else -1, who=f"listener {str(user_id)!r}")
        return self._recommend(query, k, exclude_seen, max_per_artist, diversity)

    def recommend_session(self, recent_plays: list, seed_artists: list, k: int = 10, exclude_seen: bool = True,
                          max_per_artist: int | None = None, diversity: float | None = None,
                          seed_tags: list | None = None) -> list[dict]:
        """Top ``k`` cards for an anonymous listener: artists they like, genres/tags they like (their
        best-known items stand in as seeds) and/or this session's plays (oldest first). With none,
        the most popular items."""
        seeds = [i for s in seed_artists for i in self.resolve_seed(s)]
        tagged = {}                 # the listener named the tags, not these artists
        if seed_tags:
            try:
                tag_items, names = self.bundle.tag_seeds(list(seed_tags))
            except MusicrecError as exc:
                raise NotFound(str(exc)) from None
            tagged = {int(i): " / ".join(names) for i in tag_items if int(i) not in seeds}
        recent = [self.resolve_item(p) for p in recent_plays]
        history = np.asarray(seeds + list(tagged) + recent, dtype=np.int64)
        if not len(history):
            return self._popular(k, max_per_artist)
        hist = Histories.from_sequences([history], self.n_items)
        who = "this session" if recent else "these seeds" if seeds else "these tags"
        query = _Query(hist, history, frozenset(seeds), session=bool(recent), tagged=tagged, who=who)
        return self._recommend(query, k, exclude_seen, max_per_artist, diversity)

    def recommend_history(self, items: np.ndarray, plays: np.ndarray, k: int = 10, exclude_seen: bool = True,
                          max_per_artist: int | None = None, diversity: float | None = None) -> list[dict]:
        """Top ``k`` cards for a listener the model never saw, from their own plays (an export):
        ``items`` (H,) item indices oldest first, ``plays`` (H,) how often each was played. Folded
        in like a new listener (ALS solves their vector, EASE/ItemKNN take the row, sequence
        models read the most recent items)."""
        items = np.asarray(items, dtype=np.int64)
        row = sp.csr_matrix((np.asarray(plays, np.float32), (np.zeros(len(items), np.int64), items)),
                            shape=(1, self.n_items))
        hist = Histories(row, [items], np.array([-1], dtype=np.int64))
        query = _Query(hist, items, frozenset(), session=False, who="this listening history")
        return self._recommend(query, k, exclude_seen, max_per_artist, diversity)

    def _recommend(self, q: _Query, k: int, exclude_seen: bool, max_per_artist, diversity) -> list[dict]:
        _check_k(k)
        seen = np.unique(q.history) if exclude_seen else np.zeros(0, np.int64)
        rules = max_per_artist is not None or bool(diversity)
        n = min(self.n_items, k + len(seen) + min(max(k, 50) * (4 if rules else 1), MAX_CANDIDATE_MARGIN + k))
        cached = self.user_candidates(q.user, n) if q.user >= 0 and exclude_seen and self.user_candidates else None
        if cached is not None:              # scored at load: the same items a live scoring ranks first
            idx, scores = cached
        elif self.retriever is not None:
            vector = self.user_queries(q.user) if q.user >= 0 else self.model.query_vectors(q.histories)
            idx, scores = self.retriever.search(vector, n)
        else:
            all_scores = np.array(self.model.score(q.histories), dtype=np.float32, copy=True)
            all_scores[:, seen] = -np.inf
            idx, scores = topk(all_scores, n)
        idx, scores = self._rerank(idx[0], scores[0], k, seen, max_per_artist, diversity)
        if not len(idx):    # say why (HTTP 422), never an empty answer
            raise nothing_to_recommend(q.who, self.n_items, len(seen), exclude_seen, self.model.name)
        return self._cards(idx, scores, self._reasons(idx, q))

    def _rerank(self, idx, scores, k, seen, max_per_artist, diversity):
        from musicrec.serve.rules import rerank

        keep = np.isfinite(scores)
        similarity = None
        if diversity and self.item_vectors is None and self.has_similarity:
            similarity = lambda rows: self._similarity(rows, rows)  # noqa: E731
        return rerank(idx[keep], scores[keep], k, exclude=seen if len(seen) else None,
                      artist_of=self.artist_of if max_per_artist is not None else None,
                      max_per_artist=max_per_artist,
                      mmr_lambda=None if not diversity else 1.0 - float(diversity),
                      item_vectors=self.item_vectors if diversity else None, similarity=similarity)

    @functools.cached_property
    def _by_popularity(self) -> np.ndarray:
        """Item indices, most listeners first (sorted once, not per request)."""
        return np.argsort(-self.popularity, kind="stable")

    def _popular(self, k: int, max_per_artist) -> list[dict]:
        _check_k(k)
        order = self._by_popularity[: min(self.n_items, k + MAX_CANDIDATE_MARGIN)]
        idx, scores = self._rerank(order, self.popularity[order].astype(np.float32), k, np.zeros(0, np.int64),
                                   max_per_artist, None)
        return self._cards(idx, scores, ["popular now"] * len(idx))

    # ------------------------------------------------------------ similar items
    def similar(self, item_id, k: int = 10) -> tuple[dict, list[dict]]:
        """The matched item's card and its ``k`` most similar items' cards.

        Models without an item similarity (popularity baselines) answer by co-listening: the
        cosine of the items' listener sets.
        """
        _check_k(k)
        i = self.resolve_item(item_id)
        if self.has_similarity:
            idx, scores = self.model.similar_items([i], k=k)
        else:
            sims = self._co_listening(i)
            sims[i] = -np.inf
            idx, scores = topk(sims[None], k)
        keep = np.isfinite(scores[0])
        idx, scores = idx[0][keep], scores[0][keep]
        if not len(idx):
            n = self.n_items
            raise MusicrecError(f"nothing is similar to {self.names[i]}: " + (
                "the model knows no other item" if n <= 1 else
                f"model {self.model.name} gives no finite similarity to any of the other {n - 1} items"))
        return self._card(i, 1.0, ""), self._cards(idx, scores, self.bundle.similar_reasons(i, idx))

    def _co_listening(self, i: int) -> np.ndarray:
        """Cosine of item ``i``'s listener set with every item's, (I,) float32."""
        m = self.train.matrix
        listeners = m[:, [i]].nonzero()[0]
        co = np.asarray((m[listeners] > 0).sum(axis=0), dtype=np.float64).ravel()
        denom = np.sqrt(max(len(listeners), 1) * np.maximum(self.popularity, 1))
        return (co / denom).astype(np.float32)

    # ------------------------------------------------------------ search
    def search(self, q: str, limit: int = 10) -> list[dict]:
        """Items whose name (or, for tracks, artist) matches ``q``: exact, then prefix, then
        substring, then fuzzy matches; more popular first within each group."""
        hits = self.catalogue_search.find(q, limit)
        return [{"item_id": int(self.item_ids[i]), "source_id": self.source_ids[i], "name": self.names[i],
                 "artist": self.artists[i], "tags": self.tags.get(i, [])} for i in hits]

    # ------------------------------------------------------------ new plays
    def append_events(self, user_id: str, plays: list[dict]) -> dict:
        """Persist plays (``[{"item_id", "timestamp" (datetime or None = now), "ms_played"}]``) to
        the store and apply them to the listener's next recommendations at once.

        Returns ``{"user_id", "accepted", "stored", "duplicates", "history_length"}``.
        """
        if not plays:
            raise MusicrecError("give at least one play")
        if self.writer is None:
            raise NoStore("no store to persist plays to: the model's split names none that exists here; "
                          "start the server with --store URL")
        idx = np.array([self.resolve_item(p["item_id"]) for p in plays], dtype=np.int64)
        now = dt.datetime.now(dt.timezone.utc)
        # plays without a time get now, a microsecond apart, so their order survives
        stamps = [_utc(p.get("timestamp")) or now + dt.timedelta(microseconds=n) for n, p in enumerate(plays)]
        u, key = self._user(user_id)
        store_ids = self.item_ids[idx]
        level_col = "artist_id" if self.item_level == "artist" else "track_id"
        frame = pl.DataFrame({
            "user_id": pl.Series([key[1] if u >= 0 else None] * len(plays), dtype=pl.Int64),
            "user": [str(user_id)] * len(plays),
            level_col: store_ids,
            "timestamp": pl.Series(stamps, dtype=pl.Datetime("us", "UTC")),
            "ms_played": pl.Series([p.get("ms_played") for p in plays], dtype=pl.Int64),
        })
        report = self.writer.append(frame)
        ts_us = frame["timestamp"].dt.epoch("us").to_numpy()
        self.events.add(key, store_ids, ts_us)
        known = len(self.train.user_sequences[u]) if u >= 0 else 0
        return {"user_id": str(user_id), "accepted": len(plays), "stored": report.plays_added,
                "duplicates": report.plays_duplicate,
                "history_length": known + len(self.events.items(key, since=self.data_cut))}

    # ------------------------------------------------------------ cards and reasons
    def _card(self, i: int, score: float, reason: str) -> dict:
        return {"item_id": int(self.item_ids[i]), "source_id": self.source_ids[i], "name": self.names[i],
                "artist": self.artists[i], "tags": self.tags.get(i, []), "score": float(score), "reason": reason}

    def _cards(self, idx, scores, reasons) -> list[dict]:
        return [self._card(int(i), s, r) for i, s, r in zip(idx, scores, reasons)]

    def _reasons(self, idx: np.ndarray, q: _Query) -> list[str]:
        """Why each item is recommended, in this order of preference: the model's own sources
        (the ranker's ``sources``), the session it continues (sequence models), the history item
        it is most similar to, a tag the listener plays most, else its popularity."""
        history = np.unique(q.history)
        played = set(history.tolist())
        # a sequential model without item similarity (recently-played) ranks by recency, then
        # popularity: only models that learned transitions "continue" a session
        if self.model.sequential and q.session and self.has_similarity and not hasattr(self.model, "sources"):
            last = self.names[int(q.history[-1])]
            return [f"continues this session after {last}" if int(i) not in played else "you played it before"
                    for i in idx]
        sources = self.model.sources(q.histories, idx) if hasattr(self.model, "sources") else [None] * len(idx)
        last = self.names[int(q.history[-1])] if len(q.history) else ""
        words = {"follows": f"often played after {last}", "similar-sessions": "played in sessions like this one",
                 "popular": "popular now"}
        out: list[str | None] = []
        for r, i in enumerate(idx):
            kind, n = sources[r] or (None, 0)
            if kind == "repeat":            # the ranker's strongest evidence: this history's own plays
                out.append(f"you played it {n} time{'s' if n != 1 else ''} {'this session' if q.session else 'before'}")
            elif kind in words and (kind != "follows" or last):
                out.append(words[kind])
            elif int(i) in played:          # only when seen items are not excluded
                out.append("you played it before")
            else:
                out.append(None)
        # the similarity block and the listener's tags only for the items still without a reason
        rest = [r for r, reason in enumerate(out) if reason is None]
        support = self._support(idx[rest], history)         # None for no items
        listener_tags = self._listener_tags(q.histories) if rest else []
        for n, r in enumerate(rest):
            j, w = support[n] if support is not None else (-1, 0.0)
            if w > 0 and j in q.tagged:
                out[r] = f"close to {self.names[j]} ({q.tagged[j]})"
            elif w > 0:
                out[r] = f"similar to {self.names[j]} you {'like' if j in q.liked else 'played'}"
            else:
                tag = next((t for t in listener_tags if t in self.tags.get(int(idx[r]), ())), None)
                out[r] = f"popular among listeners of {tag}" if tag else "popular now"
        return out

    def _support(self, idx: np.ndarray, history: np.ndarray):
        """Per recommended item, (history index, similarity) of its most similar history item."""
        if not len(idx) or not len(history):
            return None
        if self.item_vectors is not None:       # cosine of the model's own vectors: cheap at any size
            from musicrec.serve.rules import unit_rows

            a = unit_rows(self.item_vectors[idx])
            b = unit_rows(self.item_vectors[history])
            sims = a @ b.T
        elif self.has_similarity:
            sims = self._similarity(idx, history)
        else:
            return None
        sims = np.where(history[None, :] == idx[:, None], -np.inf, sims)
        best = np.argmax(sims, axis=1)
        return [(int(history[b]), float(sims[r, b])) for r, b in enumerate(best)]

    def _similarity(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``item_similarity(rows)[:, columns]`` (R, C), computing only that block where the model can."""
        return similarity_block(self.model, rows, columns, block=self._similarity_takes_columns)

    def _listener_tags(self, histories: Histories, n: int = 3) -> list[str]:
        """The ``n`` tags most played by the listener (play-weighted over their items' tags; ties
        by name)."""
        names, codes = self._tag_codes
        m = histories.matrix                      # row 0 read directly: scipy's m[0] costs more
        items, data = m.indices[m.indptr[0]:m.indptr[1]], m.data[m.indptr[0]:m.indptr[1]]
        if not len(names) or not len(items):
            return []
        tags = codes[items]                                         # (H, N_TAGS), -1 = none
        has = tags >= 0
        plays = np.broadcast_to(np.asarray(data, np.float64)[:, None], tags.shape)
        totals = np.bincount(tags[has], weights=plays[has], minlength=len(names))
        found = np.flatnonzero(totals > 0)          # codes follow the names' order: ties by name
        best = found[np.argsort(-totals[found], kind="stable")[:n]]
        return [names[c] for c in best]

    @functools.cached_property
    def _tag_codes(self) -> tuple[list[str], np.ndarray]:
        return rules.tag_codes(self.tags, self.n_items, N_TAGS)


# ---------------------------------------------------------------- helpers
def _given(**options) -> dict:
    """``options`` without the ones left at None (the callee's default)."""
    return {k: v for k, v in options.items() if v is not None}


def _utc(value) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:            # a time without a zone is read as UTC
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
