"""A saved split: train / valid / test events plus item names and tags, in one folder.

Layout of a split folder::

    train.parquet  valid.parquet (optional)  test.parquet   # schema.SPLIT_EVENTS
    items.parquet                                           # schema.SPLIT_ITEMS
    item_tags.parquet                                       # schema.SPLIT_ITEM_TAGS
    users.parquet                                           # schema.SPLIT_USERS (original user ids)
    meta.json   # {"protocol", "evaluation": "user"|"session", "item_level": "artist"|"track",
                #  "seed", "params", "store", "counts"}

A folder is written under a temporary name and renamed, so a split is never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field

import polars as pl

from musicrec import MusicrecError, schema


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

    def save(self, path: str) -> None:
        path = os.path.abspath(path)
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            self.train.write_parquet(os.path.join(tmp, "train.parquet"))
            self.test.write_parquet(os.path.join(tmp, "test.parquet"))
            if self.valid is not None:
                self.valid.write_parquet(os.path.join(tmp, "valid.parquet"))
            self.items.write_parquet(os.path.join(tmp, "items.parquet"))
            self.item_tags.write_parquet(os.path.join(tmp, "item_tags.parquet"))
            self.users.write_parquet(os.path.join(tmp, "users.parquet"))
            meta = dict(self.meta)
            meta["counts"] = {
                "train": self.train.height, "test": self.test.height,
                "valid": None if self.valid is None else self.valid.height,
                "train_users": self.train["user_id"].n_unique(), "train_items": self.train["item_id"].n_unique(),
            }
            with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2, sort_keys=True, default=str)
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str) -> "Split":
        meta_path = os.path.join(path, "meta.json")
        if not os.path.isfile(meta_path):
            raise MusicrecError(f"{path}: not a split folder (no meta.json); make one with `musicrec split`")
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)

        def read(name: str) -> pl.DataFrame | None:
            p = os.path.join(path, name)
            return pl.read_parquet(p) if os.path.isfile(p) else None

        return cls(train=read("train.parquet"), test=read("test.parquet"), valid=read("valid.parquet"),
                   items=read("items.parquet"), item_tags=read("item_tags.parquet"),
                   users=read("users.parquet"), meta=meta)
