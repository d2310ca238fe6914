"""Any listening log as a CSV (``.csv``, ``.tsv``) or Parquet file, one listen or count per row.

The ``columns`` option maps canonical names to the file's columns; a canonical name the file
already uses needs no mapping:

=============  ===========================================================================
user           listener id (required unless the ``user`` option names one listener)
artist         artist id or name (``artist`` or ``artist_name`` is required)
track          track id or name (optional: without it the data is artist-level)
timestamp      Unix seconds or ISO-8601 (``Z``/offset, or none meaning UTC); optional
play_count     plays the row stands for (default 1; at most ``MAX_PLAY_COUNT``)
ms_played      milliseconds listened (at most ``MAX_MS``; a Parquet duration is converted)
session        the source's session id
artist_name    display name of the artist (default: the ``artist`` value)
track_name     display name of the track (default: the ``track`` value)
=============  ===========================================================================

Keys are ``<source>:<value>`` (``source`` option, default ``"csv"`` for both formats so the same
log as CSV or Parquet merges). With only ``artist_name`` / ``track_name`` columns, keys are
name keys (``name:<artist>``, ``name:<artist>|<track>``) that merge with other sources' names.

Every field is converted, bounded and type-checked (``musicrec.ingest.columns``): a bad value
rejects its row with a reason; a Parquet column of a type its field cannot use (a list, a
struct, a boolean) is a one-line error naming it. Timestamps must lie in [1970, 2100), on every
path (Unix seconds, ISO text, Parquet datetimes and dates).

CSV record numbers are physical line numbers (the header is line 1; a quoted field holding
line breaks is counted correctly). A CSV without any ``"`` is split by Polars; one with quoting
goes through Python's ``csv`` module, which checks that quoting did not desynchronise: a quote
never closed (or closed rows later) rejects its line with the reason and the lines it swallowed
are read again (see :func:`_csv_quoted`). Parquet record numbers are 1-based row numbers.

:func:`iter_tabular` reads the same input as chunks, so a store can ingest a log of any size
(``musicrec.store.Store.ingest_chunks``): one per file, one per ``CHUNK_ROWS`` rows of a bigger
Parquet file, and one per block of ``CSV_CHUNK_BYTES`` of whole lines of a bigger CSV file (from
the first block holding a ``"`` on, the csv module reads ``QUOTED_CHUNK_ROWS`` records at a
time, since a quoted field may span lines). :func:`read_tabular` is all chunks combined.
"""

from __future__ import annotations

import collections
import csv
import itertools
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from musicrec import MusicrecError, schema
from musicrec.ingest.base import (MAX_MS, MAX_PLAY_COUNT, TIME_RANGE, Rejects, SourceTables, check,
                                  concat_tables, first_per_key, input_files, name_keys, no_rows_error, read_lines,
                                  split_fields, take_valid, track_name_keys)
from musicrec.ingest.columns import (TEXT_FIELDS, check_types, count_expr, kind, ms_expr, raw_text, text_expr,
                                     time_expr)

PREFIX = "c:"        # file columns inside the reader: "c:<name>"
#: rows per chunk of a big Parquet file (bounded memory: a chunk's strings, not the file's)
CHUNK_ROWS = 2_000_000
#: bytes per block of a big CSV file, and records per chunk of one that holds quotes (those go
#: through Python's csv module, which holds every field as a Python string)
CSV_CHUNK_BYTES = 128 << 20
QUOTED_CHUNK_ROWS = 500_000
BOM = b"\xef\xbb\xbf"
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


class _Lines:
    """The lines fed to ``csv.reader`` (``(line number, text)`` pairs in, text out): remembers
    which lines the current record used, and takes lines back to be read again."""

    def __init__(self, numbered: Iterator[tuple[int, str]]):
        self.numbered, self.pending, self.used = numbered, collections.deque(), []
        self.exhausted = False       # the current record asked past the last line (only inside a quote)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pending:
            item = self.pending.popleft()
        else:
            try:
                item = next(self.numbered)
            except StopIteration:
                self.exhausted = True
                raise
        self.used.append(item)
        return item[1]

    def take(self) -> list[tuple[int, str]]:
        """The lines the record just read used; starts the next record."""
        used, self.used, self.exhausted = self.used, [], False
        return used

    def again(self, lines: list[tuple[int, str]]) -> None:
        self.pending.extendleft(reversed(lines))


