"""Full-ranking evaluation protocols: every model scores the whole training catalogue.

Two protocols, chosen by ``Split.evaluation``:

* **user** (the full-sort convention of RecBole, Elliot and Microsoft Recommenders; the default,
  ``relevant="all"``): each evaluated user's training history is scored and, per user,

  - the *relevant set* is every distinct item of theirs in the evaluated part (test, or valid
    when tuning), whether or not the training catalogue has it. An item outside the catalogue
    cannot be recommended, so it is never hit, but it stays in the denominators: recall =
    hits / |relevant|, NDCG's ideal DCG over min(k, |relevant|), MAP over min(k, |relevant|),
    precision over k (``info["n_relevant_unreachable"]`` counts such pairs). A user whose
    held-out items are all outside the catalogue is evaluated and scores 0.
  - the *ranking excludes* every item the user already has in a part the model is not
    evaluated on: their training items, and, when scoring test, their validation items (a model
    fitted on train only would otherwise recommend them; after a refit on train + valid they
    are in its history already, so this changes nothing). ``info["n_valid_pairs_excluded"]``
    counts the validation pairs this adds to the training history.
  - an excluded item that is also in the user's relevant set is dropped from it (the task is
    discovery; ``info["n_pairs_seen_dropped"]``). A user left with no relevant item is skipped
    (``n_users_no_relevant``), as is a test user the model has no training row for
    (``n_users_unknown``): the model has no history to score for them.

  ``relevant="reachable"`` is musicrec's convention before issue 11, kept to reproduce older
  numbers: the relevant set keeps only catalogue items (users with none are skipped), and the
  ranking excludes only the history the model was fitted on. It inflates recall and NDCG when
  held-out items are missing from training; never compare it with numbers of other libraries.
* **session** (session-rec, Ludewig et al. 2021): each test session is replayed one step at a
  time. The prefix ``items[:t]`` (as a new listener, ``users=-1``, so no long-term profile leaks
  in) must rank ``items[t]``. Items already in the session are *not* excluded: listeners replay
  songs, and predicting a repeat is a valid answer. As in session-rec, test events whose item
  is not in the training catalogue are removed before the prefixes are formed, so they are
  neither history nor target; ``info["n_targets_unreachable"]`` counts those that would have
  been targets (not the first event of their session). ``relevant`` does not apply
  (``info["relevant"]`` is ``"reachable"``).

The cold-start splits (``preprocess.coldstart``) are user-protocol splits whose meta changes two
things: ``meta["candidates"] == "cold"`` ranks only the evaluated part's cold items (every other
column is set to ``-inf``; the model must have them in its catalogue, see ``train.fit``), and
``meta["history"] == "seeds"`` takes each held-out user's history from their seed items
(``users=-1``: new listeners), not from train; the seeds are excluded like training items, and
a user without a seed in the catalogue is skipped as unknown. Relevant sets follow ``relevant``
in both.

No sampled negatives anywhere: a metric computed against 100 random items says little
about a ranking over 10^4-10^5 items (Krichene & Rendle, KDD 2020).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

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
#: user-protocol conventions for the relevant set (see the module docstring)
RELEVANT = ("all", "reachable")


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
        ``protocol``, ``relevant``, counts of evaluated and skipped users/items/sessions
        (user protocol: ``n_relevant_unreachable``, ``n_valid_pairs_excluded``, ...; session:
        ``n_targets_unreachable``, ...), ``ks``, ``id_columns``, timings ``eval_s`` (and
        ``fit_s`` when given), in seconds.
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
             name: str | None = None, fit_s: float | None = None, exclude_seen: bool = True,
             relevant: str = "all") -> EvalResult:
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
        User protocol only: remove from each user's ranking the items they have in the parts
        not evaluated (train; with ``relevant="all"`` also valid when ``on="test"``), and from
        their relevant set (the task is discovery). With False nothing is removed (repeat
        listening).
    relevant : {"all", "reachable"}
        User protocol only (see the module docstring). ``"all"`` (default; RecBole, Elliot and
        Microsoft Recommenders full-sort): every held-out item of the user is relevant, in the
        training catalogue or not (never hit, but counted in |relevant|; a user whose items are
        all outside it scores 0), and with ``on="test"`` the user's validation items are also
        excluded from the ranking. ``"reachable"``: musicrec before issue 11 (catalogue items
        only, users without one skipped, only the training history excluded); it overstates
        recall and NDCG. Sessions always score reachable targets (session-rec's convention).
        Either way, test users without training rows (or without a seed in the catalogue) have
        no history to score: skipped, counted in ``info["n_users_unknown"]``.

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
    if relevant not in RELEVANT:
        raise MusicrecError(f"relevant must be 'all' or 'reachable', got {relevant!r}")
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
    reachable = relevant == "reachable"
    # the standard convention also keeps the validation items out of a test ranking
    other = split.valid if on == "test" and exclude_seen and not reachable else None
    start = time.perf_counter()
    if split.evaluation == "user" and split.meta.get("history") == "seeds":
        from musicrec.preprocess.coldstart import seed_frame

        batches, n_batches, ids, info = _seed_batches(frame, train, seed_frame(split), batch_size, exclude_seen,
                                                      reachable, other)
        names = METRIC_NAMES
    elif split.evaluation == "user":
        batches, n_batches, ids, info = _user_batches(frame, train, batch_size, exclude_seen, reachable, other)
        names = METRIC_NAMES
    elif split.evaluation == "session":
        batches, n_batches, ids, info = _session_batches(frame, train, batch_size)
        names, exclude_seen, relevant = SESSION_METRICS, False, "reachable"
    else:
        raise MusicrecError(f"unknown evaluation protocol {split.evaluation!r} in split meta; expected user or session")

    scorer = _Scorer(model, label, train, ks, names, vectors, exclude_seen, candidates)
    if progress:
        from rich.progress import track

        batches = track(batches, total=n_batches, description=f"evaluating {label}", transient=True)
    for batch in batches:
        scorer.add(*batch)

    per_user = pl.DataFrame({**ids, **scorer.columns()})
    metrics = scorer.means()
    params = model.get_params() if hasattr(model, "get_params") else {}
    info.update(protocol=split.evaluation, relevant=relevant, on=on, ks=ks, model=label, params=_plain(params),
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

    def add(self, histories: Histories, relevant, excluded=None) -> None:
        """Score ``histories``, rank and accumulate metrics against ``relevant`` (one array of
        item indices per row); ``excluded``, csr (B, I), marks further items to leave out of
        each ranking besides the history (a user's validation items)."""
        scores = np.array(self.model.score(histories), copy=True)
        if scores.shape != (len(histories), self.n_items):
            raise MusicrecError(f"{self.label}: score() returned shape {scores.shape}, "
                                f"expected {(len(histories), self.n_items)}")
        if not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float32)
        if np.isnan(scores).any():
            raise MusicrecError(f"{self.label}: score() returned NaN scores")
        if self.exclude_seen:
            for m in (histories.matrix, excluded):
                if m is not None:
                    m = m.tocsr()
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
def _held_out_pairs(frame: pl.DataFrame, train: Interactions, other: pl.DataFrame | None) -> pl.DataFrame:
    """Distinct (user_id, item_id) of ``frame`` with ``i`` (catalogue index, -1 outside it) and
    ``in_other`` (the user also has the item in ``other``, the part not evaluated besides train)."""
    pairs = frame.select("user_id", "item_id").unique()
    if other is None:
        pairs = pairs.with_columns(pl.lit(False).alias("in_other"))
    else:
        flag = other.select("user_id", "item_id").unique().with_columns(pl.lit(True).alias("in_other"))
        pairs = pairs.join(flag, on=["user_id", "item_id"], how="left").with_columns(pl.col("in_other").fill_null(False))
    return pairs.with_columns(pl.Series("i", train.items.index(pairs["item_id"].to_numpy()), dtype=pl.Int64))


