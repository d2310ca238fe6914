"""Stores written before Delta Lake (schema versions 1 and 2), read as they are.

Version 2 kept each table as ``<store>/<name>.parquet``, the plays in user-hash buckets
``<store>/plays/part-NNNN.parquet`` and a ``manifest.json``; version 1 kept the plays in one
``<store>/plays.parquet``. ``musicrec store migrate`` (:meth:`musicrec.store.Store.migrate`) turns
such a store into Delta tables; every ingest does it first.
"""

from __future__ import annotations

import json

import polars as pl

from musicrec import MusicrecError, fsio, schema


def bucket_file(bucket: int) -> str:
    """File name of a version-2 plays bucket: ``part-NNNN.parquet``."""
    return f"part-{bucket:04d}.parquet"


def manifest(fs, root: str) -> dict | None:
    path = f"{root}/manifest.json"
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise MusicrecError(f"{path}: unreadable store manifest ({fsio.first_line(exc)})") from None


def buckets(m: dict) -> int | None:
    return (m.get("plays_layout") or {}).get("buckets")


def play_paths(fs, root: str, m: dict) -> list[str]:
    n = buckets(m)
    if n is not None:
        return [f"{root}/plays/{bucket_file(b)}" for b in range(n)]
    single = f"{root}/plays.parquet"
    return [single] if fs.exists(single) else []


def read_table(fs, root: str, name: str, sch: dict) -> pl.DataFrame:
    path = f"{root}/{name}.parquet"
    if not fs.exists(path):
        return schema.empty(sch)
    try:
        return schema.conform(fsio.read_parquet(fs.unstrip_protocol(path)), sch)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise MusicrecError(f"store table {path} is unreadable ({fsio.first_line(exc)})") from None


def read_plays(url: str, sch: dict, columns: list[str] | None = None) -> pl.DataFrame:
    try:
        df = fsio.read_parquet(url, columns=columns)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise MusicrecError(f"plays partition {url} is unreadable ({fsio.first_line(exc)})") from None
    return schema.conform(df, sch if not columns else {c: sch[c] for c in columns})


def remove(fs, root: str, m: dict, names) -> None:
    """Delete a migrated store's old files (the Delta tables already hold their rows)."""
    for path in [f"{root}/manifest.json", *[f"{root}/{n}.parquet" for n in names], *play_paths(fs, root, m)]:
        if fs.exists(path):
            fs.rm(path)