def _is_record(text: str, sep: str, n: int) -> bool:
    """Whether one line read alone is a whole record of ``n`` fields."""
    return n > 1 and len(next(csv.reader([text], delimiter=sep), [])) == n


def _csv_quoted(byte_lines: Iterator[bytes], sep: str, source: str, file: str, first_line: int = 1,
                header: list[str] | None = None,
                chunk_rows: int | None = None) -> Iterator[tuple[pl.DataFrame, Rejects]]:
    """Line by line with the csv module: bad bytes reject their line, wrong field counts their record.

    ``byte_lines``: the file's lines (without ``\\n``) from physical line ``first_line``;
    ``header``: the reader's column names when they were read already. Yields each
    ``chunk_rows`` records (all when None) as a frame with the rejects found meanwhile.

    A quote that is never closed (or closed rows later) makes the csv module read every line
    up to the next quote as one field. A record spanning lines of which one, read alone, is a
    whole record is taken for such a desynchronisation: its first line is rejected with the
    reason and the lines after it are read again, so no other row is lost.
    """
    state = {"rejects": Rejects()}

    def numbered():
        for i, b in enumerate(byte_lines, first_line):
            try:
                yield i, b.decode("utf-8").rstrip("\r") + "\n"
            except UnicodeDecodeError as exc:
                state["rejects"].add(source, file, i, f"undecodable bytes (not UTF-8): {exc.reason}",
                                     b.decode("utf-8", "replace"))
                yield i, "\n"                          # keeps the line numbers aligned
    lines = _Lines(numbered())
    reader = csv.reader(lines, delimiter=sep)
    if header is None:
        names = next(reader, None)
        if not names:
            yield pl.DataFrame(), state["rejects"]
            return
        used = lines.take()
        if len(used) > 1:
            raise MusicrecError(f"{Path(file).name}: the header (line {used[0][0]}) has an unclosed quote: "
                                f"read as CSV it runs over {len(used) - 1} more line(s)")
        header = _header(names, file)
    rows, records, raws, reasons = [], [], [], []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:                      # e.g. a field over the csv module's size limit
            used = lines.take()
            if not used:
                break
            again = (f" (an unclosed quote?); line {used[0][0]} rejected, the {len(used) - 1} line(s) after it "
                     "read again") if len(used) > 1 else ""
            state["rejects"].add(source, file, used[0][0], f"unparsable CSV: {exc}{again}", used[0][1][:-1])
            lines.again(used[1:])
            continue
        ended_in_quote = lines.exhausted
        used = lines.take()
        if not row:
            continue
        record = used[0][0]
        if len(used) > 1 and any(_is_record(text, sep, len(header)) for _, text in used[1:]):
            state["rejects"].add(source, file, record,
                                 f"unclosed quote: a quoted field opened on line {record} ran over "
                                 f"{len(used) - 1} line(s) holding records of their own; line {record} "
                                 "rejected, the lines after it read again", used[0][1][:-1])
            lines.again(used[1:])
            continue
        if ended_in_quote:                            # every line ends in "\n": the file ended in a quote
            state["rejects"].add(source, file, record, f"unclosed quote: the quoted field opened on line {record} "
                                 "is never closed (the file ends inside it)", used[0][1][:-1])
            continue
        ok = len(row) == len(header)
        rows.append(row if ok else [None] * len(header))
        records.append(record)
        raws.append(sep.join(row))
        reasons.append(None if ok else f"expected {len(header)} fields, found {len(row)}")
        if chunk_rows and len(rows) >= chunk_rows:
            yield _quoted_frame(header, rows, records, raws, reasons), state["rejects"]
            state["rejects"] = Rejects()
            rows, records, raws, reasons = [], [], [], []
    yield _quoted_frame(header, rows, records, raws, reasons), state["rejects"]


def _quoted_frame(header, rows, records, raws, reasons) -> pl.DataFrame:
    cols = list(zip(*rows)) if rows else [[] for _ in header]
    data = {h: pl.Series(h, list(c), dtype=pl.String) for h, c in zip(header, cols)}  # h is "c:<name>"
    return pl.DataFrame(data).with_columns(record=pl.Series(records, dtype=pl.Int64),
                                           line=pl.Series(raws, dtype=pl.String),
                                           reason=pl.Series(reasons, dtype=pl.String))


