"""Cold-start split protocols: items or users held out of training entirely.

* ``item-coldstart``: a seeded share of items has no event in train. Test users (who have
  training history) must find their held-out items among the cold items only, so
  ``meta["candidates"] = "cold"`` and ``meta["cold_items"]`` lists them: an evaluator ranks
  the test (or valid) cold items, scored from content, never the warm catalogue.
* ``user-coldstart``: a seeded share of users has no event in train. Each gives
  ``n_seeds`` of their artists ("I like these"), stored in ``meta["seeds"]``; the rest of
  their items are the test targets. An evaluator builds each user's history from the seeds
  (:func:`seed_frame`), not from train, and ranks the warm catalogue.

Both use ``evaluation="user"``. Selection is by a SplitMix64 hash of ``(seed, id)`` as in
:func:`musicrec.preprocess.split.user_holdout`, so results do not depend on row order.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from musicrec import MusicrecError
from musicrec.preprocess import splitters
from musicrec.preprocess.splitset import Split


def _shuffled(ids: pl.Series, seed: int, salt: int) -> np.ndarray:
    """Distinct ``ids`` in a seeded hash order; ``salt`` keeps the item and user draws of
    one seed unrelated."""
    ids = np.unique(ids.drop_nulls().to_numpy()).astype(np.int64)
    keys = splitters._hash_keys(np.full(len(ids), salt, dtype=np.int64), ids, seed)
    return ids[np.argsort(keys, kind="stable")]


def _share(n: int, frac: float) -> int:
    return int(np.floor(n * frac + 0.5))


def _check(test_frac: float, valid_frac: float) -> None:
    splitters._check_fracs(test_frac, valid_frac)


def _with_history(part: pl.DataFrame, train: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    kept = part.join(train.select("user_id").unique(), on="user_id", how="semi", maintain_order="left")
    return kept, part.height - kept.height


# ----------------------------------------------------------------------------- item cold start
def item_coldstart(events, test_frac: float = 0.1, valid_frac: float = 0.05, seed: int = 0) -> Split:
    """Hold out a seeded share of items entirely: all their events leave train.

    Parameters
    ----------
    events : DataFrame in ``schema.SPLIT_EVENTS``
    test_frac : float
        Share of distinct items whose events form the test part (rounded half up).
    valid_frac : float
        Share of *other* items held out the same way for validation (0 = none), so tuning
        never sees the test items.
    seed : int

    Returns
    -------
    Split with ``evaluation="user"``. Test/valid rows of users without any training event
    are removed (``meta["removed_no_history"]``). ``meta["candidates"] = "cold"`` and
    ``meta["cold_items"] = {"test": [...], "valid": [...]}`` (sorted item ids): rank only
    the cold items of the evaluated part; they are absent from train by construction.
    """
    _check(test_frac, valid_frac)
    ev = splitters._events(events)
    items = ev["item_id"]
    order = _shuffled(items, seed, salt=1)
    n_test, n_valid = _share(len(order), test_frac), _share(len(order), valid_frac)
    test_items = np.sort(order[:n_test])
    valid_items = np.sort(order[n_test:n_test + n_valid])
    cold = np.concatenate([test_items, valid_items])
    train = ev.filter(~pl.col("item_id").is_in(cold))
    test, n_test_rm = _with_history(ev.filter(pl.col("item_id").is_in(test_items)), train)
    valid, n_valid_rm = None, 0
    if valid_frac > 0:
        valid, n_valid_rm = _with_history(ev.filter(pl.col("item_id").is_in(valid_items)), train)
    meta = dict(
        protocol="item-coldstart", evaluation="user", seed=seed, candidates="cold",
        params=dict(test_frac=test_frac, valid_frac=valid_frac),
        cold_items={"test": test_items.tolist(), "valid": valid_items.tolist()},
        n_items=int(items.n_unique()),
        removed_no_history={"test": n_test_rm, "valid": n_valid_rm},
        removed_unseen={"test": 0, "valid": 0},
    )
    return Split(train=train, test=test, valid=valid, meta=meta)


# ----------------------------------------------------------------------------- user cold start
def user_coldstart(events, test_frac: float = 0.1, valid_frac: float = 0.05, n_seeds: int = 3,
                   min_items: int = 6, seed: int = 0) -> Split:
    """Hold out a seeded share of users entirely; each gives ``n_seeds`` seed items.

    Parameters
    ----------
    events : DataFrame in ``schema.SPLIT_EVENTS``
    test_frac, valid_frac : float
        Shares of the eligible users held out for test and for validation.
    n_seeds : int
        Items each held-out user "gives" (1, 3 or 5 in the issue's protocol). They are the
        user's first ``n_seeds`` items in a seeded random order among items present in
        train, so the seeds of ``n_seeds=1`` are among those of 3, and those among 5.
    min_items : int
        Users with fewer distinct items are never held out. Keeping it fixed (default 6,
        enough for 5 seeds + 1 target) holds out the *same* users for every ``n_seeds``.
    seed : int

    Returns
    -------
    Split with ``evaluation="user"``: train has no event of a held-out user; test/valid hold
    the held-out users' other items (rows of items absent from train removed,
    ``meta["removed_unseen"]``). ``meta["seeds"] = {"user_id": [...], "item_id": [...]}``
    (parallel lists, test and valid users) -- turn it into a frame with :func:`seed_frame`.
    Users left with fewer than ``n_seeds`` known items or no target are dropped
    (``meta["dropped_users"]``).
    """
    _check(test_frac, valid_frac)
    if n_seeds < 1:
        raise MusicrecError(f"n_seeds must be >= 1, got {n_seeds}")
    if min_items < n_seeds + 1:
        raise MusicrecError(f"min_items ({min_items}) must be > n_seeds ({n_seeds}): each user needs a target")
    ev = splitters._events(events)
    counts = ev.group_by("user_id").agg(pl.col("item_id").n_unique().alias("_n"))
    order = _shuffled(counts.filter(pl.col("_n") >= min_items)["user_id"], seed, salt=2)
    n_test, n_valid = _share(len(order), test_frac), _share(len(order), valid_frac)
    test_users = np.sort(order[:n_test])
    valid_users = np.sort(order[n_test:n_test + n_valid])
    held = np.concatenate([test_users, valid_users])
    train = ev.filter(~pl.col("user_id").is_in(held))
    known = train.select("item_id").unique()

    pairs = (ev.filter(pl.col("user_id").is_in(held)).select("user_id", "item_id").unique()
             .join(known, on="item_id", how="semi").sort("user_id", "item_id"))
    pairs = pairs.with_columns(
        pl.Series("_key", splitters._hash_keys(pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy(), seed)))
    pairs = pairs.with_columns(
        (pl.col("_key").rank("ordinal").over("user_id") <= n_seeds).alias("_seed"),
        pl.len().over("user_id").alias("_n"))
    ok = pairs.filter(pl.col("_n") > n_seeds)
    seeds = ok.filter(pl.col("_seed")).select("user_id", "item_id").sort("user_id", "item_id")
    kept_users = seeds.select("user_id").unique()

    def targets(users: np.ndarray) -> tuple[pl.DataFrame, int]:
        part = ev.filter(pl.col("user_id").is_in(users)).join(kept_users, on="user_id", how="semi", maintain_order="left")
        part = part.join(seeds, on=["user_id", "item_id"], how="anti", maintain_order="left")
        return splitters.drop_unseen(train, part)

    test, n_unseen_test = targets(test_users)
    valid, n_unseen_valid = targets(valid_users) if valid_frac > 0 else (None, 0)
    meta = dict(
        protocol="user-coldstart", evaluation="user", seed=seed, history="seeds",
        params=dict(test_frac=test_frac, valid_frac=valid_frac, n_seeds=n_seeds, min_items=min_items),
        seeds={"user_id": seeds["user_id"].to_list(), "item_id": seeds["item_id"].to_list()},
        cold_users={"test": test_users.tolist(), "valid": valid_users.tolist()},
        dropped_users=int(len(held) - kept_users.height),
        removed_unseen={"test": n_unseen_test, "valid": n_unseen_valid},
    )
    return Split(train=train, test=test, valid=valid, meta=meta)


def seed_frame(split: Split) -> pl.DataFrame:
    """The seed items of a user-coldstart split as events (``user_id``, ``item_id``, ``weight`` 1.0)."""
    seeds = split.meta.get("seeds")
    if seeds is None:
        raise MusicrecError(f"split protocol {split.meta.get('protocol')!r} has no seeds; make a user-coldstart split")
    return pl.DataFrame({"user_id": seeds["user_id"], "item_id": seeds["item_id"]},
                        schema={"user_id": pl.Int64, "item_id": pl.Int64}).with_columns(pl.lit(1.0).alias("weight"))
