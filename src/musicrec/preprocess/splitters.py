"""The split protocols themselves: canonical events -> train / valid / test (a :class:`Split`).

``split.py`` registers them (with the cold-start protocols) and runs them on a store. Every
protocol is deterministic; the only randomness (user-holdout) comes from a hash of
``(seed, user, item)``, so the result does not depend on row order or on how users are
partitioned.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl

from musicrec import MusicrecError, schema
from musicrec.preprocess.splitset import Split

DAY_US = 86_400 * 1_000_000


# ----------------------------------------------------------------------------- helpers
def _events(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    return schema.conform(events, schema.SPLIT_EVENTS)


def _check_frac(name: str, value: float, low_open: bool = True) -> None:
    ok = (0 < value < 1) if low_open else (0 <= value < 1)
    if not ok:
        raise MusicrecError(f"{name} must be in {'(0, 1)' if low_open else '[0, 1)'}, got {value}")


def _check_fracs(test_frac: float, valid_frac: float) -> None:
    """A test fraction in (0, 1), a validation fraction in [0, 1), together < 1."""
    _check_frac("test_frac", test_frac)
    _check_frac("valid_frac", valid_frac, low_open=False)
    if test_frac + valid_frac >= 1:
        raise MusicrecError(f"test_frac + valid_frac must be < 1, got {test_frac + valid_frac}")


def _require_timestamps(events: pl.DataFrame, protocol: str) -> None:
    if events.height and events["timestamp"].null_count() == events.height:
        raise MusicrecError(
            f"{protocol} needs timestamps, and these plays have none (aggregated counts such as "
            "HetRec); use the user-holdout protocol"
        )


def drop_unseen(train: pl.DataFrame, part: pl.DataFrame | None) -> tuple[pl.DataFrame | None, int]:
    """Rows of ``part`` whose item occurs in ``train``, and how many rows were removed."""
    if part is None:
        return None, 0
    kept = part.join(train.select("item_id").unique(), on="item_id", how="semi", maintain_order="left")
    return kept, part.height - kept.height


def _hash_keys(user: np.ndarray, item: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 of (seed, user, item): a reproducible uniform shuffle key per pair."""
    with np.errstate(over="ignore"):
        x = np.full(len(user), seed, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= user.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        x ^= item.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _user_split(part: pl.DataFrame, meta: dict, drop: bool) -> Split:
    """Assemble a user-evaluated split from ``part`` (one label per row).

    Held-out rows of items absent from train are kept (``drop`` False: the standard protocol,
    as RecBole's splits; they cannot be recommended and count as misses) or removed (``drop``).
    ``meta["unseen_in_train"]`` counts them per part either way.
    """
    train = part.filter(pl.col("_part") == "train").drop("_part")
    held = {"test": part.filter(pl.col("_part") == "test").drop("_part")}
    if meta.pop("_has_valid"):
        held["valid"] = part.filter(pl.col("_part") == "valid").drop("_part")
    unseen = {"test": 0, "valid": 0}
    removed = {"test": 0, "valid": 0}
    for name, rows in held.items():
        kept, unseen[name] = drop_unseen(train, rows)
        if drop:
            held[name], removed[name] = kept, unseen[name]
    meta["params"]["drop_unseen"] = drop
    meta.update(evaluation="user", removed_unseen=removed, unseen_in_train=unseen)
    return Split(train=train, test=held["test"], valid=held.get("valid"), meta=meta)


# ----------------------------------------------------------------------------- protocols
def user_holdout(
    events, test_frac: float = 0.2, valid_frac: float = 0.1, seed: int = 0, min_items: int = 5,
    drop_unseen: bool = False,
) -> Split:
    """Per user, hold out a random fraction of their distinct items for test and for validation.

    Parameters
    ----------
    events : DataFrame in ``schema.SPLIT_EVENTS``
    test_frac, valid_frac : float
        Fractions of each user's distinct items; counts are rounded half up, test gets at
        least 1 item and train keeps at least 1. ``valid_frac=0`` gives no validation part.
    seed : int
        Seed of the per-(user, item) shuffle.
    min_items : int
        Users with fewer distinct items (or fewer than 2) stay entirely in train.
    drop_unseen : bool
        Remove test/valid rows of items absent from train (musicrec's older convention). By
        default they stay, as in RecBole's and Elliot's splits: evaluation counts them as
        relevant items no model trained on this split can recommend.

    Returns
    -------
    Split with ``evaluation="user"``; all events of a held-out (user, item) pair go to
    the same part.
    """
    _check_fracs(test_frac, valid_frac)
    ev = _events(events)
    # Label every row directly (no table of distinct pairs joined back: at 100M plays that join
    # needed > 20 GB). For a fixed (seed, user) the hash is a bijection of the item id, so
    # distinct items never tie and the dense rank over rows is the rank over distinct items.
    ev = ev.with_columns(pl.Series("_key", _hash_keys(ev["user_id"].to_numpy(), ev["item_id"].to_numpy(), seed)))
    n = pl.col("item_id").n_unique().over("user_id")
    n_test = (n * test_frac + 0.5).floor().cast(pl.Int64).clip(lower_bound=1)
    n_valid = (n * valid_frac + 0.5).floor().cast(pl.Int64)
    # Train keeps at least one item: shrink validation first, then test.
    n_valid = pl.min_horizontal(n_valid, n - 1 - n_test).clip(lower_bound=0)
    n_test = pl.min_horizontal(n_test, n - 1)
    rank = pl.col("_key").rank("dense").over("user_id") - 1
    eligible = n >= max(min_items, 2)
    label = (
        pl.when(~eligible).then(pl.lit("train"))
        .when(rank < n_test).then(pl.lit("test"))
        .when(rank < n_test + n_valid).then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )
    part = ev.with_columns(label.alias("_part")).drop("_key")
    del ev
    meta = dict(protocol="user-holdout", seed=seed, _has_valid=valid_frac > 0,
                params=dict(test_frac=test_frac, valid_frac=valid_frac, min_items=min_items))
    return _user_split(part, meta, drop_unseen)


def _last_items(ev: pl.DataFrame, n: int, eligible: pl.DataFrame) -> pl.DataFrame:
    """Boolean ``_hit`` per row: among eligible users, plays of their last ``n`` distinct items
    at or after the point where the earliest of those items was last played."""
    last = (
        ev.filter(pl.col("timestamp").is_not_null())
        .join(eligible, on="user_id", how="semi")
        .group_by("user_id", "item_id").agg(pl.col("timestamp").max().alias("_last"))
        .sort(["user_id", "_last", "item_id"], descending=[False, True, True])
        .filter(pl.int_range(pl.len()).over("user_id") < n)
        .with_columns(pl.col("_last").min().over("user_id").alias("_cut"))
        .select("user_id", "item_id", "_cut")
    )
    out = ev.join(last, on=["user_id", "item_id"], how="left", maintain_order="left")
    return out.with_columns(
        (pl.col("_cut").is_not_null() & (pl.col("timestamp") >= pl.col("_cut"))).fill_null(False).alias("_hit")
    ).drop("_cut")


def leave_last_out(events, n: int = 1, valid: bool = True, min_items: int | None = None,
                   drop_unseen: bool = False) -> Split:
    """By time, each user's last ``n`` distinct items go to test, the ``n`` before to validation.

    Parameters
    ----------
    events : DataFrame in ``schema.SPLIT_EVENTS`` with timestamps
    n : int
        Distinct items per user held out in each part. The test items are the ``n`` items
        whose latest play is most recent; their plays at or after the earliest of those
        latest plays are test (earlier plays of them stay in train, as repeat listening).
    valid : bool
        Also hold out the previous ``n`` items (same rule on what is left) for validation.
    min_items : int, optional
        Users with fewer distinct timed items stay in train; default ``n * parts + 1``.
    drop_unseen : bool
        Remove held-out rows of items absent from train (see :func:`user_holdout`).

    Rows without a timestamp stay in train. Raises if no row has a timestamp.
    """
    if n < 1:
        raise MusicrecError(f"n must be >= 1, got {n}")
    ev = _events(events)
    _require_timestamps(ev, "leave-last-out")
    least = n * (2 if valid else 1) + 1      # at least one item must stay in train
    need = least if min_items is None else max(min_items, least)
    ev = ev.with_row_index("_row")
    eligible = (
        ev.filter(pl.col("timestamp").is_not_null())
        .group_by("user_id").agg(pl.col("item_id").n_unique().alias("_n"))
        .filter(pl.col("_n") >= need).select("user_id")
    )
    ev = _last_items(ev, n, eligible)
    labelled = ev.with_columns(pl.when(pl.col("_hit")).then(pl.lit("test")).otherwise(None).alias("_part"))
    if valid:
        rest = _last_items(labelled.filter(pl.col("_part").is_null()).drop("_hit", "_part"), n, eligible)
        valid_rows = rest.filter(pl.col("_hit")).select("_row", pl.lit("valid").alias("_valid"))
        labelled = labelled.join(valid_rows, on="_row", how="left").with_columns(
            pl.coalesce("_part", "_valid").alias("_part")).drop("_valid")
    part = labelled.with_columns(pl.col("_part").fill_null("train")).drop("_hit").sort("_row").drop("_row")
    meta = dict(protocol="leave-last-out", seed=None, _has_valid=valid,
                params=dict(n=n, valid=valid, min_items=need))
    return _user_split(part, meta, drop_unseen)


def temporal(events, test_frac: float = 0.2, valid_frac: float = 0.1, drop_unseen: bool = False) -> Split:
    """Global time cut: the latest ``test_frac`` of timed events are test, the ``valid_frac``
    before them validation, everything earlier train.

    Events tied with a cut time go to the later part. Rows without a timestamp stay in
    train. ``meta["params"]`` records the cut times. Test users may have no train history
    (``meta["test_users_without_history"]``). ``drop_unseen``: see :func:`user_holdout`.
    """
    _check_fracs(test_frac, valid_frac)
    ev = _events(events)
    _require_timestamps(ev, "temporal")
    ts = ev["timestamp"].drop_nulls().sort()
    # the tiny epsilon keeps 10 * (1 - 0.3) from flooring to 6
    t_test = ts[int(np.floor(len(ts) * (1 - test_frac) + 1e-9))]
    t_valid = ts[int(np.floor(len(ts) * (1 - test_frac - valid_frac) + 1e-9))] if valid_frac > 0 else t_test
    t = pl.col("timestamp")
    part = ev.with_columns(
        pl.when(t.is_null() | (t < t_valid)).then(pl.lit("train"))
        .when(t < t_test).then(pl.lit("valid"))
        .otherwise(pl.lit("test")).alias("_part")
    )
    meta = dict(protocol="temporal", seed=None, _has_valid=valid_frac > 0,
                params=dict(test_frac=test_frac, valid_frac=valid_frac,
                            test_from=t_test.isoformat(), valid_from=t_valid.isoformat()))
    split = _user_split(part, meta, drop_unseen)
    known = split.train.select("user_id").unique()
    split.meta["test_users_without_history"] = (
        split.test.select("user_id").unique().join(known, on="user_id", how="anti").height
    )
    return split


def session_lastday(
    events, test_days: float = 1.0, slice_gap_days: float = 2.0, min_session_len: int = 2, valid: bool = True
) -> Split:
    """Session-based split: in each time slice, the sessions ending in its last days are test.

    Parameters
    ----------
    events : DataFrame in ``schema.SPLIT_EVENTS`` with timestamps and ``session_id``
    test_days : float, days
        Sessions whose last event is at or after ``slice end - test_days`` are test.
    slice_gap_days : float, days
        The timeline is cut into slices wherever no event happens for longer than this
        (e.g. the 5 slices of the 30Music sample, months apart); without such gaps the
        data is one slice.
    min_session_len : int
        Test/valid sessions with fewer events are dropped.
    valid : bool
        In each slice, the training sessions ending in the last ``test_days`` of what is
        left become validation (and leave train).

    Returns
    -------
    Split with ``evaluation="session"``. Test/valid events of items never seen in train
    are removed; sessions left with fewer than 2 events are dropped. Undated sessions
    (aggregated counts) stay in train. ``meta["slices"]`` describes each slice.
    """
    if test_days <= 0 or slice_gap_days <= 0:
        raise MusicrecError("test_days and slice_gap_days must be > 0")
    ev = _events(events)
    _require_timestamps(ev, "session-lastday")
    if ev["session_id"].null_count():
        raise MusicrecError("session-lastday needs a session_id on every event; sessionize the plays first")
    us = pl.col("timestamp").dt.epoch("us")
    sess = ev.group_by("session_id").agg(us.max().alias("_end"), pl.len().alias("_len"))
    dated = sess.filter(pl.col("_end").is_not_null())

    # Slices: maximal runs of events without a gap longer than slice_gap_days; a session
    # belongs to the slice of its last event.
    times = np.sort(ev.select(us.drop_nulls())["timestamp"].to_numpy())
    starts = times[np.concatenate([[0], np.flatnonzero(np.diff(times) > slice_gap_days * DAY_US) + 1])]
    slice_of = np.searchsorted(starts, dated["_end"].to_numpy(), side="right") - 1
    dated = dated.with_columns(pl.Series("_slice", slice_of, dtype=pl.Int64))
    span = int(test_days * DAY_US)
    dated = dated.with_columns(
        (pl.col("_end") >= pl.col("_end").max().over("_slice") - span).alias("_test"))
    if valid:
        train_end = pl.col("_end").filter(~pl.col("_test")).max().over("_slice")
        dated = dated.with_columns(
            (~pl.col("_test") & (pl.col("_end") >= train_end - span)).fill_null(False).alias("_valid"))
    else:
        dated = dated.with_columns(pl.lit(False).alias("_valid"))

    def events_of(mask: pl.Expr) -> pl.DataFrame:
        ids = dated.filter(mask).select("session_id")
        return ev.join(ids, on="session_id", how="semi", maintain_order="left")

    train = ev.join(dated.filter(pl.col("_test") | pl.col("_valid")).select("session_id"),
                    on="session_id", how="anti", maintain_order="left")
    long_enough = pl.col("_len") >= min_session_len
    removed = {}

    def held_out(mask: pl.Expr, name: str) -> pl.DataFrame:
        part, n_unseen = drop_unseen(train, events_of(mask & long_enough))
        part = part.filter(pl.len().over("session_id") >= 2)
        removed[name] = n_unseen
        return part

    test = held_out(pl.col("_test"), "test")
    valid_part = held_out(pl.col("_valid"), "valid") if valid else None

    def per_slice(part: pl.DataFrame | None) -> np.ndarray:
        if part is None:
            return np.zeros(len(starts), dtype=np.int64)
        ids = dated.join(part.select("session_id").unique(), on="session_id", how="semi")
        return np.bincount(ids["_slice"].to_numpy(), minlength=len(starts))

    counts = {name: per_slice(p) for name, p in (("train", train), ("valid", valid_part), ("test", test))}
    slices = []
    for k, start in enumerate(starts):
        end = int(dated.filter(pl.col("_slice") == k)["_end"].max())
        slices.append(dict(start=_iso(start), end=_iso(end), test_from=_iso(end - span),
                           **{f"{name}_sessions": int(c[k]) for name, c in counts.items()}))
    meta = dict(protocol="session-lastday", evaluation="session", seed=None,
                params=dict(test_days=test_days, slice_gap_days=slice_gap_days,
                            min_session_len=min_session_len, valid=valid),
                slices=slices, removed_unseen={"test": removed["test"], "valid": removed.get("valid", 0)},
                test_sessions=test["session_id"].n_unique(),
                undated_train_sessions=sess.height - dated.height)
    return Split(train=train, test=test, valid=valid_part, meta=meta)


def _iso(epoch_us: int) -> str:
    return datetime.fromtimestamp(int(epoch_us) / 1e6, tz=timezone.utc).isoformat()