def _split_lines(blocks) -> Iterator[bytes]:
    """``b"".join(blocks).split(b"\\n")``, one line at a time."""
    rest = b""
    for data in blocks:
        *lines, rest = (rest + data).split(b"\n")
        yield from lines
    yield rest


def _header(names: list[str], file: str) -> list[str]:
    """File column names, prefixed so they never collide with the reader's own columns."""
    names = [n.strip().lstrip("\ufeff") for n in names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MusicrecError(f"{Path(file).name}: duplicate column name(s) in the header: {', '.join(map(repr, dup))}")
    return [PREFIX + n for n in names]


def _csv_chunks(path: Path, source: str, chunk_bytes: int) -> Iterator[tuple[pl.DataFrame, Rejects]]:
    """The file's records with reader columns and the rows refused while reading them: the
    whole file at once up to ``chunk_bytes`` bytes, else a block of whole lines at a time."""
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    if path.stat().st_size > chunk_bytes:
        yield from _csv_blocks(path, sep, source, chunk_bytes)
        return
    raw = path.read_bytes()
    if raw.startswith(BOM):
        raw = raw[3:]
    if b'"' in raw:                         # quoted fields: only a real CSV parser splits them right
        yield from _csv_quoted(iter(raw.split(b"\n")), sep, source, str(path))
        return
    # no quoting: a record is a line, so Polars splits and counts fields exactly
    rejects = Rejects()
    lines = read_lines(path, source, rejects)
    if lines.height == 0:
        yield pl.DataFrame(), rejects
        return
    yield split_fields(lines.slice(1), _header(lines["line"][0].split(sep), str(path)), sep), rejects


def _csv_blocks(path: Path, sep: str, source: str, chunk_bytes: int) -> Iterator[tuple[pl.DataFrame, Rejects]]:
    """A big CSV block by block (cut after a line break). From the first block holding a
    ``"`` on, the csv module reads the rest (a quoted field may hold line breaks)."""
    with open(path, "rb") as fh:
        line_no, header, carry, first = 1, None, b"", True
        while True:
            data = fh.read(chunk_bytes)
            block = carry + data
            if first:
                first = False
                block = block[3:] if block.startswith(BOM) else block
            if data:
                cut = block.rfind(b"\n")
                if cut < 0:                      # a line longer than a block: read on
                    carry = block
                    continue
                block, carry = block[:cut + 1], block[cut + 1:]
            else:
                carry = b""
            if not block:
                return
            if b'"' in block:
                rest = iter(lambda: fh.read(chunk_bytes), b"")
                yield from _csv_quoted(_split_lines(itertools.chain([block + carry], rest)), sep, source,
                                       str(path), first_line=line_no, header=header,
                                       chunk_rows=QUOTED_CHUNK_ROWS)
                return
            rejects = Rejects()
            lines = read_lines(path, source, rejects, data=block, first_record=line_no)
            line_no += block.count(b"\n")
            if header is None and lines.height:
                header = _header(lines["line"][0].split(sep), str(path))
                lines = lines.slice(1)
            yield (split_fields(lines, header, sep) if header is not None else pl.DataFrame()), rejects


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The file's rows, ``chunk_rows`` at a time, with reader columns (record = 1-based row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def bad(exc: Exception) -> MusicrecError:
        return MusicrecError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})")

    try:
        pf = pq.ParquetFile(path)
        n_rows = pf.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise bad(exc) from None
    if n_rows <= chunk_rows:
        try:
            yield _with_reader_columns(pl.read_parquet(path), 0)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise bad(exc) from None
        return
    offset = 0
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            df = pl.from_arrow(batch)
            yield _with_reader_columns(df, offset)
            offset += df.height
    except (pa.ArrowException, OSError) as exc:
        raise bad(exc) from None


def _with_reader_columns(df: pl.DataFrame, offset: int) -> pl.DataFrame:
    # no "line" column: ``_one`` writes the raw text of rejected rows only
    return df.select(pl.all().name.prefix(PREFIX)).with_columns(
        record=pl.int_range(offset + 1, offset + pl.len() + 1, dtype=pl.Int64), reason=pl.lit(None, pl.String))


