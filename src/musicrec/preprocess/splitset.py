"""A saved split: train / valid / test events plus item names and tags, in one folder.

Layout of a split folder::

    train.parquet  valid.parquet (optional)  test.parquet   # schema.SPLIT_EVENTS
    items.parquet                                           # schema.SPLIT_ITEMS
    item_tags.parquet                                       # schema.SPLIT_ITEM_TAGS
    users.parquet                                           # schema.SPLIT_USERS (original user ids)
    meta.json   # {"protocol", "evaluation": "user"|"session", "item_level": "artist"|"track",
                #  "seed", "params", "store", "counts"}

The folder may be a local path or any fsspec URL (``s3://bucket/split``). A local folder is
written under a temporary name and renamed, so a split is never half-written and an older split
at that path is replaced as a whole. Object stores have no folder rename: there the old folder's
``meta.json`` is deleted first, then the old files, then the new tables are written (each file
atomically) and ``meta.json`` comes last, as the commit marker: :meth:`Split.load` refuses a
folder without it, so an interrupted save is never read as a split.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from musicrec import MusicrecError, fsio, schema

TABLE_FILES = ("train", "test", "valid", "items", "item_tags", "users")


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 (wrapping arithmetic): a well-spread hash per value."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def fingerprint(events: pl.DataFrame) -> str:
    """A stable 32-hex-digit fingerprint of the rows (user_id, item_id, timestamp, weight) of
    ``events`` (``schema.SPLIT_EVENTS``), whatever their order.

    Each row is hashed on its own and the row hashes are summed (mod 2^64, twice with different
    seeds), so the result does not depend on row order or on how the rows were partitioned,
    and it is the same in every polars version (polars' own row hash is not). About 1 s for
    10M rows. What a model folder records of the training part it was fitted on.
    """
    ev = schema.conform(events, schema.SPLIT_EVENTS)
    cols = [
        ev["user_id"].fill_null(-1).to_numpy().astype(np.uint64),
        ev["item_id"].fill_null(-1).to_numpy().astype(np.uint64),
        ev["timestamp"].dt.epoch("us").fill_null(-1).to_numpy().astype(np.uint64),
        ev["weight"].fill_null(0.0).to_numpy().astype(np.float64).view(np.uint64),
    ]
    sums = []
    for seed in (0x9E3779B97F4A7C15, 0xD1B54A32D192ED03):
        h = np.full(ev.height, seed, dtype=np.uint64)
        for col in cols:
            h = _mix64(h ^ col)
        sums.append(int(h.sum(dtype=np.uint64)) if ev.height else 0)
    return "".join(f"{s:016x}" for s in sums)


@dataclass
class Split:
    train: pl.DataFrame
    test: pl.DataFrame
    valid: pl.DataFrame | None = None
    items: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SPLIT_ITEMS))
    item_tags: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SPLIT_ITEM_TAGS))
    users: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SPLIT_USERS))
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # optional tables may be given as None (e.g. an older split folder without them)
        for name, sch in (("items", schema.SPLIT_ITEMS), ("item_tags", schema.SPLIT_ITEM_TAGS), ("users", schema.SPLIT_USERS)):
            if getattr(self, name) is None:
                setattr(self, name, schema.empty(sch))
        self.train = schema.conform(self.train, schema.SPLIT_EVENTS)
        self.test = schema.conform(self.test, schema.SPLIT_EVENTS)
        if self.valid is not None:
            self.valid = schema.conform(self.valid, schema.SPLIT_EVENTS)
        self.items = schema.conform(self.items, schema.SPLIT_ITEMS)
        self.item_tags = schema.conform(self.item_tags, schema.SPLIT_ITEM_TAGS)
        self.users = schema.conform(self.users, schema.SPLIT_USERS)

    @property
    def evaluation(self) -> str:
        """"session" when test sessions are scored at every prefix, else "user"."""
        return self.meta.get("evaluation", "user")

    def _meta_json(self) -> dict:
        meta = dict(self.meta)
        meta["counts"] = {
            "train": self.train.height, "test": self.test.height,
            "valid": None if self.valid is None else self.valid.height,
            "train_users": self.train["user_id"].n_unique(), "train_items": self.train["item_id"].n_unique(),
        }
        return meta

    def _tables(self) -> dict[str, pl.DataFrame]:
        tables = {name: getattr(self, name) for name in TABLE_FILES}
        return {name: df for name, df in tables.items() if df is not None}

    def save(self, path: str) -> None:
        """Write the split folder ``path`` (local path or fsspec URL), replacing any split there."""
        path = os.fspath(path)
        if not fsio.is_local(path):
            self._save_remote(path)
            return
        path = fsio.filesystem(path)[1]     # a plain path, also for file:// URLs
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            for name, df in self._tables().items():
                df.write_parquet(os.path.join(tmp, f"{name}.parquet"))
            with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as fh:
                json.dump(self._meta_json(), fh, indent=2, sort_keys=True, default=str)
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _save_remote(self, url: str) -> None:
        fs, root = fsio.filesystem(url)
        root = root.rstrip("/")
        # uncommit first (meta.json is the marker), then clear what an older split left
        if fs.exists(f"{root}/meta.json"):
            fs.rm(f"{root}/meta.json")
        if fs.isfile(root):
            raise MusicrecError(f"{url} is a file, not a split folder")
        if fs.isdir(root):
            old = fs.find(root)
            if old:
                fs.rm(old)
        for name, df in self._tables().items():
            fsio.atomic_write(fsio.join(url, f"{name}.parquet"), df.write_parquet)
        fsio.atomic_write_json(fsio.join(url, "meta.json"), self._meta_json())

    @classmethod
    def load(cls, path: str) -> "Split":
        """Read a split folder (local path or fsspec URL); MusicrecError when it is not one."""
        path = os.fspath(path)
        meta_path = fsio.join(path, "meta.json")
        try:
            present = fsio.isfile(meta_path)
        except (OSError, ValueError) as exc:
            raise MusicrecError(f"{path}: cannot read the split ({fsio.first_line(exc)})") from None
        if not present:
            raise MusicrecError(f"{path}: not a split folder (no meta.json); make one with `musicrec split`")

        def read(name: str) -> pl.DataFrame | None:
            url = fsio.join(path, name)
            return fsio.read_parquet(url) if fsio.isfile(url) else None

        try:
            meta = fsio.read_json(meta_path)
            tables = {name: read(f"{name}.parquet") for name in TABLE_FILES}
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise MusicrecError(f"{path}: unreadable split ({fsio.first_line(exc)})") from None
        missing = [f"{name}.parquet" for name in ("train", "test") if tables[name] is None]
        if missing:
            raise MusicrecError(f"{path}: incomplete split folder (no {' or '.join(missing)})")
        return cls(**tables, meta=meta)
