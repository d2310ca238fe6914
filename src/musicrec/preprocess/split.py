"""Split protocols: canonical plays -> train / valid / test events (a :class:`Split`).

Two kinds of evaluation follow from a protocol:

* ``"user"`` (user-holdout, leave-last-out, temporal): a user's train events are the
  history, their test items the relevant set.
* ``"session"`` (session-lastday): every prefix of each test session is scored against
  the next item, over the whole catalogue, repeats included.

Every protocol is deterministic; the only randomness (user-holdout) comes from a hash of
``(seed, user, item)``, so the result does not depend on row order or on how users are
partitioned. :func:`make_split` chains the cleaning steps and a protocol on a store.
"""

from __future__ import annotations

import inspect
import os
from datetime import datetime, timezone

import numpy as np
import polars as pl

from musicrec import MusicrecError, schema
from musicrec.engine import using
from musicrec.preprocess.clean import dedupe, drop_short_plays, k_core, to_events
from musicrec.preprocess.coldstart import item_coldstart, user_coldstart
from musicrec.preprocess.empty_parts import check_parts
from musicrec.preprocess.sessionize import sessionize
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


PROTOCOLS = {
    "user-holdout": user_holdout,
    "leave-last-out": leave_last_out,
    "temporal": temporal,
    "session-lastday": session_lastday,
    "item-coldstart": item_coldstart,
    "user-coldstart": user_coldstart,
}


def protocol_function(name: str):
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise MusicrecError(f"unknown split protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}") from None


# ----------------------------------------------------------------------------- store side
def open_store(url: str):
    """``musicrec.store.Store(url)`` pinned at its tables' current versions (so every table is
    read as of one moment, whoever writes meanwhile), checked to hold plays."""
    from musicrec.store import Store

    store = Store(url)
    if not store.exists():
        raise MusicrecError(f"{url}: no musicrec store here; create one with `musicrec ingest`")
    return store.snapshot()


