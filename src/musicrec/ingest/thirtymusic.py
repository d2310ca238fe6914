"""30Music sessions (Turrin et al. 2015) in the session-rec slice format.

A slice file (or a folder of ``*.txt`` slices) is tab-separated with the header
``UserId SessionId ItemId Time ArtistId``; ``Time`` is Unix seconds. Keys are ``30music:<id>``.
Session ids restart in every slice, so the session key is ``<file stem>:<SessionId>``.
The files carry no names: artists and tracks are named by their ids (``"artist 228054"``).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.base import (Rejects, SourceTables, check, drop_header, epoch_expr, first_per_key,
                                  input_files, int_expr, no_rows_error, read_lines, split_fields, take_valid)

SOURCE = "30music"
HEADER = "UserId\tSessionId\tItemId\tTime\tArtistId"
COLUMNS = HEADER.split("\t")


def _read(path: Path, rejects: Rejects) -> pl.DataFrame:
    df = split_fields(drop_header(read_lines(path, SOURCE, rejects), HEADER), COLUMNS)
    ids = [(int_expr(c).is_null(), pl.format(f"{c} is not an integer: '{{}}'", pl.col(c)))
           for c in ("UserId", "SessionId", "ItemId", "ArtistId")]
    df = check(df, *ids, (epoch_expr("Time").is_null(), pl.format("bad Unix time '{}'", pl.col("Time"))))
    return take_valid(df, SOURCE, str(path), rejects).with_columns(file=pl.lit(path.stem))


def _has_header(path: Path) -> bool:
    with open(path, "rb") as f:
        first = f.readline(200).decode("utf-8", "replace")
    return first.split() == COLUMNS


def read_thirtymusic(path) -> SourceTables:
    """Read a 30Music slice file or a folder of them (see the module docstring)."""
    files = input_files(path, ("*.txt",), SOURCE)
    if Path(path).is_dir():                 # in a folder, only the slices (a readme.txt is not one)
        files = [f for f in files if _has_header(f)]
        if not files:
            raise MusicrecError(f"{SOURCE}: no slice file (first line {HEADER.replace(chr(9), ' ')!r}) in {path}")
    rejects = Rejects()
    df = pl.concat([_read(f, rejects) for f in files])
    if df.height == 0:
        raise no_rows_error(SOURCE, files, rejects)
    ids = {c: int_expr(c).cast(pl.String) for c in ("UserId", "SessionId", "ItemId", "ArtistId")}
    df = df.with_columns(
        user_key=pl.lit("30music:") + ids["UserId"],
        artist_key=pl.lit("30music:") + ids["ArtistId"],
        track_key=pl.lit("30music:") + ids["ItemId"],
        session_key=pl.col("file") + ":" + ids["SessionId"],
        artist_id=ids["ArtistId"], item_id=ids["ItemId"], user_id=ids["UserId"],
    )
    plays = df.select("user_key", "artist_key", "track_key", timestamp=epoch_expr("Time"), play_count=pl.lit(1),
                      session_key="session_key", source_row="record")
    artists = first_per_key(df.select("artist_key", source_id="artist_id",
                                      name=pl.lit("artist ") + pl.col("artist_id")), "artist_key")
    tracks = first_per_key(df.select("track_key", "artist_key", source_id="item_id",
                                     name=pl.lit("track ") + pl.col("item_id")), "track_key")
    users = first_per_key(df.select("user_key", source_id="user_id"), "user_key")
    return SourceTables(SOURCE, plays, artists=artists, tracks=tracks, users=users, rejects=rejects,
                        files=[str(f) for f in files])