def _one(df: pl.DataFrame, path: Path, columns, source: str, user: str | None, rejects: Rejects) -> pl.DataFrame:
    """Valid rows of one chunk (reader columns in, ``_user``, ``_artist``, ... out); the others
    go to ``rejects``."""
    present = [c[len(PREFIX):] for c in df.columns if c.startswith(PREFIX)]
    if df.height == 0:
        return df
    # canonical name -> the reader's column for it
    m = {canonical: PREFIX + name for canonical, name in _mapping(columns, present, path, user).items()}
    types = df.schema
    check_types(m, types, path.name, lambda c: c[len(PREFIX):])

    def col(c: str) -> pl.Expr:
        return text_expr(m[c], types[m[c]]) if c in m else pl.lit(None, pl.String)

    def raw(c: str) -> pl.Expr:         # the value as text, null when empty
        return raw_text(m[c], types[m[c]]) if c in m else pl.lit(None, pl.String)

    df = df.with_columns(
        _user=pl.lit(user) if user and "user" not in m else col("user"),
        _artist=col("artist"), _track=col("track"), _session=col("session"),
        _artist_name=col("artist_name"), _track_name=col("track_name"),
        _ts=(time_expr(m["timestamp"], types[m["timestamp"]]) if "timestamp" in m
             else pl.lit(None, pl.Datetime("us", "UTC"))),
        _count=count_expr(m["play_count"], types[m["play_count"]]) if "play_count" in m else pl.lit(1, pl.Int64),
        _ms=ms_expr(m["ms_played"], types[m["ms_played"]]) if "ms_played" in m else pl.lit(None, pl.Int64),
    )
    # a value a text field could not use (a float id of 1.5, NaN): its row is rejected
    unusable = [(raw(c).is_not_null() & pl.col("_" + c).is_null(),
                 pl.format(f"bad {c} '{{}}' (want text or a whole-number id)", raw(c)))
                for c in TEXT_FIELDS if c in m and kind(types[m[c]]) == "float"]
    df = check(
        df,
        *unusable,
        (pl.col("_user").is_null(), "missing user"),
        (pl.col("_artist").is_null() & pl.col("_artist_name").is_null(), "missing artist"),
        (pl.lit("timestamp" in m) & raw("timestamp").is_not_null() & pl.col("_ts").is_null(),
         pl.format(f"bad timestamp '{{}}' (want Unix seconds or ISO-8601 from {TIME_RANGE})", raw("timestamp"))),
        (pl.lit("play_count" in m) & raw("play_count").is_null(), "missing play_count"),
        (pl.lit("play_count" in m) & (pl.col("_count").is_null() | (pl.col("_count") < 0)
                                      | (pl.col("_count") > MAX_PLAY_COUNT)),
         pl.format(f"bad play_count '{{}}' (want a whole number from 0 to {MAX_PLAY_COUNT})", raw("play_count"))),
        (raw("ms_played").is_not_null() & (pl.col("_ms").is_null() | (pl.col("_ms") < 0)
                                            | (pl.col("_ms") > MAX_MS)),
         pl.format(f"bad ms_played '{{}}' (want milliseconds from 0 to {MAX_MS})", raw("ms_played"))),
    )
    if "line" not in df.columns:    # Parquet: the row as text, for the rejected rows only
        fields = [raw_text(PREFIX + c, types[PREFIX + c]).fill_null("") for c in present]
        bad = df.filter(pl.col("reason").is_not_null()).with_columns(line=pl.concat_str(fields, separator=","))
        take_valid(bad, source, str(path), rejects)
        df = df.filter(pl.col("reason").is_null()).with_columns(line=pl.lit(None, pl.String))
    return take_valid(df, source, str(path), rejects).select(
        "record", "_user", "_artist", "_track", "_session", "_artist_name", "_track_name", "_ts", "_count", "_ms")


