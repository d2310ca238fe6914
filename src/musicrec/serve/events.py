"""New plays posted to the service: kept in memory for at-once recommendations, and persisted.

``EventOverlay`` holds each listener's plays since the model's data was cut, in store item ids,
so it survives a hot reload onto another model of the same store. ``StoreWriter`` appends the
plays to the canonical store through ``Store.append_play_batches`` (one Delta append, duplicates
dropped), one commit at a time per machine, taking every post waiting then (group commit): a
thread lock, plus a file lock beside a local store so several server processes do not race for
the same commit (the Delta log would make the loser retry; the lock spares the retry). Ingests
may run meanwhile. The commit of a local store runs in a writer process at lower priority
(``writer_process``), so that on a 2-core machine the readers' requests do not queue behind it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from musicrec import MusicrecError

#: reader name recorded on plays posted to the API
SOURCE = "api"


@dataclass
class _Plays:
    items: list = field(default_factory=list)        # store item ids, in listening order
    arrived: list = field(default_factory=list)      # time.time() when each play was posted
    seen: set = field(default_factory=set)           # (item id, timestamp in µs): drops resent plays


class EventOverlay:
    """Plays posted per listener, in arrival order (thread-safe).

    A listener key is ``("user", store user id)`` for a listener in the model's training data
    and ``("new", their id as given)`` otherwise.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[tuple, _Plays] = {}

    def add(self, user: tuple, items: np.ndarray, timestamps_us: np.ndarray) -> int:
        """Record plays (store item ids (N,), UTC µs (N,)); returns how many were new."""
        now = time.time()
        added = 0
        with self._lock:
            plays = self._by_user.setdefault(user, _Plays())
            for item, ts in zip(items.tolist(), timestamps_us.tolist()):
                if (item, ts) in plays.seen:
                    continue
                plays.seen.add((item, ts))
                plays.items.append(item)
                plays.arrived.append(now)
                added += 1
        return added

    def items(self, user: tuple, since: float = 0.0) -> np.ndarray:
        """Store item ids (N,) int64 the listener played, oldest first, posted after ``since``
        (Unix seconds: plays posted before the model's data was cut are already in it)."""
        with self._lock:
            plays = self._by_user.get(user)
            if plays is None:
                return np.zeros(0, dtype=np.int64)
            items = [i for i, t in zip(plays.items, plays.arrived) if t > since]
        return np.asarray(items, dtype=np.int64)


class _Post:
    """One post waiting for its commit: the frame, then its report or the error it raised."""

    def __init__(self, frame: pl.DataFrame):
        self.frame = frame
        self.report = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.report is not None or self.error is not None

    def result(self):
        if self.error is not None:
            raise self.error
        return self.report


class _Group:
    """Posts to one store waiting to be committed together, and the lock of the one committing."""

    def __init__(self) -> None:
        self.commit_lock = threading.Lock()
        self.queue_lock = threading.Lock()
        self.queue: list[_Post] = []


_GROUPS: dict[str, _Group] = {}
_GROUPS_GUARD = threading.Lock()
#: the most posts one commit takes (the rest wait for the next)
MAX_GROUP = 256