def _relevant_sets(user: np.ndarray, i: np.ndarray, excluded: np.ndarray, n_items: int, reachable: bool):
    """Group held-out pairs (P,) into one relevant array per user: ``user`` keys (training index
    or user id), ``i`` catalogue indices (-1 outside it), ``excluded`` (already had: not relevant).

    Returns (sorted keys of users with a relevant item, their relevant arrays, info counts). With
    ``reachable`` only catalogue items are kept; otherwise an item outside the catalogue gets an
    index ``>= n_items`` of its own (n_items, n_items + 1, ... per user), so ``ranking_metrics``
    counts it in |relevant| and no ranked list ever hits it.
    """
    unknown = i < 0
    keep = ~unknown if reachable else np.ones(len(i), dtype=bool)
    counts = {"n_pairs_unknown_item": int(unknown.sum()), "n_pairs_seen_dropped": int((keep & excluded).sum())}
    keep &= ~excluded
    user, i = user[keep], i[keep].copy()
    order = np.lexsort((i, user))  # by user, then index: a user's unknown items (-1) come first
    user, i = user[order], i[order]
    unk = np.flatnonzero(i < 0)
    if len(unk):
        _, first, group = np.unique(user[unk], return_index=True, return_inverse=True)
        i[unk] = n_items + np.arange(len(unk)) - first[group]
    users, starts = np.unique(user, return_index=True)
    relevant = np.split(i, starts[1:]) if len(users) else []
    counts.update(n_relevant=int(len(i)), n_relevant_unreachable=int(len(unk)))
    return users, relevant, counts


