"""HetRec 2011 Last.fm 2K (``hetrec2011-lastfm-2k``): user-artist play counts, tags, friends.

A folder of tab-separated ``.dat`` files, each with a header row::

    user_artists.dat        userID artistID weight            -> plays (weight = play count, no time)
    artists.dat             id name url pictureURL            -> artists
    tags.dat                tagID tagValue   (latin-1!)       -> tag texts
    user_taggedartists.dat  userID artistID tagID day month year -> tags (dated 00:00 UTC)
    user_friends.dat        userID friendID                   -> friends

Keys are ``hetrec:<id>`` for users and artists. ``user_taggedartists-timestamps.dat`` (the same
assignments with ms timestamps) is not needed and not read.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.base import (MAX_PLAY_COUNT, Rejects, SourceTables, check, drop_header, int_expr,
                                  no_rows_error, read_lines, split_fields, take_valid)

SOURCE = "hetrec-lastfm-2k"
FILES = {  # file -> header (also the column names)
    "user_artists.dat": "userID\tartistID\tweight",
    "artists.dat": "id\tname\turl\tpictureURL",
    "tags.dat": "tagID\ttagValue",
    "user_taggedartists.dat": "userID\tartistID\ttagID\tday\tmonth\tyear",
    "user_friends.dat": "userID\tfriendID",
}


def _key(col: str) -> pl.Expr:
    return pl.lit("hetrec:") + int_expr(col).cast(pl.String)


def _numeric(cols: list[str]) -> list[tuple[pl.Expr, pl.Expr]]:
    return [(int_expr(c).is_null(), pl.format(f"{c} is not an integer: '{{}}'", pl.col(c))) for c in cols]


def _read(folder: Path, name: str, rejects: Rejects, encoding: str = "utf-8") -> tuple[pl.DataFrame, str]:
    path = folder / name
    header = FILES[name]
    lines = drop_header(read_lines(path, SOURCE, rejects, encoding), header)
    return split_fields(lines, header.split("\t")), str(path)


def read_hetrec(path) -> SourceTables:
    """Read a HetRec 2011 Last.fm 2K folder (see the module docstring)."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.exists():
        raise MusicrecError(f"{SOURCE}: {path} does not exist")
    if not folder.is_dir():
        raise MusicrecError(f"{SOURCE}: {path} is not a folder")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise MusicrecError(f"{SOURCE}: folder {path} lacks {', '.join(missing)} (is it hetrec2011-lastfm-2k?)")
    rejects = Rejects()

    df, file = _read(folder, "user_artists.dat", rejects)
    df = check(df, *_numeric(["userID", "artistID", "weight"]),
               (int_expr("weight") < 0, pl.format("negative weight {}", pl.col("weight"))),
               (int_expr("weight") > MAX_PLAY_COUNT,
                pl.format(f"weight {{}} over {MAX_PLAY_COUNT} plays", pl.col("weight"))))
    ua = take_valid(df, SOURCE, file, rejects)
    if ua.height == 0:
        raise no_rows_error(SOURCE, [file], rejects)
    plays = ua.select(
        user_key=_key("userID"), artist_key=_key("artistID"), play_count=int_expr("weight"),
        source_row=pl.col("record"),
    )

    df, file = _read(folder, "artists.dat", rejects)
    df = check(df, *_numeric(["id"]))
    artists = take_valid(df, SOURCE, file, rejects).select(
        artist_key=_key("id"), source_id=int_expr("id").cast(pl.String),
        name=pl.col("name").str.strip_chars().replace("", None),
    )

    df, file = _read(folder, "tags.dat", rejects, encoding="latin-1")
    df = check(df, *_numeric(["tagID"]))
    tag_text = take_valid(df, SOURCE, file, rejects).select(
        tag_id=int_expr("tagID"), tag=pl.col("tagValue").str.strip_chars().str.to_lowercase())

    df, file = _read(folder, "user_taggedartists.dat", rejects)
    df = df.with_columns(tag_id=int_expr("tagID"))
    df = df.join(tag_text, on="tag_id", how="left", maintain_order="left")
    df = check(df, *_numeric(["userID", "artistID", "tagID", "day", "month", "year"]),
               (pl.col("tag").is_null(), pl.format("unknown tagID {}", pl.col("tagID"))),
               (pl.col("tag") == "", pl.format("empty tag text for tagID {}", pl.col("tagID"))))
    # an impossible date (31 February) is only detectable once the parts are numbers
    df = df.with_columns(date=pl.when(pl.col("reason").is_null()).then(
        pl.concat_str(int_expr("year"), int_expr("month"), int_expr("day"), separator="-")
        .str.strptime(pl.Date, "%Y-%m-%d", strict=False)))
    df = check(df, (pl.col("date").is_null(),
                    pl.format("impossible date {}-{}-{}", pl.col("year"), pl.col("month"), pl.col("day"))))
    tags = take_valid(df, SOURCE, file, rejects).select(
        artist_key=_key("artistID"), tag="tag", user_key=_key("userID"),
        timestamp=pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), weight=pl.lit(1.0))

    df, file = _read(folder, "user_friends.dat", rejects)
    df = check(df, *_numeric(["userID", "friendID"]))
    friends = take_valid(df, SOURCE, file, rejects).select(user_key=_key("userID"), friend_key=_key("friendID"))

    users = (pl.concat([plays["user_key"], tags["user_key"], friends["user_key"], friends["friend_key"]])
             .unique(maintain_order=True).to_frame("user_key")
             .with_columns(source_id=pl.col("user_key").str.strip_prefix("hetrec:")))
    return SourceTables(SOURCE, plays, artists=artists, users=users, tags=tags, friends=friends,
                        rejects=rejects, files=[str(folder / f) for f in FILES])
