"""Last.fm 1K (``lastfm-dataset-1K``, Celma 2010): one scrobble per line.

``userid-timestamp-artid-artname-traid-traname.tsv`` has no header and six tab-separated fields::

    user_000001  2009-05-04T23:08:57Z  <artist MBID or empty>  Deep Dish  <track MBID or empty>  Track name

Keys: users ``lastfm1k:<userid>``; artists ``mbid:<artist MBID>``, else ``name:<artist name>``;
tracks ``mbid:<track MBID>``, else ``name:<artist>|<track>`` (see ``base.track_name_keys``).
Each line is one listen (``play_count`` 1). When ``userid-profile.tsv`` lies beside the events
file its users are listed too (the profile's other fields are not used).

The file has no quoting: a ``"`` is part of a name (``Johnny "Hammond" Smith``), so it is split on
tabs only, never parsed as CSV.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec.ingest.base import (TIME_RANGE, Rejects, SourceTables, check, first_per_key, input_files, name_keys,
                                  no_rows_error, read_lines, split_fields, take_valid, track_name_keys,
                                  with_iso)

SOURCE = "lastfm-1k"
COLUMNS = ["user", "time", "artist_mbid", "artist_name", "track_mbid", "track_name"]
PROFILE = "userid-profile.tsv"


def _blank(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().replace("", None)


def _mbid_key(col: str) -> pl.Expr:
    return pl.lit("mbid:") + pl.col(col).str.to_lowercase()


def _read_events(path: Path, rejects: Rejects) -> pl.DataFrame:
    df = split_fields(read_lines(path, SOURCE, rejects), COLUMNS)
    df = with_iso(df, "time", "ts").with_columns(*[_blank(c).alias(c) for c in COLUMNS if c != "time"])
    df = check(
        df,
        (pl.col("user").is_null(), "missing user id"),
        (pl.col("ts").is_null(), pl.format(f"bad timestamp '{{}}' (want ISO-8601 from {TIME_RANGE})",
                                           pl.col("time"))),
        (pl.col("artist_mbid").is_null() & pl.col("artist_name").is_null(), "missing artist (no MBID, no name)"),
        (pl.col("track_mbid").is_null() & pl.col("track_name").is_null(), "missing track (no MBID, no name)"),
    )
    return take_valid(df, SOURCE, str(path), rejects).drop("line", "time")


def _read_profile(path: Path, rejects: Rejects) -> pl.DataFrame:
    lines = read_lines(path, SOURCE, rejects)
    lines = lines.filter(~((pl.col("record") == 1) & pl.col("line").str.starts_with("#")))
    df = split_fields(lines, ["user", "gender", "age", "country", "registered"])
    df = check(df, (_blank("user").is_null(), "missing user id"))
    return take_valid(df, SOURCE, str(path), rejects).select(user=_blank("user"))


def read_lastfm1k(path) -> SourceTables:
    """Read a Last.fm 1K events TSV, or a folder holding one (see the module docstring)."""
    # the original name first; any other .tsv in the folder when it was renamed
    p = Path(path)
    named = p.is_dir() and any(f.name != PROFILE for f in p.rglob("userid-timestamp-*.tsv"))
    files = input_files(path, ("userid-timestamp-*.tsv",) if named else ("*.tsv",), SOURCE, exclude=(PROFILE,))
    rejects = Rejects()
    events = [_read_events(f, rejects) for f in files]
    df = pl.concat(events) if events else pl.DataFrame()
    if df.height == 0:
        raise no_rows_error(SOURCE, files, rejects)

    df = df.with_columns(
        artist_name_key=name_keys(df["artist_name"]),
        track_name_key=track_name_keys(df["artist_name"], df["track_name"]),
    ).with_columns(
        user_key=pl.lit("lastfm1k:") + pl.col("user"),
        artist_key=pl.when(pl.col("artist_mbid").is_not_null()).then(_mbid_key("artist_mbid"))
        .otherwise(pl.col("artist_name_key")),
        track_key=pl.when(pl.col("track_mbid").is_not_null()).then(_mbid_key("track_mbid"))
        .otherwise(pl.col("track_name_key")),
    )
    plays = df.select("user_key", "artist_key", "track_key", timestamp="ts", play_count=pl.lit(1),
                      source_row="record")
    artists = first_per_key(df.select("artist_key", source_id="artist_mbid", name="artist_name"), "artist_key")
    tracks = first_per_key(df.select("track_key", "artist_key", source_id="track_mbid", name="track_name"), "track_key")

    user_ids = df.select("user").unique(maintain_order=True)
    read = [str(f) for f in files]
    profile = files[0].parent / PROFILE
    if profile.is_file():
        user_ids = pl.concat([_read_profile(profile, rejects), user_ids]).unique(maintain_order=True)
        read.append(str(profile))
    users = user_ids.select(user_key=pl.lit("lastfm1k:") + pl.col("user"), source_id="user")
    return SourceTables(SOURCE, plays, artists=artists, tracks=tracks, users=users, rejects=rejects, files=read)