def iter_tabular(path, fmt: str = "csv", columns: dict | None = None, source: str = "csv",
                 user: str | None = None, chunk_rows: int | None = None) -> Iterator[SourceTables]:
    """Read a CSV/TSV or Parquet listening log (a file or a folder of them) as chunks: one per
    file, and one per ``chunk_rows`` rows of a bigger Parquet file (see the module docstring).

    Every file yields at least one chunk (maybe without plays), so each input file is listed
    once in some chunk's ``files``. Raises ``MusicrecError`` at the end when no row was valid.
    ``chunk_rows`` defaults to ``CHUNK_ROWS``.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    if not source or ":" in source:
        raise MusicrecError(f"bad source name {source!r} (want a short name without ':')")
    patterns = ("*.parquet",) if fmt == "parquet" else ("*.csv", "*.tsv")
    files = input_files(path, patterns, fmt)
    seen = Rejects()              # every chunk's rejects, for the error when nothing was valid
    any_rows = False
    for f in files:
        if fmt == "parquet":
            frames = ((df, Rejects()) for df in _parquet_chunks(f, chunk_rows))
        else:
            frames = _csv_chunks(f, source, CSV_CHUNK_BYTES)
        for df, rejects in frames:
            df = _one(df, f, columns, source, user, rejects) if df.height else pl.DataFrame()
            seen.rows.extend(rejects.rows)
            any_rows = any_rows or df.height > 0
            yield _tables(df, source, rejects, [str(f)])
    if not any_rows:
        raise no_rows_error(fmt, files, seen)


def _tables(df: pl.DataFrame, source: str, rejects: Rejects, files: list[str]) -> SourceTables:
    """A chunk's valid rows (from ``_one``) as keyed source tables."""
    if df.height == 0:
        return SourceTables(source, schema.empty(schema.SOURCE_PLAYS), rejects=rejects, files=files)
    prefix = pl.lit(f"{source}:")
    artist_name = pl.coalesce("_artist_name", "_artist")
    # name keys (a Python call per distinct name) only when some row has no id to key on
    no_artist_id, no_track_id = df["_artist"].null_count() > 0, df["_track"].null_count() > 0
    df = df.with_columns(
        user_key=prefix + pl.col("_user"),
        artist_key=pl.when(pl.col("_artist").is_not_null()).then(prefix + pl.col("_artist"))
        .otherwise(name_keys(df["_artist_name"]) if no_artist_id else pl.lit(None, pl.String)),
        track_key=pl.when(pl.col("_track").is_not_null()).then(prefix + pl.col("_track"))
        .otherwise(track_name_keys(df.select(artist_name).to_series(), df["_track_name"]) if no_track_id
                   else pl.lit(None, pl.String)),
    )
    plays = df.select("user_key", "artist_key", "track_key", timestamp="_ts", play_count="_count",
                      ms_played="_ms", session_key="_session", source_row="record")
    artists = first_per_key(df.select("artist_key", source_id="_artist", name=artist_name), "artist_key")
    tracks = first_per_key(df.select("track_key", "artist_key", source_id="_track",
                                     name=pl.coalesce("_track_name", "_track")), "track_key")
    users = first_per_key(df.select("user_key", source_id="_user"), "user_key")
    return SourceTables(source, plays, artists=artists, tracks=tracks, users=users, rejects=rejects, files=files)


def read_tabular(path, fmt: str = "csv", columns: dict | None = None, source: str = "csv",
                 user: str | None = None) -> SourceTables:
    """Read a CSV/TSV or Parquet listening log (a file or a folder of them); see the module docstring."""
    return concat_tables(iter_tabular(path, fmt, columns, source, user))


def read_csv(path, columns: dict | None = None, source: str = "csv", user: str | None = None) -> SourceTables:
    """CSV (or ``.tsv``) listening log; see the module docstring."""
    return read_tabular(path, "csv", columns, source, user)


def read_parquet(path, columns: dict | None = None, source: str = "csv", user: str | None = None) -> SourceTables:
    """Parquet listening log; see the module docstring."""
    return read_tabular(path, "parquet", columns, source, user)


def iter_csv(path, columns: dict | None = None, source: str = "csv", user: str | None = None) -> Iterator[SourceTables]:
    """CSV (or ``.tsv``) listening log as chunks (one per file); see :func:`iter_tabular`."""
    return iter_tabular(path, "csv", columns, source, user)


def iter_parquet(path, columns: dict | None = None, source: str = "csv",
                 user: str | None = None) -> Iterator[SourceTables]:
    """Parquet listening log as chunks (per file, and per ``CHUNK_ROWS`` rows of a bigger file);
    see :func:`iter_tabular`."""
    return iter_tabular(path, "parquet", columns, source, user)
