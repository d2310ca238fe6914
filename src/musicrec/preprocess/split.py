"""Split protocols on a store: canonical plays -> train / valid / test events (a :class:`Split`).

Two kinds of evaluation follow from a protocol:

* ``"user"`` (user-holdout, leave-last-out, temporal): a user's train events are the
  history, their test items the relevant set.
* ``"session"`` (session-lastday): every prefix of each test session is scored against
  the next item, over the whole catalogue, repeats included.

Every protocol is deterministic; the only randomness (user-holdout) comes from a hash of
``(seed, user, item)``, so the result does not depend on row order or on how users are
partitioned. The protocols live in :mod:`.splitters` and :mod:`.coldstart`; this module
registers them (``PROTOCOLS``) and :func:`make_split` chains the cleaning steps and a protocol
on a store.
"""

from __future__ import annotations

import inspect
import os

import polars as pl

from musicrec import MusicrecError, schema
from musicrec.engine import using
from musicrec.preprocess.clean import dedupe, drop_short_plays, k_core, to_events
from musicrec.preprocess.coldstart import item_coldstart, user_coldstart
from musicrec.preprocess.empty_parts import check_parts
from musicrec.preprocess.sessionize import sessionize
from musicrec.preprocess.splitset import Split
from musicrec.preprocess.splitters import leave_last_out, session_lastday, temporal, user_holdout

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
