"""Tiny hand-built plays, events and stores for the preprocess tests."""

import json
import os
from datetime import datetime, timedelta, timezone

import polars as pl

from musicrec import schema

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(seconds):
    """A UTC timestamp ``seconds`` after T0 (None stays None)."""
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def plays(rows):
    """STORE_PLAYS from dicts; ``t`` is seconds after T0, other missing columns are null."""
    out = []
    for r in rows:
        r = dict(r)
        r.setdefault("play_count", 1)
        r["timestamp"] = at(r.pop("t", None))
        out.append(r)
    return schema.conform(pl.DataFrame(out, infer_schema_length=None), schema.STORE_PLAYS)


def events(rows):
    """SPLIT_EVENTS from (user_id, item_id[, seconds after T0 or None[, session_id]]) tuples."""
    return schema.conform(pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "weight": [1.0] * len(rows),
         "timestamp": [at(r[2] if len(r) > 2 else None) for r in rows], "session_id": [r[3] if len(r) > 3 else None for r in rows]},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "weight": pl.Float64,
                "timestamp": schema.UTC_US, "session_id": pl.Int64},
    ), schema.SPLIT_EVENTS)


def write_store(path, **tables):
    """A store folder: ``<path>/<name>.parquet`` for each given table, conformed to STORE_*,
    plus the minimal ``manifest.json`` that marks a store."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "manifest.json"), "w") as fh:
        json.dump({"schema_version": 1, "tables": {}, "sources": []}, fh)
    for name, df in tables.items():
        sch = getattr(schema, f"STORE_{name.upper()}")
        df = df if isinstance(df, pl.DataFrame) else pl.DataFrame(df, infer_schema_length=None)
        schema.conform(df, sch).write_parquet(os.path.join(path, f"{name}.parquet"))
    return str(path)


def tiny_store(path):
    """A store at ``path`` with two sources: "hetrec" (artist counts, users 1-2) and "30music" (timed tracks, users 3-4).

    Original id "7" is a user of both sources and an artist of both, so it is ambiguous
    without a source.
    """
    users = [
        dict(user_id=1, key="hetrec:7", source_id="7"),
        dict(user_id=2, key="hetrec:8", source_id="8"),
        dict(user_id=3, key="30music:7", source_id="7"),
        dict(user_id=4, key="30music:9", source_id="9"),
    ]
    artists = [
        dict(artist_id=10, key="hetrec:7", source_id="7", name="Abba"),
        dict(artist_id=11, key="hetrec:51", source_id="51", name="Blur"),
        dict(artist_id=20, key="30music:7", source_id="7", name=None),
        dict(artist_id=21, key="30music:300", source_id="300", name=None),
    ]
    tracks = [
        dict(track_id=100, key="30music:1000", source_id="1000", artist_id=20, name=None),
        dict(track_id=101, key="30music:1001", source_id="1001", artist_id=20, name=None),
        dict(track_id=102, key="30music:1002", source_id="1002", artist_id=21, name=None),
    ]
    tags = [
        dict(artist_id=10, tag="pop", weight=1.0),
        dict(artist_id=10, tag="pop", weight=2.0),
        dict(artist_id=10, tag="disco", weight=1.0),
        dict(artist_id=20, tag="rock", weight=1.0),
    ]
    p = plays([
        dict(user_id=1, artist_id=10, play_count=5, source="hetrec"),
        dict(user_id=1, artist_id=11, play_count=2, source="hetrec"),
        dict(user_id=2, artist_id=11, play_count=3, source="hetrec"),
        dict(user_id=3, artist_id=20, track_id=100, t=0, source="30music"),
        dict(user_id=3, artist_id=20, track_id=101, t=60, source="30music"),
        dict(user_id=4, artist_id=21, track_id=102, t=0, source="30music"),
        dict(user_id=4, artist_id=20, track_id=100, t=60, source="30music"),
    ])
    return write_store(path, plays=p, users=users, artists=artists, tracks=tracks, tags=tags)