def _exclusions(user: np.ndarray, i: np.ndarray, users: np.ndarray, n_items: int) -> sp.csr_matrix:
    """csr (len(users), I): ones at (row of ``user`` in sorted ``users``, ``i``) for the pairs
    whose user is evaluated and whose item is in the catalogue (the others cannot be ranked)."""
    ok = (i >= 0) & np.isin(user, users)
    rows, cols = np.searchsorted(users, user[ok]), i[ok]
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), n_items))
    m.sum_duplicates()
    return m


def _user_batches(frame: pl.DataFrame, train: Interactions, batch_size: int, exclude_seen: bool,
                  reachable: bool, other: pl.DataFrame | None):
    """Relevant sets per test user, and a generator of (training histories, relevant, excluded) batches.

    ``other``: the part whose items are excluded from the ranking besides train (valid when
    scoring test under the standard convention), or None.
    """
    pairs = _held_out_pairs(frame, train, other)
    n_test_users = int(frame["user_id"].n_unique())
    u = train.users.index(pairs["user_id"].to_numpy())
    known = u >= 0
    u, i, excluded = u[known], pairs["i"].to_numpy()[known], pairs["in_other"].to_numpy()[known].copy()
    n_known_users = int(np.unique(u).size)
    inside = i >= 0
    if exclude_seen and inside.any():
        excluded[inside] |= np.asarray(train.matrix[u[inside], i[inside]]).ravel() > 0
    users, relevant, counts = _relevant_sets(u, i, excluded, train.n_items, reachable)
    extra = None
    if other is not None:
        ov = other.select("user_id", "item_id").unique()
        vu, vi = train.users.index(ov["user_id"].to_numpy()), train.items.index(ov["item_id"].to_numpy())
        ok = (vu >= 0) & (vi >= 0)
        vu, vi = vu[ok], vi[ok]
        fresh = np.asarray(train.matrix[vu, vi]).ravel() <= 0 if len(vu) else np.zeros(0, dtype=bool)
        extra = _exclusions(vu[fresh], vi[fresh], users, train.n_items)  # not already in the history
    info = dict(n_test_users=n_test_users, n_users=int(len(users)), n_users_unknown=n_test_users - n_known_users,
                n_users_no_relevant=n_known_users - int(len(users)), **counts,
                n_valid_pairs_excluded=0 if extra is None else int(extra.nnz),
                exclude_seen=exclude_seen, id_columns=["user_id"])
    if not len(users):
        what = "a test item from the training catalogue" if reachable else "a test item they have not heard"
        raise MusicrecError(f"nothing to evaluate: no test user known to the model has {what} "
                            f"({n_test_users} test users, {info['n_users_unknown']} unknown to training)")
    ids = {"user_id": train.users.ids[users], "n_relevant": np.array([len(r) for r in relevant], dtype=np.int64)}

    def batches():
        for lo in range(0, len(users), batch_size):
            hi = lo + batch_size
            yield train.histories(users[lo:hi]), relevant[lo:hi], None if extra is None else extra[lo:hi]

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
                  exclude_seen: bool, reachable: bool, other: pl.DataFrame | None):
    """User-coldstart: each test user's seeds (as a new listener) and their test items."""
    n_test_users = int(frame["user_id"].n_unique())
    seeds = seeds.join(frame.select("user_id").unique(), on="user_id", how="semi", maintain_order="left")
    seeds = seeds.with_columns(pl.Series("i", train.items.index(seeds["item_id"].to_numpy()))).filter(pl.col("i") >= 0)
    hist = seeds.group_by("user_id").agg(pl.col("i")).sort("user_id")  # users with a seed in the catalogue
    with_seeds = hist["user_id"].to_numpy()
    pairs = _held_out_pairs(frame, train, other).filter(pl.col("user_id").is_in(with_seeds))
    excluded = pairs["in_other"].to_numpy().copy()
    if exclude_seen:
        seed_pairs = seeds.select("user_id", "item_id").unique().with_columns(pl.lit(True).alias("_seed"))
        excluded |= pairs.join(seed_pairs, on=["user_id", "item_id"], how="left",
                               maintain_order="left")["_seed"].fill_null(False).to_numpy()
    users, relevant, counts = _relevant_sets(pairs["user_id"].to_numpy(), pairs["i"].to_numpy(), excluded,
                                             train.n_items, reachable)
    extra = None
    if other is not None:
        ov = other.select("user_id", "item_id").unique().join(seeds.select("user_id", "item_id"),
                                                              on=["user_id", "item_id"], how="anti")
        extra = _exclusions(ov["user_id"].to_numpy(), train.items.index(ov["item_id"].to_numpy()), users,
                            train.n_items)
    seqs = [np.asarray(s, dtype=np.int64) for s in hist.filter(pl.col("user_id").is_in(users))["i"].to_list()]
    info = dict(n_test_users=n_test_users, n_users=int(len(users)), n_users_unknown=n_test_users - len(with_seeds),
                n_users_no_relevant=len(with_seeds) - int(len(users)), **counts,
                n_valid_pairs_excluded=0 if extra is None else int(extra.nnz),
                exclude_seen=exclude_seen, history="seeds", id_columns=["user_id"])
    if not len(users):
        what = "a test item from the catalogue" if reachable else "a test item that is not a seed"
        raise MusicrecError(f"nothing to evaluate: no test user has both a seed in the catalogue and {what} "
                            f"({n_test_users} test users)")
    ids = {"user_id": users, "n_relevant": np.array([len(r) for r in relevant], dtype=np.int64)}

    def batches():
        for lo in range(0, len(seqs), batch_size):
            hi = lo + batch_size
            part = seqs[lo:hi]
            yield (Histories.from_sequences(part, train.n_items, users=np.full(len(part), -1, dtype=np.int64)),
                   relevant[lo:hi], None if extra is None else extra[lo:hi])

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
    # an unknown event that is not the first of its session would have been a target
    n_unreachable = int(df.select(((pl.col("_i") < 0) & (pl.int_range(pl.len()).over("_s") > 0)).sum()).item())
    df = df.filter(pl.col("_i") >= 0)
    s, items, user_ids = df["_s"].to_numpy(), df["_i"].to_numpy().astype(np.int64), df["user_id"].to_numpy()
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1, [len(s)]]) if len(s) else np.zeros(1, np.int64)
    lengths = np.diff(bounds)
    keep = lengths >= 2  # a session needs a prefix and a target
    sess_start, sess_len = bounds[:-1][keep], lengths[keep]
    n_prefixes = int((sess_len - 1).sum())
    info = dict(n_test_sessions=n_test_sessions, n_sessions=int(keep.sum()),
                n_sessions_too_short=n_test_sessions - int(keep.sum()), n_events_unknown_item=n_unknown,
                n_targets_unreachable=n_unreachable,
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