class StoreWriter:
    """Appends plays to the store at ``url``, serialized across threads and local processes.

    Group commit: a post that arrives while another commits waits, and the next commit takes
    every post waiting then (up to ``MAX_GROUP``) in one Delta append, so a commit's fixed cost
    (about 50 ms) is paid once per group rather than once per post. Each post still gets its own
    report, as if the posts had been appended one after another.

    With ``catalogue`` (the model's items: ``item_id``, ``source_id``, ``name``), the first append
    checks that the store holds those items under the same ids; a store the model was not trained
    on (whose ids mean other artists) is refused with ``guards.Conflict``, for every append.
    """

    def __init__(self, url: str, catalogue: pl.DataFrame | None = None, item_level: str = "artist"):
        from musicrec.store import Store

        self.store = Store(url)
        self.url = url
        self.catalogue = catalogue
        self.item_level = item_level
        self._verdict: str | None = None        # "" once the catalogue matched, else why not
        with _GROUPS_GUARD:
            self._group = _GROUPS.setdefault(self.store.url, _Group())

    def check_catalogue(self) -> None:
        """``guards.Conflict`` unless the store holds the model's items under the same ids (checked once)."""
        from musicrec.serve.guards import Conflict

        if self.catalogue is None:
            return
        if self._verdict is None:
            self._verdict = catalogue_mismatch(self.store, self.catalogue, self.item_level)
        if self._verdict:
            raise Conflict(f"posted plays are refused: {self._verdict}; the model was trained on another store "
                           f"than the one this server writes to (start it with --store pointing at the model's store)")

    @contextlib.contextmanager
    def _exclusive(self):
        with self._group.commit_lock:
            if not self.store.local:
                yield
                return
            import fcntl

            os.makedirs(self.store.root, exist_ok=True)
            with open(os.path.join(self.store.root, ".append.lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def append(self, plays: pl.DataFrame):
        """``Store.append_plays(plays, source="api")``, committed with the posts waiting beside
        it; returns this post's IngestReport (or raises its error)."""
        self.check_catalogue()
        post = _Post(plays)
        group = self._group
        with group.queue_lock:
            group.queue.append(post)
        with self._exclusive():
            if not post.done:       # nobody took it: commit it and everything waiting now
                with group.queue_lock:
                    batch, group.queue[:] = group.queue[:MAX_GROUP], group.queue[MAX_GROUP:]
                self._commit(batch)
        return post.result()

    def _append(self, frames: list[pl.DataFrame]) -> list:
        """The commit: for a local store in the writer process (``writer_process``: its CPU
        bursts at lower priority, so readers do not wait behind them); in this process for others
        (an in-memory store is not visible from another)."""
        if not self.store.local:
            return self.store.append_play_batches(frames, source=SOURCE)
        from musicrec.serve import writer_process

        for fresh in (False, True):     # the writer process died (killed): start another, once
            try:
                return writer_process.shared(fresh).append(self.store.url, frames, SOURCE)
            except (EOFError, OSError):
                pass
        raise MusicrecError("the store writer process died twice; the plays were not stored")

    def _commit(self, batch: list[_Post]) -> None:
        try:
            reports = self._append([p.frame for p in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # one bad post must not fail the others: each alone, so each gets its own answer
            for p in batch:
                self._commit([p])
            return
        for p, report in zip(batch, reports):
            p.report = report


def catalogue_mismatch(store, catalogue: pl.DataFrame, item_level: str) -> str:
    """Why ``store`` does not hold the model's ``catalogue`` under the same ids ("" when it does):
    every item id must be in the store's artists (tracks) table with the same name and source id
    where both are known."""
    table, id_col = ("tracks", "track_id") if item_level == "track" else ("artists", "artist_id")
    try:
        entities = store.table(table).select(pl.col(id_col).alias("item_id"), pl.col("source_id").alias("s_source"),
                                             pl.col("name").alias("s_name"))
    except Exception as exc:        # an unreadable table: nothing can be checked, so nothing is written
        return f"the store's {table} table cannot be read ({type(exc).__name__})"
    model = catalogue.select(pl.col("item_id").cast(pl.Int64), "source_id", "name")
    joined = model.join(entities, on="item_id", how="left")
    differs = (pl.col("s_name").is_null() & pl.col("s_source").is_null()) | \
        (pl.col("name").is_not_null() & pl.col("s_name").is_not_null() & (pl.col("name") != pl.col("s_name"))) | \
        (pl.col("source_id").is_not_null() & pl.col("s_source").is_not_null() & (pl.col("source_id") != pl.col("s_source")))
    bad = joined.filter(differs)
    if not bad.height:
        return ""
    row = bad.row(0, named=True)
    there = "missing" if row["s_name"] is None and row["s_source"] is None else repr(row["s_name"] or row["s_source"])
    return (f"{bad.height} of {model.height} of the model's {table} differ in the store (id {row['item_id']} is "
            f"{row['name']!r} in the model, {there} in the store)")


def check_store(url: str) -> str:
    """``url`` if a store exists there, else MusicrecError."""
    from musicrec.store import Store

    if not Store(url).exists():
        raise MusicrecError(f"{url}: no musicrec store here; create one with `musicrec ingest`")
    return url