def catalog(store, item_level: str, item_ids) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Names and tags of the given items.

    Returns
    -------
    items : DataFrame in ``schema.SPLIT_ITEMS`` (one row per id; null names when unknown)
    item_tags : DataFrame in ``schema.SPLIT_ITEM_TAGS``: the artist's tags with summed
        weights; a track gets the tags of its artist.
    """
    ids = pl.DataFrame({"item_id": pl.Series(item_ids, dtype=pl.Int64)}).unique().sort("item_id")
    artists = store.table("artists").select(
        pl.col("artist_id"), pl.col("source_id"), pl.col("name"))
    if item_level == "artist":
        items = ids.join(artists.rename({"artist_id": "item_id"}), on="item_id", how="left")
        items = items.with_columns(pl.col("name").alias("artist_name"), pl.col("item_id").alias("artist_id"))
    else:
        tracks = store.table("tracks").select("track_id", "source_id", "name", "artist_id")
        items = (ids.join(tracks.rename({"track_id": "item_id"}), on="item_id", how="left")
                 .join(artists.select("artist_id", pl.col("name").alias("artist_name")), on="artist_id", how="left"))
    tags = (store.table("tags").group_by("artist_id", "tag").agg(pl.col("weight").fill_null(1.0).sum()))
    item_tags = (items.select("item_id", "artist_id").join(tags, on="artist_id", how="inner")
                 .select("item_id", "tag", "weight").sort("item_id", "tag"))
    return schema.conform(items, schema.SPLIT_ITEMS), schema.conform(item_tags, schema.SPLIT_ITEM_TAGS)


def user_table(store, user_ids) -> pl.DataFrame:
    """Original ids of the given users (``schema.SPLIT_USERS``; null source_id when unknown)."""
    ids = pl.DataFrame({"user_id": pl.Series(user_ids, dtype=pl.Int64)}).unique().sort("user_id")
    users = store.table("users").select("user_id", "source_id").unique("user_id", keep="first")
    return schema.conform(ids.join(users, on="user_id", how="left"), schema.SPLIT_USERS)


def _protocol_kwargs(fn, name: str, params: dict, seed: int) -> dict:
    accepted = [p for p in inspect.signature(fn).parameters if p != "events"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise MusicrecError(
            f"protocol {name} does not take {', '.join(unknown)}; it takes: {', '.join(accepted)}")
    kwargs = dict(params)
    if "seed" in accepted:
        kwargs["seed"] = seed
    return kwargs


# ----------------------------------------------------------------------------- per partition
def partition_profile(url: str, sources: list[str] | None = None, min_ms: int = 30_000) -> dict:
    """What the global checks of :func:`make_split` need from one play partition.

    Returns ``{"sources": [...], "plays": int, "with_track": int}``: the partition's source
    names, its plays from ``sources`` (all when None) and how many of those that are not short
    (``min_ms``) have a track id. Reads only three columns.
    """
    from musicrec.store import read_play_partition

    plays = read_play_partition(url, columns=["source", "track_id", "ms_played"])
    known = plays["source"].drop_nulls().unique().to_list()
    if sources:
        plays = plays.filter(pl.col("source").is_in(list(sources)))
    # dedupe never drops the last copy of a play, so it cannot change whether a track id is left
    kept, _ = drop_short_plays(plays, min_ms)
    return {"sources": known, "plays": plays.height, "with_track": kept["track_id"].drop_nulls().len()}


def clean_partition(
    url: str,
    item_level: str,
    sources: list[str] | None = None,
    min_ms: int = 30_000,
    session_gap_s: float = 1800,
) -> dict:
    """The per-listener cleaning steps of :func:`make_split` on one play partition.

    Keep ``sources`` -> :func:`dedupe` -> :func:`drop_short_plays` -> :func:`sessionize` ->
    :func:`to_events`. Every step works within one listener, and a partition holds all plays
    of its listeners (``Store.play_partitions``), so the union over partitions equals the
    steps run on all plays at once, up to row order and session numbering (see
    :func:`combine_partitions`).

    Parameters
    ----------
    url : str
        One partition from ``Store.play_partitions()`` (a local path or fsspec URL).
    item_level : {"artist", "track"}

    Returns
    -------
    dict with ``events`` (``schema.SPLIT_EVENTS``, session ids numbered within this partition),
    ``sessions`` (one row per listener: ``user_id``, ``first`` = their first local session id,
    ``n`` = their number of sessions, all int64) and the step counts ``plays``,
    ``dropped_duplicates``, ``dropped_short``, ``dropped_no_item``.
    """
    from musicrec.store import read_play_partition

    plays = read_play_partition(url)
    if sources:
        plays = plays.filter(pl.col("source").is_in(list(sources)))
    n_raw = plays.height
    plays = dedupe(plays)
    n_dupes = n_raw - plays.height
    plays, n_short = drop_short_plays(plays, min_ms)
    n_no_item = plays[f"{item_level}_id"].null_count()
    sessions = sessionize(plays, gap_s=session_gap_s)
    # a listener's sessions are numbered consecutively (sessionize sorts by user first)
    per_user = (sessions.group_by("user_id")
                .agg(pl.col("session_id").min().alias("first"), pl.col("session_id").n_unique().alias("n"))
                .select(pl.col("user_id").cast(pl.Int64), pl.col("first").cast(pl.Int64), pl.col("n").cast(pl.Int64)))
    events = schema.conform(to_events(sessions, item_level=item_level), schema.SPLIT_EVENTS)
    return {"events": events, "sessions": per_user, "plays": n_raw, "dropped_duplicates": n_dupes,
            "dropped_short": n_short, "dropped_no_item": n_no_item}


def combine_partitions(parts: list[dict]) -> pl.DataFrame:
    """Events of all partitions (:func:`clean_partition` results, in partition order) in the
    order and with the session ids that the same steps give on all plays at once.

    Session ids: on all plays they are 0, 1, 2, ... over listeners in id order, then session
    start; here listener ``u``'s local ids ``first .. first + n - 1`` become ``offset(u) ..``,
    where ``offset(u)`` counts the sessions of all listeners with a smaller id (nulls first).
    Rows: :func:`to_events` puts the aggregated (untimed) rows before the timed ones, each
    listener's rows together in id order; a stable sort on (timed, user_id) restores that,
    keeping each listener's own row order from its partition.

    ``parts`` is emptied as it goes, so that each partition's frame is freed once renumbered.
    """
    sessions = pl.concat([p["sessions"] for p in parts], how="vertical")
    if sessions["user_id"].is_duplicated().any():
        raise MusicrecError("the store's play partitions share listeners; re-ingest the store")
    shift = sessions.sort("user_id", nulls_last=False).select(
        "user_id", (pl.col("n").cum_sum() - pl.col("n") - pl.col("first")).alias("_shift"))
    renumbered = []
    while parts:
        events = parts.pop(0)["events"]
        renumbered.append(
            events.join(shift, on="user_id", how="left", maintain_order="left", nulls_equal=True)
            .with_columns((pl.col("session_id") + pl.col("_shift")).alias("session_id")).drop("_shift"))
    events = pl.concat(renumbered, how="vertical", rechunk=False)
    del renumbered
    events = events.sort([pl.col("timestamp").is_not_null(), pl.col("user_id")],
                         nulls_last=False, maintain_order=True)
    return schema.conform(events, schema.SPLIT_EVENTS)


def _check_partitions(runner, urls: list[str], store_url: str, sources: list[str] | None,
                      item_level: str | None, min_ms: int) -> str:
    """Check ``sources`` against the store and return the item level (default: track when any
    kept play has a track id), from :func:`partition_profile` of every partition."""
    if not sources and item_level == "artist":
        return "artist"
    profiles = runner.map(partition_profile, urls, sources=sources, min_ms=min_ms)
    if sources:
        known = sorted({s for p in profiles for s in p["sources"]})
        unknown = sorted(set(sources) - set(known))
        if unknown:
            raise MusicrecError(f"source(s) {', '.join(unknown)} not in the store; it has: {', '.join(known)}")
    if sum(p["plays"] for p in profiles) == 0:
        raise MusicrecError(f"{store_url}: the store has no plays{' for ' + ', '.join(sources) if sources else ''}")
    has_track = sum(p["with_track"] for p in profiles) > 0
    level = item_level or ("track" if has_track else "artist")
    if level == "track" and not has_track:
        raise MusicrecError("these plays have no track ids (artist-level data); use --item artist")
    return level


def make_split(
    store_url: str,
    protocol: str,
    out: str | None = None,
    item_level: str | None = None,
    seed: int = 0,
    min_ms: int = 30_000,
    session_gap_s: float = 1800,
    k_core_user: int = 0,
    k_core_item: int = 0,
    sources: list[str] | None = None,
    engine=None,
    **protocol_params,
) -> Split:
    """Clean a store's plays, run a protocol, attach names and tags, optionally save.

    Steps: keep ``sources`` (reader names; all when None) -> :func:`dedupe` ->
    :func:`drop_short_plays` (``min_ms``) -> :func:`sessionize` (``session_gap_s``) ->
    :func:`to_events` (``item_level``; default track when plays have track ids) ->
    :func:`k_core` (when a threshold is > 0) -> the protocol (``protocol_params``).
    ``meta["preprocess"]`` records the parameters and how many rows each step dropped.

    Parameters
    ----------
    store_url : str
        Store folder or fsspec URL (``s3://bucket/store``).
    out : str, optional
        Split folder or fsspec URL to write (:meth:`Split.save`).
    engine : None, "local", "ray" or an engine (``musicrec.engine``)
        Where the per-listener steps run. The steps up to :func:`to_events` run once per play
        partition (:func:`clean_partition`, mapped by the engine); the driver then combines the
        partitions (:func:`combine_partitions`), so the result is the same, row for row,
        whatever the engine and however the store is partitioned. Global steps stay in the
        driver: checking the sources and choosing the default item level (a light pass over
        three columns, :func:`partition_profile`), the k-core (a listener's removal can drop an
        item everywhere) and the protocol (user-holdout ranks per user, but temporal and
        session-lastday cut on global times and every protocol drops items unseen in train).
        None runs everything in this process.
    """
    fn = protocol_function(protocol)
    kwargs = _protocol_kwargs(fn, protocol, protocol_params, seed)
    if item_level not in (None, "artist", "track"):
        raise MusicrecError(f"unknown item level {item_level!r}; choose artist or track")
    store = open_store(store_url)
    urls = store.play_partitions()
    sources = list(sources) if sources else None
    with using(engine) as runner:
        level = _check_partitions(runner, urls, store_url, sources, item_level, min_ms)
        parts = runner.map(clean_partition, urls, item_level=level, sources=sources, min_ms=min_ms,
                           session_gap_s=session_gap_s)
    counts = {key: sum(p[key] for p in parts) for key in ("plays", "dropped_duplicates", "dropped_short",
                                                          "dropped_no_item")}
    if counts["plays"] == 0:
        raise MusicrecError(f"{store_url}: the store has no plays{' for ' + ', '.join(sources) if sources else ''}")
    events = combine_partitions(parts)      # empties parts
    n_events = events.height
    if k_core_user > 0 or k_core_item > 0:
        events = k_core(events, min_user=k_core_user, min_item=k_core_item)
    if events.height == 0:
        if n_events == 0 and counts["dropped_no_item"]:
            raise MusicrecError(f"no plays left at --item {level} level: none of the {counts['dropped_no_item']:,} "
                                f"kept plays has a {level} id; try --item {'artist' if level == 'track' else 'track'}")
        raise MusicrecError("no events left after cleaning and k-core filtering")

    split = fn(events, **kwargs)
    check_parts(split, events, level, counts, level_given=item_level is not None)
    used = pl.concat([p["item_id"] for p in (split.train, split.valid, split.test) if p is not None])
    split.items, split.item_tags = catalog(store, level, used.unique())
    split.users = user_table(store, pl.concat([p["user_id"] for p in (split.train, split.valid, split.test)
                                               if p is not None]).unique())
    split.meta.update(
        item_level=level, seed=seed, store=str(store_url), store_versions=store.versions,
        preprocess=dict(
            sources=sources, min_ms=min_ms, session_gap_s=session_gap_s,
            k_core_user=k_core_user, k_core_item=k_core_item, **counts,
            dropped_k_core=n_events - events.height,
        ),
    )
    if out is not None:
        split.save(os.fspath(out))
    return split
