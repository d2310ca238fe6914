"""Any listening log as a CSV (``.csv``, ``.tsv``) or Parquet file, one listen or count per row.

The ``columns`` option maps canonical names to the file's columns; a canonical name the file
already uses needs no mapping:

=============  ===========================================================================
user           listener id (required unless the ``user`` option names one listener)
artist         artist id or name (``artist`` or ``artist_name`` is required)
track          track id or name (optional: without it the data is artist-level)
timestamp      Unix seconds or ISO-8601 (``Z``/offset, or none meaning UTC); optional
play_count     plays the row stands for (default 1)
ms_played      milliseconds listened
session        the source's session id
artist_name    display name of the artist (default: the ``artist`` value)
track_name     display name of the track (default: the ``track`` value)
=============  ===========================================================================

Keys are ``<source>:<value>`` (``source`` option, default ``"csv"`` for both formats so the same
log as CSV or Parquet merges). With only ``artist_name`` / ``track_name`` columns, keys are
name keys (``name:<artist>``, ``name:<artist>|<track>``) that merge with other sources' names.

CSV record numbers are physical line numbers (the header is line 1; a quoted field holding
line breaks is counted correctly). A CSV without any ``"`` is split by Polars; one with quoting
goes through Python's ``csv`` module. Parquet record numbers are 1-based row numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.base import (Rejects, SourceTables, check, epoch_expr, first_per_key, input_files, int_expr,
                                  iso_expr, name_keys, no_rows_error, read_lines, split_fields, take_valid,
                                  track_name_keys)

PREFIX = "c:"        # file columns inside the reader: "c:<name>"
CANONICAL = ("user", "artist", "track", "timestamp", "play_count", "ms_played", "session", "artist_name",
             "track_name")


def _mapping(columns: dict | None, present: list[str], file: Path, user: str | None) -> dict[str, str]:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(CANONICAL))
    if unknown:
        raise MusicrecError(f"unknown canonical column(s) {', '.join(unknown)}; valid: {', '.join(CANONICAL)}")
    mapping = {c: c for c in CANONICAL if c in present}
    mapping.update(columns)
    missing = {c: f for c, f in mapping.items() if f not in present}
    if missing:
        raise MusicrecError(f"{file.name}: no column {', '.join(repr(f) for f in missing.values())} "
                            f"(file columns: {', '.join(present)})")
    if "user" not in mapping and not user:
        raise MusicrecError(f"{file.name}: no user column; map one (--map user=COLUMN) or name the listener (--user)")
    if "artist" not in mapping and "artist_name" not in mapping:
        raise MusicrecError(f"{file.name}: no artist column; map one (--map artist=COLUMN)")
    return mapping


def _csv_quoted(raw: bytes, sep: str, source: str, file: str, rejects: Rejects) -> pl.DataFrame:
    """Line by line with the csv module: bad bytes reject their line, wrong field counts their record."""
    def lines():
        for i, b in enumerate(raw.split(b"\n"), 1):
            try:
                yield b.decode("utf-8").rstrip("\r") + "\n"
            except UnicodeDecodeError as exc:
                rejects.add(source, file, i, f"undecodable bytes (not UTF-8): {exc.reason}",
                            b.decode("utf-8", "replace"))
                yield "\n"                              # keeps the reader's line count aligned
    reader = csv.reader(lines(), delimiter=sep)
    header = next(reader, None)
    if not header:
        return pl.DataFrame()
    header = _header(header, file)
    rows, records, raws, reasons = [], [], [], []
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:                      # e.g. a field over the csv module's size limit
            rejects.add(source, file, start, f"unparsable CSV: {exc}")
            start = reader.line_num + 1
            continue
        record, start = start, reader.line_num + 1
        if not row:
            continue
        ok = len(row) == len(header)
        rows.append(row if ok else [None] * len(header))
        records.append(record)
        raws.append(sep.join(row))
        reasons.append(None if ok else f"expected {len(header)} fields, found {len(row)}")
    cols = list(zip(*rows)) if rows else [[] for _ in header]
    data = {h: pl.Series(h, list(c), dtype=pl.String) for h, c in zip(header, cols)}  # h is "c:<name>"
    return pl.DataFrame(data).with_columns(record=pl.Series(records, dtype=pl.Int64),
                                           line=pl.Series(raws, dtype=pl.String),
                                           reason=pl.Series(reasons, dtype=pl.String))


def _header(names: list[str], file: str) -> list[str]:
    """File column names, prefixed so they never collide with the reader's own columns."""
    names = [n.strip().lstrip("\ufeff") for n in names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MusicrecError(f"{Path(file).name}: duplicate column name(s) in the header: {', '.join(map(repr, dup))}")
    return [PREFIX + n for n in names]


def _read_csv(path: Path, source: str, rejects: Rejects) -> pl.DataFrame:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    if b'"' in raw:                         # quoted fields: only a real CSV parser splits them right
        return _csv_quoted(raw, sep, source, str(path), rejects)
    # no quoting: a record is a line, so Polars splits and counts fields exactly
    lines = read_lines(path, source, rejects)
    if lines.height == 0:
        return pl.DataFrame()
    return split_fields(lines.slice(1), _header(lines["line"][0].split(sep), str(path)), sep)


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise MusicrecError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    return df.select(pl.all().name.prefix(PREFIX)).with_columns(
        record=pl.int_range(1, pl.len() + 1, dtype=pl.Int64), reason=pl.lit(None, pl.String),
        line=pl.concat_str([pl.col(PREFIX + c).cast(pl.String).fill_null("") for c in df.columns], separator=","))


def _time_expr(col: str, dtype) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        e = pl.col(col)
        return (e.dt.replace_time_zone("UTC") if dtype.time_zone is None else e.dt.convert_time_zone("UTC")) \
            .cast(pl.Datetime("us", "UTC"))
    if dtype == pl.Date:
        return pl.col(col).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return pl.coalesce(epoch_expr(col), iso_expr(col))


def _one(path: Path, fmt: str, columns, source: str, user: str | None, rejects: Rejects) -> pl.DataFrame:
    df = _read_parquet(path) if fmt == "parquet" else _read_csv(path, source, rejects)
    present = [c[len(PREFIX):] for c in df.columns if c.startswith(PREFIX)]
    if df.height == 0:
        return df
    # canonical name -> the reader's column for it
    m = {canonical: PREFIX + name for canonical, name in _mapping(columns, present, path, user).items()}

    def col(c: str) -> pl.Expr:
        return pl.col(m[c]).cast(pl.String).str.strip_chars().replace("", None) if c in m else pl.lit(None, pl.String)

    def num(c: str) -> pl.Expr:
        if c not in m:
            return pl.lit(None, pl.Int64)
        return int_expr(m[c]) if df.schema[m[c]] == pl.String else pl.col(m[c]).cast(pl.Int64, strict=False)

    def raw(c: str) -> pl.Expr:
        return col(c)   # the stripped text, null when empty

    df = df.with_columns(
        _user=pl.lit(user) if user and "user" not in m else col("user"),
        _artist=col("artist"), _track=col("track"), _session=col("session"),
        _artist_name=col("artist_name"), _track_name=col("track_name"),
        _ts=(_time_expr(m["timestamp"], df.schema[m["timestamp"]]) if "timestamp" in m
             else pl.lit(None, pl.Datetime("us", "UTC"))),
        _count=num("play_count") if "play_count" in m else pl.lit(1, pl.Int64),
        _ms=num("ms_played"),
    )
    df = check(
        df,
        (pl.col("_user").is_null(), "missing user"),
        (pl.col("_artist").is_null() & pl.col("_artist_name").is_null(), "missing artist"),
        (pl.lit("timestamp" in m) & raw("timestamp").is_not_null() & pl.col("_ts").is_null(),
         pl.format("bad timestamp '{}'", raw("timestamp"))),
        (pl.lit("play_count" in m) & raw("play_count").is_null(), "missing play_count"),
        (pl.lit("play_count" in m) & (pl.col("_count").is_null() | (pl.col("_count") < 0)),
         pl.format("bad play_count '{}'", raw("play_count"))),
        (raw("ms_played").is_not_null() & (pl.col("_ms").is_null() | (pl.col("_ms") < 0)),
         pl.format("bad ms_played '{}'", raw("ms_played"))),
    )
    return take_valid(df, source, str(path), rejects).select(
        "record", "_user", "_artist", "_track", "_session", "_artist_name", "_track_name", "_ts", "_count", "_ms")


def read_tabular(path, fmt: str = "csv", columns: dict | None = None, source: str = "csv",
                 user: str | None = None) -> SourceTables:
    """Read a CSV/TSV or Parquet listening log (a file or a folder of them); see the module docstring."""
    if not source or ":" in source:
        raise MusicrecError(f"bad source name {source!r} (want a short name without ':')")
    patterns = ("*.parquet",) if fmt == "parquet" else ("*.csv", "*.tsv")
    files = input_files(path, patterns, fmt)
    rejects = Rejects()
    parts = [p for p in (_one(f, fmt, columns, source, user, rejects) for f in files) if p.height]
    if not parts:
        raise no_rows_error(fmt, files, rejects)
    df = pl.concat(parts)
    prefix = pl.lit(f"{source}:")
    artist_name = pl.coalesce("_artist_name", "_artist")
    df = df.with_columns(
        user_key=prefix + pl.col("_user"),
        artist_key=pl.when(pl.col("_artist").is_not_null()).then(prefix + pl.col("_artist"))
        .otherwise(name_keys(df["_artist_name"])),
        track_key=pl.when(pl.col("_track").is_not_null()).then(prefix + pl.col("_track"))
        .otherwise(track_name_keys(df.select(artist_name).to_series(), df["_track_name"])),
    )
    plays = df.select("user_key", "artist_key", "track_key", timestamp="_ts", play_count="_count",
                      ms_played="_ms", session_key="_session", source_row="record")
    artists = first_per_key(df.select("artist_key", source_id="_artist", name=artist_name), "artist_key")
    tracks = first_per_key(df.select("track_key", "artist_key", source_id="_track",
                                     name=pl.coalesce("_track_name", "_track")), "track_key")
    users = first_per_key(df.select("user_key", source_id="_user"), "user_key")
    return SourceTables(source, plays, artists=artists, tracks=tracks, users=users, rejects=rejects,
                        files=[str(f) for f in files])


def read_csv(path, columns: dict | None = None, source: str = "csv", user: str | None = None) -> SourceTables:
    """CSV (or ``.tsv``) listening log; see the module docstring."""
    return read_tabular(path, "csv", columns, source, user)


def read_parquet(path, columns: dict | None = None, source: str = "csv", user: str | None = None) -> SourceTables:
    """Parquet listening log; see the module docstring."""
    return read_tabular(path, "parquet", columns, source, user)
