"""Two-stage recommender: candidates from several models, ranked by gradient-boosted trees.

Stage 1 asks every candidate model (``candidates``, any registered models) for its top
``n_candidates`` items per history; stage 2 scores the union with a LightGBM LambdaRank model
over features of each (history, candidate) pair (see ``FEATURES``): every candidate model's
score relative to its best score and to the candidates' spread, and its rank, how often and how recently the history
played the item, whether it is the last item played, the item's popularity, the history's
length, and the cosine between the item's tags and the history's (with item content). Items outside the union score below every candidate, in the first candidate model's
order, so the full ranking stays defined.

Learning protocol (``fit(train)``), with no test data anywhere: a slice of ``train`` is carved
off (``holdout``): for session data (more sessions than users, most of two plays or more) the most recent sessions, whose
every prefix becomes a query with the next item as its answer; for user data a hashed
``holdout`` share of each listener's items (listeners with five or more), which become the
answers to their remaining history. The candidate models are fitted on the rest, the ranker
learns on the carved slice (its popularity features counted on the rest too), and then the
candidate models are refitted on all of ``train``; the score features are scale-free (relative to
the best score and to the candidates' spread, and ranks) because raw scores such as co-occurrence
counts grow with the data. The split's validation part is therefore left for tuning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec import MusicrecError, fsio
from musicrec.features.interactions import Histories, Interactions
from musicrec.models.base import Recommender, similarity_block, topk

TASKS = ("auto", "session", "user")
DEFAULT_CANDIDATES = {"session": "sr,sknn,recently-played,itemknn", "user": "ease,als,itemknn,most-popular"}


@dataclass(frozen=True)
class RankerConfig:
    candidates: str = "auto"       # comma-separated registry names; "auto": by task (DEFAULT_CANDIDATES)
    candidate_params: str = "{}"   # JSON object: model name -> its hyperparameters
    n_candidates: int = 50         # items each candidate model proposes per history
    task: str = "auto"             # "session" (next item of a session), "user" (a listener's held-out items)
    holdout: float = 0.2           # share of sessions / of each listener's items the ranker learns on
    max_queries: int = 50000       # learning queries sampled from the carved slice
    folds: int = 3                 # user data: disjoint carves of each listener's items (more queries)
    n_trees: int = 300             # boosting rounds
    learning_rate: float = 0.05    # shrinkage per tree
    num_leaves: int = 15           # leaves per tree (small trees generalise from the carved slice best)
    min_child_samples: int = 100   # rows per leaf at least
    seed: int = 0                  # carving, sampling and LightGBM


class Ranker(Recommender):
    """Candidates from several models, re-ranked by LightGBM LambdaRank. See ``RankerConfig``."""

    name = "ranker"
    sequential = True
    #: item tag vectors (``fit(content=...)``) give the tag-overlap feature; without them it is 0
    uses_content = True
    config = RankerConfig

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "n_candidates": trial.suggest_categorical("n_candidates", [30, 50, 100]),
            "num_leaves": trial.suggest_categorical("num_leaves", [7, 15, 31]),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "n_trees": trial.suggest_int("n_trees", 100, 500, step=100),
        }

    def _validate(self) -> None:
        self._check_int("n_candidates", 1)
        self._check_choice("task", TASKS)
        self._check_number("holdout", low=0, low_open=True, high=0.5)
        self._check_int("max_queries", 10)
        self._check_int("folds", 1)
        self._check_int("n_trees", 1)
        self._check_number("learning_rate", low=0, low_open=True)
        self._check_int("num_leaves", 2)
        self._check_int("min_child_samples", 1)
        self._check_int("seed", 0)
        self._candidate_specs("session")   # names and params parse

    def _candidate_specs(self, task: str) -> list[tuple[str, dict]]:
        from musicrec.models.registry import MODELS

        names = DEFAULT_CANDIDATES[task] if self.candidates == "auto" else self.candidates
        names = [n.strip() for n in str(names).split(",") if n.strip()]
        params = self.candidate_params
        if isinstance(params, str):
            try:
                params = json.loads(params or "{}")
            except ValueError:
                raise MusicrecError(f"{self.name}: candidate_params must be a JSON object, got {params!r}") from None
        if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
            raise MusicrecError(f"{self.name}: candidate_params must map model names to parameter objects")
        unknown = [n for n in [*names, *params] if n not in MODELS or n == self.name]
        if not names or unknown or len(set(names)) != len(names):
            raise MusicrecError(f"{self.name}: candidates must be distinct registered models other than "
                                f"{self.name}, got {self.candidates!r}")
        return [(n, params.get(n, {})) for n in names]

    # ------------------------------------------------------------ the task
    def _fit(self, train: Interactions) -> None:
        from musicrec.models.registry import create

        self._validate()
        # sessions worth continuing: more sessions than listeners, most of them two plays or more
        multi = float(np.mean(np.diff(train.session_indptr) >= 2)) if train.n_sessions else 0.0
        auto = "session" if train.n_sessions > train.n_users and multi >= 0.5 else "user"
        task = auto if self.task == "auto" else self.task
        specs = self._candidate_specs(task)
        if task == "user" and self.folds * self.holdout > 0.8:
            raise MusicrecError(f"{self.name}: folds x holdout must be at most 0.8 (each listener keeps a history), "
                                f"got {self.folds} x {self.holdout}")
        self.task_ = task
        # user data: ``folds`` disjoint carves of each listener's items, each with candidates fitted
        # on its own rest, multiply the learning queries; the latest sessions are one slice only
        parts = []
        for fold in range(self.folds if task == "user" else 1):
            rest, queries, answers = (_carve_sessions(train, self.holdout, self.max_queries, self.seed)
                                      if task == "session" else
                                      _carve_users(train, self.holdout, self.max_queries, self.seed, fold))
            if len(queries) == 0:
                raise MusicrecError(f"{self.name}: the carved {self.holdout:.0%} of the training data has nothing "
                                    "to learn from (too few sessions or listeners)")
            # every feature comes from the rest while learning: nothing of the carved answers leaks in
            self._set_popularity(rest)
            self.models_ = [create(n, **p).fit(rest) for n, p in specs]
            parts.append(self._learning_rows(queries, answers, rest))
        x, y, group = (np.concatenate(a) for a in zip(*parts))
        if y.sum() == 0:
            raise MusicrecError(f"{self.name}: no carved answer is among the candidates; raise n_candidates")
        self.booster_ = _train_booster(x, y, group, self)
        self._set_popularity(train)
        self.models_ = [create(n, **p).fit(train) for n, p in specs]
        self.names_ = [n for n, _ in specs]

    def _set_popularity(self, train: Interactions) -> None:
        """Per item (I, 4): log plays, log listeners, and within sessions how often a play of it is
        followed by itself (an album played through, a loop) and how many plays are followed at all."""
        plays = np.asarray(train.matrix.sum(axis=0)).ravel()
        listeners = np.diff(sp.csc_matrix(train.matrix).indptr)
        items = train.session_items
        inner = np.ones(len(items), dtype=bool)      # a play with a next play in its session
        inner[train.session_indptr[1:] - 1] = False
        follows = np.flatnonzero(inner)
        n_next = np.bincount(items[follows], minlength=train.n_items)
        n_self = np.bincount(items[follows], weights=items[follows + 1] == items[follows], minlength=train.n_items)
        self_rate = (n_self + 0.5) / (n_next + 1.0)     # smoothed towards one half
        self.popularity_ = np.stack([np.log1p(plays), np.log1p(listeners), self_rate, np.log1p(n_next)],
                                    axis=1).astype(np.float32)

    def _learning_rows(self, queries: Histories, answers: list, rest: Interactions):
        xs, ys, groups = [], [], []
        for lo in range(0, len(queries), 512):
            batch = _rows(queries, lo, lo + 512)
            cand, x = self._features(batch)
            for r, items in enumerate(cand):
                label = np.isin(items, answers[lo + r]).astype(np.float32)
                if label.any():     # a query without its answer among the candidates teaches nothing
                    xs.append(x[r]), ys.append(label), groups.append(len(items))
        if not xs:
            return np.zeros((0, len(FEATURES))), np.zeros(0), np.zeros(0, np.int64)
        return np.concatenate(xs), np.concatenate(ys), np.asarray(groups, dtype=np.int64)

    # ------------------------------------------------------------ stage 1 + features
    def _model_scores(self, histories: Histories) -> list[np.ndarray]:
        """Every candidate model's scores (B, I) float32 of ``histories``. The last result for a
        single history is kept (the very object, not a copy of it): serving asks ``score`` and then
        ``sources`` for the same request, and the candidate models cost most of both."""
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0] is histories:
            return memo[1]
        scores = [np.array(m.score(histories), dtype=np.float32, copy=True) for m in self.models_]
        if len(histories) == 1:
            self._memo = (histories, scores)        # one assignment: a concurrent request sees old or new
        return scores

    def _features(self, histories: Histories, scores: list[np.ndarray] | None = None
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per history: candidate item indices (C,) and their features (C, F); ``scores`` are the
        candidate models' (``_model_scores``), computed here when not given."""
        n = self.n_candidates
        scores = self._model_scores(histories) if scores is None else scores
        hist = histories.matrix
        if not (sp.issparse(hist) and hist.format == "csr" and hist.has_sorted_indices):   # read as sorted CSR below
            hist = sp.csr_matrix(hist, copy=True)
            hist.sort_indices()
        if self.task_ == "user":    # listeners are never recommended what they played: spend no slot on it
            rows = np.repeat(np.arange(hist.shape[0]), np.diff(hist.indptr))
            scores = [s.copy() for s in scores]
            for s in scores:
                s[rows, hist.indices] = -np.inf
        if len(histories) == 1:     # one call for every model's row (a served request)
            best, best_scores = topk(np.concatenate(scores), min(n, scores[0].shape[1]))
            tops = [best[m:m + 1] for m in range(len(scores))]
            if self.task_ != "user":    # the models' own scores: ``sources`` reads ranks off their tops
                self._tops = (histories, best_scores)
        else:
            tops = [topk(s, min(n, s.shape[1]))[0] for s in scores]
        cands, feats = [], []
        scratch = np.full(hist.shape[1], -1, dtype=np.int64)
        content = getattr(self, "unit_content_", None)
        if content is not None:     # the history's tag profile: play-weighted mean of its items' tags
            profiles = sp.csr_matrix(_unit_rows(sp.csr_matrix(hist @ content)))
        for r in range(len(histories)):
            items = np.unique(np.concatenate([t[r] for t in tops]))
            cols = []
            for s, t in zip(scores, tops):
                # scale-free: raw scores (co-occurrence counts, say) grow with the data, and the
                # candidate models are refitted on more data than the ranker learned with
                row = s[r, items]
                finite = np.isfinite(row)
                best = s[r, t[r][0]] if len(t[r]) and np.isfinite(s[r, t[r][0]]) else 0.0
                ratio = np.where(finite, row / (abs(best) + 1e-9), -10.0)
                vals = row[finite]
                z = (row - vals.mean()) / (vals.std() + 1e-9) if len(vals) else np.zeros(len(items))
                rank = np.full(len(items), n, dtype=np.float32)
                rank[np.searchsorted(items, t[r])] = np.arange(len(t[r]))
                cols += [ratio, np.where(finite, z, -10.0), rank]
            seq = np.asarray(histories.sequences[r], dtype=np.int64)
            scratch[seq] = np.arange(len(seq))
            last = scratch[items]
            scratch[seq] = -1
            since = np.where(last >= 0, len(seq) - 1 - last, 1000).astype(np.float32)
            lo, hi = hist.indptr[r], hist.indptr[r + 1]
            counts = _counts_in_row(hist.indices[lo:hi], hist.data[lo:hi], items)
            n_distinct = hi - lo
            # how much this history repeats itself: listeners who loop keep looping
            repeat_share = 1.0 - n_distinct / max(len(seq), 1)
            cols += [np.log1p(counts), since, (since == 0).astype(np.float32),
                     self.popularity_[items, 0], self.popularity_[items, 1],
                     self.popularity_[items, 2], self.popularity_[items, 3],
                     np.full(len(items), np.log1p(len(seq)), dtype=np.float32),
                     np.full(len(items), np.log1p(n_distinct), dtype=np.float32),
                     np.full(len(items), repeat_share, dtype=np.float32)]
            overlap = (np.zeros(len(items), dtype=np.float32) if content is None else
                       np.asarray((content[items] @ profiles[r].T).todense()).ravel())
            cols.append(overlap)
            cands.append(items)
            feats.append(np.stack(cols, axis=1).astype(np.float32))
        return cands, feats

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted()
        scores = self._model_scores(histories)
        first = scores[0]
        cands, feats = self._features(histories, scores)
        out = np.empty_like(first)
        flat = self._predict(np.concatenate(feats)) if cands else np.zeros(0)
        at = 0
        for r, items in enumerate(cands):
            pred = flat[at:at + len(items)]
            at += len(items)
            # outside the candidates: below every candidate, in the first model's order
            base = (pred.min() if len(pred) else 0.0) - 2.0
            finite = np.isfinite(first[r])
            vals = first[r][finite]
            lo, hi = (vals.min(), vals.max()) if len(vals) else (0.0, 1.0)
            out[r] = base + np.where(finite, (first[r] - lo) / (hi - lo + 1e-12), 0.0)
            out[r, items] = pred
        return out

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """The booster's raw scores (R,) of feature rows ``x`` (R, F): through its trees as flat
        arrays (``FlatForest``, the same numbers in less time) where they cover the model."""
        built = getattr(self, "_forest", None)
        if built is None or built[0] is not self.booster_:
            from musicrec.models.forest import FlatForest

            built = self._forest = (self.booster_, FlatForest.from_booster(self.booster_))
        return built[1].predict(x) if built[1] is not None else self.booster_.predict(x, num_threads=1)

    def sources(self, histories: Histories, items: np.ndarray) -> list[tuple[str, int] | None]:
        """Why each of ``items`` (K,) ranks for the first history, from its strongest evidence:
        ("repeat", times played in the history), else the source of the candidate model that
        ranks it highest: ("follows", 0) for SR, ("similar-sessions", 0) for SKNN, ("popular", 0)
        for popularity; None where a collaborative model leads (the caller's similarity reason)."""
        row = histories if len(histories) == 1 else _rows(histories, 0, 1)
        items = np.asarray(items, dtype=np.int64)
        # times each item was played: row 0's entries read directly (scipy's m[0, items] costs more
        # than the rest of this method)
        m = row.matrix
        played, inverse = np.unique(m.indices[m.indptr[0]:m.indptr[1]], return_inverse=True)
        counts = _counts_in_row(played, np.bincount(inverse, weights=m.data[m.indptr[0]:m.indptr[1]],
                                                    minlength=len(played)), items)
        leader = self._leading_models(row, items)
        kinds = {"sr": "follows", "sknn": "similar-sessions", "most-popular": "popular", "recently-played": None}
        out = []
        for r, c in enumerate(counts):
            if c > 0:
                out.append(("repeat", int(c)))
                continue
            kind = kinds.get(self.names_[leader[r]])
            out.append((kind, 0) if kind else None)
        return out

    def _leading_models(self, row: Histories, items: np.ndarray) -> np.ndarray:
        """Per item (K,), the first candidate model among those that rank it highest (fewest items
        scoring above it) for the one history ``row``. Where ``_features`` kept the models' top
        scores for this history, an item at or above a model's last kept score has its rank among
        the kept ones (anything scoring above it is kept), and an item below it ranks after them
        all; only items no model keeps are counted over the whole catalogue."""
        scores = [s[0] for s in self._model_scores(row)]
        kept = getattr(self, "_tops", None)
        kept = kept[1] if kept is not None and kept[0] is row and len(kept[1][0]) else None

        def counted(m: int, cols: np.ndarray) -> np.ndarray:
            score = scores[m]
            if np.isnan(score).any():       # -inf (an excluded item) and inf compare as they are
                score = np.nan_to_num(score, nan=0.0, posinf=np.inf, neginf=-np.inf)
            return np.count_nonzero(score[None, :] > score[cols][:, None], axis=1)

        ranks = np.empty((len(scores), len(items)), dtype=np.int64)
        for m, score in enumerate(scores):
            if kept is None or np.isnan(score).any():
                ranks[m] = counted(m, items)
                continue
            v = score[items]
            above = np.count_nonzero(kept[m][None, :] > v[:, None], axis=1)
            ranks[m] = np.where(v >= kept[m][-1], above, len(kept[m]))   # the latter: at least that
        if kept is not None:
            unkept = np.flatnonzero((ranks >= len(kept[0])).all(axis=0))
            if len(unkept):
                for m in range(len(scores)):
                    ranks[m, unkept] = counted(m, items[unkept])
        return np.argmin(ranks, axis=0)

    def item_similarity(self, items, columns=None):
        """The first candidate model's item similarity that has one, (B, I), or (B, C) for
        ``columns`` (passed on to a model that computes only that block, e.g. EASE and SKNN)."""
        for m in self.models_:
            try:
                return m.item_similarity(items) if columns is None else similarity_block(m, items, columns)
            except NotImplementedError:
                continue
        raise NotImplementedError(f"{self.name}: no candidate model has an item-item similarity")

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature, normalised to sum 1 (names from ``feature_names``)."""
        gain = self.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.feature_names(), (gain / max(gain.sum(), 1e-12)).tolist()))

    def feature_names(self) -> list[str]:
        per_model = [f"{n}:{f}" for n in self.names_ for f in ("score_to_best", "score_z", "rank")]
        return per_model + FEATURES

    def set_item_content(self, matrix) -> "Ranker":
        super().set_item_content(matrix)
        self.unit_content_ = _unit_rows(self.content_)
        return self

    # ------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = {"popularity": self.popularity_}
        content = getattr(self, "content_", None)
        if content is not None:
            state.update({"content.data": content.data, "content.indices": content.indices,
                          "content.indptr": content.indptr, "content.shape": np.array(content.shape, np.int64)})
        return state

    def _set_state(self, arrays) -> None:
        n_items = self.train_.n_items
        self.popularity_ = arrays.array("popularity", "f", ndim=2, shape=(n_items, None))
        if "content.shape" in arrays:
            n_rows, n_cols = (int(v) for v in arrays.array("content.shape", "i", shape=(2,)))
            if n_rows != n_items:
                raise arrays.fail(f"content.shape has {n_rows} rows, interactions.npz {n_items} items")
            self.set_item_content(arrays.csr("content.data", "content.indices", "content.indptr", (n_rows, n_cols)))

    def save(self, path: str) -> None:
        self._check_fitted()
        for name, model in zip(self.names_, self.models_):
            model.save(fsio.join(path, "candidates", name))
        text = self.booster_.model_to_string()
        fsio.atomic_write(fsio.join(path, "ranker.txt"), lambda fh: fh.write(text), mode="w")
        fsio.atomic_write_json(fsio.join(path, "ranker.json"), {"task": self.task_, "candidates": self.names_})
        super().save(path)

    @classmethod
    def load_from(cls, path: str, params: dict) -> "Ranker":
        import lightgbm as lgb

        from musicrec.models.registry import load_model

        model = super().load_from(path, params)
        meta = fsio.read_json(fsio.join(path, "ranker.json"))
        model.task_, model.names_ = meta["task"], list(meta["candidates"])
        model.models_ = [load_model(fsio.join(path, "candidates", n)) for n in model.names_]
        with fsio.open_file(fsio.join(path, "ranker.txt"), "r", encoding="utf-8") as fh:
            model.booster_ = lgb.Booster(model_str=fh.read())
        return model


#: features after the per-candidate-model (score / best score, z-score among the candidates, rank) triples
FEATURES = ["log_count_in_history", "positions_since_last_play", "is_last_played",
            "log_item_plays", "log_item_listeners", "item_self_follow_rate", "log_item_followed",
            "log_history_length", "log_history_distinct",
            "history_repeat_share", "tag_overlap_with_history"]


def _train_booster(x, y, group, p: Ranker):
    import lightgbm as lgb

    data = lgb.Dataset(x, label=y, group=group, free_raw_data=True)
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10, 20], "learning_rate": p.learning_rate,
              "num_leaves": p.num_leaves, "min_data_in_leaf": p.min_child_samples, "seed": p.seed,
              "deterministic": True, "num_threads": 2, "verbose": -1, "lambdarank_truncation_level": 30}
    return lgb.train(params, data, num_boost_round=p.n_trees)


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit length (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m, dtype=np.float32)


def _counts_in_row(indices: np.ndarray, data: np.ndarray, items: np.ndarray) -> np.ndarray:
    """How often each of ``items`` (C,) was played, from a CSR row's sorted ``indices`` and their
    ``data``: (C,) float32, 0 for items not in the row."""
    counts = np.zeros(len(items), dtype=np.float32)
    if len(indices):
        pos = np.minimum(np.searchsorted(indices, items), len(indices) - 1)
        hit = indices[pos] == items
        counts[hit] = data[pos[hit]]
    return counts


def _rows(h: Histories, lo: int, hi: int) -> Histories:
    return Histories(h.matrix[lo:hi], h.sequences[lo:hi], h.users[lo:hi])


def _carve_sessions(train: Interactions, holdout: float, max_queries: int, seed: int):
    """(the rest, prefix queries, next-item answers) with the latest ``holdout`` of sessions carved off."""
    order = np.argsort(train.session_time, kind="stable")
    n_carved = int(round(holdout * train.n_sessions))
    carved = np.zeros(train.n_sessions, dtype=bool)
    carved[order[train.n_sessions - n_carved:]] = True
    lengths = np.diff(train.session_indptr)
    sess = np.repeat(np.arange(train.n_sessions), lengths)
    keep = ~carved[sess]
    rest = _frame(train, train.session_user[sess[keep]], train.session_items[keep], sess[keep],
                  train.session_time[sess[keep]])
    starts, ts = [], []
    for s in np.flatnonzero(carved & (lengths >= 2)):
        starts.append(np.full(lengths[s] - 1, train.session_indptr[s])), ts.append(np.arange(1, lengths[s]))
    if not starts:
        return rest, Histories.from_sequences([], train.n_items), []
    start, t = np.concatenate(starts), np.concatenate(ts)
    if len(t) > max_queries:
        pick = np.sort(np.random.default_rng(seed).choice(len(t), max_queries, replace=False))
        start, t = start[pick], t[pick]
    seqs = [train.session_items[a:a + n] for a, n in zip(start, t)]
    answers = [train.session_items[a + n:a + n + 1] for a, n in zip(start, t)]
    return rest, Histories.from_sequences(seqs, train.n_items, users=np.full(len(seqs), -1, np.int64)), answers


def _carve_users(train: Interactions, holdout: float, max_queries: int, seed: int, fold: int = 0):
    """(the rest, the listeners' remaining histories, their carved items): fold ``f`` carves the
    ``holdout`` share of each listener's items after the ``f`` shares before it, in hashed order."""
    m = train.matrix.tocoo()
    key = np.random.default_rng(seed).random(m.nnz)
    n_items = np.diff(train.matrix.indptr)
    # per listener with five or more items, the ``holdout`` share with the smallest keys
    order = np.lexsort((key, m.row))
    rank = np.arange(m.nnz) - np.repeat(train.matrix.indptr[:-1], n_items)
    rank_of = np.empty(m.nnz, dtype=np.int64)
    rank_of[order] = rank
    take = np.maximum(1, np.floor(holdout * n_items)).astype(np.int64)
    carved = (n_items[m.row] >= 5) & (rank_of >= fold * take[m.row]) & (rank_of < (fold + 1) * take[m.row])
    rest = _frame(train, m.row[~carved], m.col[~carved], None, None, weight=m.data[~carved])
    users = np.unique(m.row[carved])
    if len(users) > max_queries:
        users = np.sort(np.random.default_rng(seed).choice(users, max_queries, replace=False))
    idx = rest.users.index(train.users.ids[users])
    rows, cols = m.row[carved], m.col[carved]
    by_user = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[by_user], users), np.searchsorted(rows[by_user], users, side="right")
    answers = [cols[by_user[a:b]] for a, b in zip(*bounds)]
    return rest, rest.histories(idx), answers


def _frame(train: Interactions, user: np.ndarray, item: np.ndarray, session, time, weight=None) -> Interactions:
    """Interactions over ``train``'s catalogue from (user index, item index) events in order."""
    n = len(user)
    ts = None if time is None else (np.asarray(time) * 1e6).astype(np.int64) + np.arange(n)
    df = pl.DataFrame({
        "user_id": train.users.ids[user], "item_id": train.items.ids[item],
        "weight": np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64),
        "timestamp": pl.Series(ts, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")) if ts is not None
        else pl.Series([None] * n, dtype=pl.Datetime("us", "UTC")),
        "session_id": pl.Series(session, dtype=pl.Int64) if session is not None else pl.Series([None] * n, dtype=pl.Int64),
    })
    return Interactions.from_frame(df, items=train.items)
