"""Full-ranking evaluation protocols: every model scores the whole training catalogue.

Two protocols, chosen by ``Split.evaluation``:

* **user**: each test user's training history is scored; items the user played in
  training are excluded from the ranking (and, to stay consistent, from the relevant
  set), and the relevant set is the user's test items that exist in the training
  catalogue.
* **session**: each test session is replayed one step at a time. The prefix
  ``items[:t]`` (as a new listener, ``users=-1``, so no long-term profile leaks in)
  must rank ``items[t]``. Items already in the session are *not* excluded: listeners
  replay songs, and predicting a repeat is a valid answer.

The cold-start splits (``preprocess.coldstart``) are user-protocol splits whose meta changes two
things: ``meta["candidates"] == "cold"`` ranks only the evaluated part's cold items (every other
column is set to ``-inf``; the model must have them in its catalogue, see ``train.fit``), and
``meta["history"] == "seeds"`` takes each held-out user's history from their seed items
(``users=-1``: new listeners), not from train; the seeds are excluded like training items.

No sampled negatives anywhere: a metric computed against 100 random items says little
about a ranking over 10^4-10^5 items (Krichene & Rendle, KDD 2020).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from musicrec import MusicrecError
from musicrec.evaluate import beyond
from musicrec.evaluate.metrics import METRIC_NAMES, ranking_metrics
from musicrec.features.interactions import Histories, Interactions
from musicrec.models.base import topk
from musicrec.preprocess.splitset import Split

#: accuracy metrics reported by the session protocol (one target: recall == hitrate, map == mrr)
SESSION_METRICS = ("hitrate", "mrr", "ndcg", "precision", "recall")
#: per-list beyond-accuracy metrics (coverage is over all lists, so it has no per-row value)
BEYOND_METRICS = ("coverage", "novelty", "arp", "diversity")


@dataclass
class EvalResult:
    """Outcome of one model on one split.

    Attributes
    ----------
    model : str
        Label of the model (its registry name unless ``evaluate(name=...)`` was given).
    metrics : dict
        Mean over evaluated users (or session prefixes): ``"ndcg@10"`` -> float, plus
        ``"coverage@10"``, ``"novelty@10"``, ``"arp@10"`` and, when items have tags,
        ``"diversity@10"``.
    per_user : polars.DataFrame
        One row per evaluated user (user protocol; id column ``user_id``) or per prefix
        (session protocol; id columns ``session_id``, ``position``), with every per-row metric.
    info : dict
        ``protocol``, counts of evaluated and skipped users/items/sessions, ``ks``,
        ``id_columns``, timings ``eval_s`` (and ``fit_s`` when given), in seconds.
    """

    model: str
    metrics: dict[str, float]
    per_user: pl.DataFrame
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """``{"metrics": {...}, "model": ..., "info": {...}}`` with plain Python values."""
        return {"metrics": {k: float(v) for k, v in self.metrics.items()}, "model": self.model,
                "info": _plain(self.info)}


def evaluate(model, split: Split, ks=(10, 20), train: Interactions | None = None, on: str = "test",
             batch_size: int = 512, progress: bool = False, item_features=None, *,
             name: str | None = None, fit_s: float | None = None, exclude_seen: bool = True) -> EvalResult:
    """Evaluate a fitted ``Recommender`` on ``split`` with the protocol named by ``split.evaluation``.

    Parameters
    ----------
    model : Recommender
        Fitted; ``model.score(Histories)`` must return (B, I) scores over ``train``'s items.
    split : Split
    ks : iterable of int
        Cut-offs; every metric is reported at each.
    train : Interactions, optional
        The training interactions the model was fitted on (default ``model.train_``); it fixes
        the user/item vocabularies, the histories and item popularity.
    on : {"test", "valid"}
        Which held-out frame to score.
    batch_size : int
        Users or prefixes scored per ``model.score`` call (memory ~ batch_size x I x 4 bytes).
    progress : bool
        Show a Rich progress bar over batches.
    item_features : array or sparse matrix, shape (I, D), optional
        Item vectors for intra-list diversity instead of the split's item tags.
    name : str, optional
        Label in reports (default: the model's registry name).
    fit_s : float, optional
        Training time in seconds, copied into ``info``.
    exclude_seen : bool
        User protocol only: remove each user's training items from the ranking and from the
        relevant set (the task is discovery). With False both keep them (repeat listening).

    Notes
    -----
    Items a model scores ``-inf`` count as not recommendable: they never fill a top-k slot
    (the list is padded instead). Ties break towards the lower item index (``topk``).
    NaN scores raise ``MusicrecError``.
    """
    if not hasattr(model, "train_"):
        raise MusicrecError(f"{getattr(model, 'name', '') or type(model).__name__}: call fit() before evaluate()")
    train = model.train_ if train is None else train
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise MusicrecError(f"ks must be positive integers, got {ks}")
    if batch_size < 1:
        raise MusicrecError(f"batch_size must be >= 1, got {batch_size}")
    if on not in ("test", "valid"):
        raise MusicrecError(f"on must be 'test' or 'valid', got {on!r}")
    frame = split.test if on == "test" else split.valid
    if frame is None:
        raise MusicrecError("the split has no validation frame; use on='test' or re-split with a validation part")
    label = name or getattr(model, "name", "") or type(model).__name__

    if item_features is not None:
        if item_features.shape[0] != train.n_items:
            raise MusicrecError(f"item_features has {item_features.shape[0]} rows, the catalogue {train.n_items} items")
        vectors, diversity_source = beyond.unit_rows(item_features), "item_features"
    else:
        vectors = beyond.tag_matrix(split.item_tags, train.items)
        diversity_source = "item_tags" if vectors is not None else None

    candidates = _cold_candidates(split, train, on, label)
    start = time.perf_counter()
    if split.evaluation == "user" and split.meta.get("history") == "seeds":
        from musicrec.preprocess.coldstart import seed_frame

        batches, n_batches, ids, info = _seed_batches(frame, train, seed_frame(split), batch_size, exclude_seen)
        names = METRIC_NAMES
    elif split.evaluation == "user":
        batches, n_batches, ids, info = _user_batches(frame, train, batch_size, exclude_seen)
        names = METRIC_NAMES
    elif split.evaluation == "session":
        batches, n_batches, ids, info = _session_batches(frame, train, batch_size)
        names, exclude_seen = SESSION_METRICS, False
    else:
        raise MusicrecError(f"unknown evaluation protocol {split.evaluation!r} in split meta; expected user or session")

    scorer = _Scorer(model, label, train, ks, names, vectors, exclude_seen, candidates)
    if progress:
        from rich.progress import track

        batches = track(batches, total=n_batches, description=f"evaluating {label}", transient=True)
    for histories, relevant in batches:
        scorer.add(histories, relevant)

    per_user = pl.DataFrame({**ids, **scorer.columns()})
    metrics = scorer.means()
    params = model.get_params() if hasattr(model, "get_params") else {}
    info.update(protocol=split.evaluation, on=on, ks=ks, model=label, params=_plain(params),
                n_items=train.n_items, n_train_users=train.n_users, diversity=diversity_source,
                eval_s=round(time.perf_counter() - start, 3))
    if candidates is not None:
        info["n_candidates"] = int(candidates.sum())
    if split.meta.get("protocol") in ("item-coldstart", "user-coldstart"):
        info["split_protocol"] = split.meta["protocol"]
    if fit_s is not None:
        info["fit_s"] = round(float(fit_s), 3)
    return EvalResult(model=label, metrics=metrics, per_user=per_user, info=info)


# ---------------------------------------------------------------- scoring
class _Scorer:
    """Scores batches of histories, ranks the catalogue and accumulates per-row metrics."""

    def __init__(self, model, label, train, ks, names, vectors, exclude_seen, candidates=None):
        self.model, self.label, self.ks, self.names = model, label, ks, names
        self.vectors, self.exclude_seen = vectors, exclude_seen
        self.candidates = candidates  # bool (I,) of rankable items, or None for the whole catalogue
        self.n_items, self.n_users = train.n_items, train.n_users
        self.pop = beyond.item_popularity(train.matrix)
        self.shown = {k: np.zeros(self.n_items, dtype=bool) for k in ks}
        self.parts: dict[str, list] = {}

    def add(self, histories: Histories, relevant) -> None:
        scores = np.array(self.model.score(histories), copy=True)
        if scores.shape != (len(histories), self.n_items):
            raise MusicrecError(f"{self.label}: score() returned shape {scores.shape}, "
                                f"expected {(len(histories), self.n_items)}")
        if not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float32)
        if np.isnan(scores).any():
            raise MusicrecError(f"{self.label}: score() returned NaN scores")
        if self.exclude_seen:
            m = histories.matrix.tocsr()
            scores[np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices] = -np.inf
        if self.candidates is not None:
            scores[:, ~self.candidates] = -np.inf
        ranked, vals = topk(scores, self.ks[-1])
        ranked[np.isneginf(vals)] = -1  # excluded items fill the tail only when the catalogue runs out

        values = ranking_metrics(ranked, relevant, self.ks, names=self.names)
        for k in self.ks:
            self.shown[k] |= beyond.recommended_mask(ranked, self.n_items, k)
            values[f"novelty@{k}"] = beyond.novelty_at_k(ranked, self.pop, self.n_users, k)
            values[f"arp@{k}"] = beyond.arp_at_k(ranked, self.pop, self.n_users, k)
            if self.vectors is not None:
                values[f"diversity@{k}"] = beyond.diversity_at_k(ranked, self.vectors, k)
        for key, v in values.items():
            self.parts.setdefault(key, []).append(v)

    def _keys(self) -> list[str]:
        """Metric keys ordered by name, then k (``precision@10, precision@20, recall@10, ...``)."""
        order = [f"{n}@{k}" for n in (*self.names, *BEYOND_METRICS) for k in self.ks]
        return [key for key in order if key in self.parts]

    def columns(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(self.parts[key]) for key in self._keys()}

    def means(self) -> dict[str, float]:
        cols = self.columns()
        out = {}
        for key in [f"{n}@{k}" for n in (*self.names, *BEYOND_METRICS) for k in self.ks]:
            if key.startswith("coverage@"):
                out[key] = float(self.shown[int(key.split("@")[1])].mean())
            elif key in cols and np.isfinite(cols[key]).any():
                # diversity is NaN for lists with < 2 tagged items; average over the others
                out[key] = float(np.nanmean(cols[key]))
        return out


# ---------------------------------------------------------------- user protocol
def _user_batches(frame: pl.DataFrame, train: Interactions, batch_size: int, exclude_seen: bool):
    """Relevant sets per test user, and a generator of (training histories, relevant) batches."""
    u = train.users.index(frame["user_id"].to_numpy())
    i = train.items.index(frame["item_id"].to_numpy())
    n_test_users = int(frame["user_id"].n_unique())
    known = u >= 0
    pairs = np.unique(np.stack([u[known], i[known]], axis=1), axis=0).reshape(-1, 2)
    n_unknown_item = int((pairs[:, 1] < 0).sum())
    pairs = pairs[pairs[:, 1] >= 0]
    n_seen = 0
    if exclude_seen and len(pairs):
        seen = np.asarray(train.matrix[pairs[:, 0], pairs[:, 1]]).ravel() > 0
        n_seen = int(seen.sum())
        pairs = pairs[~seen]
    users, starts = np.unique(pairs[:, 0], return_index=True)  # pairs are sorted by user
    relevant = np.split(pairs[:, 1], starts[1:]) if len(users) else []
    n_known_users = int(np.unique(u[known]).size)
    info = dict(n_test_users=n_test_users, n_users=int(len(users)),
                n_users_unknown=n_test_users - n_known_users,
                n_users_no_relevant=n_known_users - int(len(users)),
                n_pairs_unknown_item=n_unknown_item, n_pairs_seen_dropped=n_seen,
                n_relevant=int(len(pairs)), exclude_seen=exclude_seen, id_columns=["user_id"])
    if not len(users):
        raise MusicrecError("nothing to evaluate: no test user has a test item from the training catalogue "
                            f"({n_test_users} test users, {info['n_users_unknown']} unknown to training)")
    ids = {"user_id": train.users.ids[users],
           "n_relevant": np.array([len(r) for r in relevant], dtype=np.int64)}

    def batches():
        for lo in range(0, len(users), batch_size):
            yield train.histories(users[lo:lo + batch_size]), relevant[lo:lo + batch_size]

    return batches(), -(-len(users) // batch_size), ids, info


def _cold_candidates(split: Split, train: Interactions, on: str, label: str) -> np.ndarray | None:
    """bool (I,): the ``on`` part's cold items of an item-coldstart split; None for other splits."""
    if split.meta.get("candidates") != "cold":
        return None
    cold = np.asarray(split.meta.get("cold_items", {}).get(on, []), dtype=np.int64)
    idx = train.items.index(cold)
    if not (idx >= 0).any():
        raise MusicrecError(f"{label}: none of the {len(cold)} cold {on} items is in the model's catalogue; "
                            "train it on this split with `musicrec train` (it adds the cold items)")
    mask = np.zeros(train.n_items, dtype=bool)
    mask[idx[idx >= 0]] = True
    return mask


def _seed_batches(frame: pl.DataFrame, train: Interactions, seeds: pl.DataFrame, batch_size: int,
                  exclude_seen: bool):
    """User-coldstart: each test user's seeds (as a new listener) and their test items."""
    n_test_users = int(frame["user_id"].n_unique())
    seeds = seeds.join(frame.select("user_id").unique(), on="user_id", how="semi", maintain_order="left")
    seeds = seeds.with_columns(pl.Series("i", train.items.index(seeds["item_id"].to_numpy()))).filter(pl.col("i") >= 0)
    test = frame.select("user_id", pl.Series("i", train.items.index(frame["item_id"].to_numpy()))).unique()
    n_unknown_item = int((test["i"] < 0).sum())
    test = test.filter(pl.col("i") >= 0)
    n_seen = 0
    if exclude_seen:
        kept = test.join(seeds.select("user_id", "i"), on=["user_id", "i"], how="anti")
        n_seen, test = test.height - kept.height, kept
    # users with at least one known seed and one relevant item, in id order
    hist = seeds.group_by("user_id").agg(pl.col("i"))
    rel = test.group_by("user_id").agg(pl.col("i").sort())
    both = hist.join(rel, on="user_id", how="inner", suffix="_rel").sort("user_id")
    n_with_seeds = hist.height
    info = dict(n_test_users=n_test_users, n_users=both.height, n_users_unknown=n_test_users - n_with_seeds,
                n_users_no_relevant=n_with_seeds - both.height, n_pairs_unknown_item=n_unknown_item,
                n_pairs_seen_dropped=n_seen, n_relevant=int(both["i_rel"].list.len().sum() or 0),
                exclude_seen=exclude_seen, history="seeds", id_columns=["user_id"])
    if both.height == 0:
        raise MusicrecError(f"nothing to evaluate: no test user has both a seed and a test item in the catalogue "
                            f"({n_test_users} test users)")
    seqs = [np.asarray(s, dtype=np.int64) for s in both["i"].to_list()]
    relevant = [np.asarray(r, dtype=np.int64) for r in both["i_rel"].to_list()]
    ids = {"user_id": both["user_id"].to_numpy(),
           "n_relevant": np.array([len(r) for r in relevant], dtype=np.int64)}

    def batches():
        for lo in range(0, len(seqs), batch_size):
            part = seqs[lo:lo + batch_size]
            yield (Histories.from_sequences(part, train.n_items, users=np.full(len(part), -1, dtype=np.int64)),
                   relevant[lo:lo + batch_size])

    return batches(), -(-len(seqs) // batch_size), ids, info


# ---------------------------------------------------------------- session protocol
def _session_batches(frame: pl.DataFrame, train: Interactions, batch_size: int):
    """Every prefix of every test session, as (prefix histories, target) batches."""
    df = frame.with_row_index("_row").with_columns(
        # like Interactions.from_frame: without a session id a user's events form one session
        pl.when(pl.col("session_id").is_not_null()).then(pl.col("session_id"))
          .otherwise(-1 - pl.col("user_id")).alias("_s"),
        pl.col("timestamp").dt.epoch("us").fill_null(0).alias("_t"),
        pl.Series("_i", train.items.index(frame["item_id"].to_numpy())),
    ).sort(["_s", "_t", "_row"])
    n_test_sessions = int(df["_s"].n_unique())
    n_unknown = int((df["_i"] < 0).sum())
    df = df.filter(pl.col("_i") >= 0)
    s, items, user_ids = df["_s"].to_numpy(), df["_i"].to_numpy().astype(np.int64), df["user_id"].to_numpy()
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1, [len(s)]]) if len(s) else np.zeros(1, np.int64)
    lengths = np.diff(bounds)
    keep = lengths >= 2  # a session needs a prefix and a target
    sess_start, sess_len = bounds[:-1][keep], lengths[keep]
    n_prefixes = int((sess_len - 1).sum())
    info = dict(n_test_sessions=n_test_sessions, n_sessions=int(keep.sum()),
                n_sessions_too_short=n_test_sessions - int(keep.sum()), n_events_unknown_item=n_unknown,
                n_prefixes=n_prefixes, id_columns=["session_id", "position"])
    if n_prefixes == 0:
        raise MusicrecError(f"nothing to evaluate: none of the {n_test_sessions} test sessions has two or more "
                            "items from the training catalogue")
    # prefix p of session j: history items[start_j : start_j + t], target items[start_j + t], t = 1..n_j-1
    start = np.repeat(sess_start, sess_len - 1)
    offsets = np.concatenate([[0], np.cumsum(sess_len - 1)[:-1]])
    t = np.arange(n_prefixes) - np.repeat(offsets, sess_len - 1) + 1
    target = items[start + t]
    ids = {"session_id": s[start], "position": t.astype(np.int64), "user_id": user_ids[start],
           "target": train.items.ids[target]}

    def batches():
        for lo in range(0, n_prefixes, batch_size):
            hi = min(lo + batch_size, n_prefixes)
            seqs = [items[a:a + n] for a, n in zip(start[lo:hi], t[lo:hi])]
            hist = Histories.from_sequences(seqs, train.n_items, users=np.full(hi - lo, -1, dtype=np.int64))
            yield hist, target[lo:hi, None]

    return batches(), -(-n_prefixes // batch_size), ids, info


def _plain(obj):
    """``obj`` as JSON-friendly Python values: numpy scalars/arrays converted, NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None  # NaN is not valid JSON
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return repr(obj)
