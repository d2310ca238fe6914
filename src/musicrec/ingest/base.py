"""What every reader returns: source tables keyed by strings, plus the rows it rejected."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from musicrec import MusicrecError, schema
from musicrec.ingest.archive import shown_path

REJECTS_SCHEMA = {"source": pl.String, "file": pl.String, "record": pl.Int64, "reason": pl.String, "raw": pl.String}


@dataclass
class Rejects:
    """Collects malformed input rows with where they came from and why they were refused."""

    rows: list[dict] = field(default_factory=list)

    def add(self, source: str, file: str, record: int, reason: str, raw: str = "") -> None:
        """Record one rejected row; ``record`` is the 1-based line or JSON record number."""
        self.rows.append({"source": source, "file": shown_path(file), "record": record, "reason": reason,
                          "raw": raw[:500]})

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=REJECTS_SCHEMA) if self.rows else schema.empty(REJECTS_SCHEMA)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SourceTables:
    """Canonical tables from one source, still keyed by string keys (see ``musicrec.schema``).

    Every frame conforms to its ``schema.SOURCE_*`` schema; ``source`` is the reader name.
    """

    source: str
    plays: pl.DataFrame
    artists: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_ARTISTS))
    tracks: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_TRACKS))
    users: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_USERS))
    tags: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_TAGS))
    friends: pl.DataFrame = field(default_factory=lambda: schema.empty(schema.SOURCE_FRIENDS))
    rejects: Rejects = field(default_factory=Rejects)
    files: list[str] = field(default_factory=list)            # input files read, for the store manifest
    skipped: dict[str, int] = field(default_factory=dict)     # rows left out on purpose (not errors), by kind
    #: listener keys the reader made up (the export names nobody and no ``user`` option was given):
    #: the store refuses one it already holds from other input, so two people never merge
    anonymous_users: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.plays = schema.conform(self.plays, schema.SOURCE_PLAYS)
        self.artists = schema.conform(self.artists, schema.SOURCE_ARTISTS)
        self.tracks = schema.conform(self.tracks, schema.SOURCE_TRACKS)
        self.users = schema.conform(self.users, schema.SOURCE_USERS)
        self.tags = schema.conform(self.tags, schema.SOURCE_TAGS)
        self.friends = schema.conform(self.friends, schema.SOURCE_FRIENDS)


def concat_tables(chunks) -> SourceTables:
    """One ``SourceTables`` from chunks of one source read in order (e.g. from a chunked
    reader): plays, tags and friends concatenated; entity tables reduced to one row per key
    (first non-null value wins); rejects, files and skipped counts combined."""
    chunks = list(chunks)
    if not chunks:
        raise MusicrecError("no chunks to combine")

    def entities(name: str, key: str) -> pl.DataFrame:
        return first_per_key(pl.concat([getattr(c, name) for c in chunks]), key)

    rejects, files, skipped = Rejects(), [], {}
    for c in chunks:
        rejects.rows.extend(c.rejects.rows)
        files.extend(f for f in c.files if f not in files)
        for kind, n in c.skipped.items():
            skipped[kind] = skipped.get(kind, 0) + n
    return SourceTables(chunks[0].source, pl.concat([c.plays for c in chunks]),
                        artists=entities("artists", "artist_key"), tracks=entities("tracks", "track_key"),
                        users=entities("users", "user_key"), tags=pl.concat([c.tags for c in chunks]),
                        friends=pl.concat([c.friends for c in chunks]), rejects=rejects, files=files,
                        skipped=skipped)


def name_key(name: str | None) -> str | None:
    """Key for an entity known only by name: case- and whitespace-insensitive."""
    if name is None:
        return None
    norm = " ".join(name.casefold().split())
    return f"name:{norm}" if norm else None


# ---------------------------------------------------------------------------------------------
# Helpers shared by the readers. A reader reads bytes, never trusts a row, and sends each
# malformed row to ``Rejects`` with its 1-based line / record number, keeping every valid row.
# ---------------------------------------------------------------------------------------------

#: Play timestamps outside [1970-01-01, 2100-01-01) are refused on every path (Unix seconds, ISO
#: text, Parquet datetimes and dates): a number outside is almost always milliseconds or garbage,
#: a date outside (year 1, 9999, -2009) is garbage. (HetRec tag dates are day/month/year parts of a
#: tag assignment, not play times, and keep their own check: the real file has tags from 1956.)
MAX_EPOCH_S = 4_102_444_800
TIME_RANGE = "1970-01-01 to 2100-01-01 UTC"
_MIN_TS = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MAX_TS = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
#: The largest millisecond amount a reader accepts (``ms_played``, a track's duration): about
#: 31.7 years; anything above is garbage, and far below where Int64 (or a float) breaks.
MAX_MS = 10**12
#: The largest ``play_count`` one input row may stand for.
MAX_PLAY_COUNT = 10**9
#: JSON deeper than the parser's recursion limit: the reason a record (or file) is refused with.
TOO_DEEP = "JSON nested too deeply"
#: how the reasons of records that could not be parsed at all begin (see ``json_records``)
UNPARSED = ("broken JSON", "undecodable", TOO_DEEP, "unreadable JSON")


def input_files(path, patterns: tuple[str, ...], what: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    """The files a reader should read: ``path`` itself, or the files in folder ``path`` matching
    one of ``patterns`` (searched recursively, sorted), minus names in ``exclude``.

    Raises ``MusicrecError`` when ``path`` is missing or the folder holds no such file.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.exists():
        raise MusicrecError(f"{what}: {path} does not exist")
    if not p.is_dir():
        raise MusicrecError(f"{what}: {path} is not a file or folder")
    found = sorted({f for pat in patterns for f in p.rglob(pat) if f.is_file() and f.name not in exclude})
    if not found:
        raise MusicrecError(f"{what}: no {' or '.join(patterns)} file in folder {path}")
    return found


def read_lines(path, source: str, rejects: Rejects, encoding: str = "utf-8", data: bytes | None = None,
               first_record: int = 1) -> pl.DataFrame:
    """Lines of a text file as a frame ``{record: Int64 (1-based line number), line: String}``.

    Blank lines are dropped. Each line is decoded on its own, so an undecodable byte sequence
    rejects only its line. The usual case (a clean file) is read by Polars without a Python loop;
    only a file with a bad byte sequence takes the slower line-by-line path. ``data``: a block of
    the file's whole lines to read instead of the file, whose first line is line ``first_record``.
    """
    latin1 = encoding.replace("-", "").lower() in ("latin1", "iso88591")
    raw_of = (lambda: data) if data is not None else (lambda: Path(path).read_bytes())
    # latin-1 decodes every byte; re-encoded as UTF-8 it takes the fast path
    source_data = raw_of().decode("latin-1").encode("utf-8") if latin1 else (data if data is not None else str(path))
    try:
        # NUL is the separator: a line holding one (or invalid UTF-8) makes Polars refuse the file
        lines = pl.read_csv(source_data, has_header=False, separator="\x00", quote_char=None,
                            schema={"line": pl.String}, encoding="utf8", raise_if_empty=False,
                            empty_string_is_null=False, glob=False)["line"]
    except pl.exceptions.PolarsError:
        lines = None
    if lines is None:                                   # the slow path, only for a damaged file
        raw = source_data if latin1 else raw_of()
        parts = raw.split(b"\n")
        if parts and parts[-1] == b"":
            parts.pop()
        decoded: list[str | None] = []
        shown = "UTF-8" if encoding.replace("-", "").lower() == "utf8" else encoding   # as the csv path says
        for i, b in enumerate(parts, first_record):
            b = b[:-1] if b.endswith(b"\r") else b
            try:
                decoded.append(b.decode("utf-8"))
            except UnicodeDecodeError as exc:
                rejects.add(source, str(path), i, f"undecodable bytes (not {shown}): {exc.reason}",
                            b.decode("utf-8", "replace"))
                decoded.append(None)
        lines = pl.Series("line", decoded, dtype=pl.String)
    df = lines.to_frame("line").with_row_index("record", offset=first_record) \
        .with_columns(pl.col("record").cast(pl.Int64))
    return df.filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))


def drop_header(lines: pl.DataFrame, header: str, sep: str = "\t") -> pl.DataFrame:
    """Drop the first non-blank line when it is ``header`` (compared field by field, case- and
    space-insensitively); a file without its header is read as data."""
    if lines.height == 0:
        return lines
    first = [f.strip().lower() for f in lines["line"][0].split(sep)]
    if first == [f.lower() for f in header.split(sep)]:
        return lines.slice(1)
    return lines


def split_fields(lines: pl.DataFrame, names: list[str], sep: str = "\t") -> pl.DataFrame:
    """Split ``line`` into columns ``names`` and add ``reason`` (null when the count is right)."""
    n = len(names)
    found = pl.col("line").str.count_matches(sep, literal=True) + 1
    return lines.with_columns(
        pl.col("line").str.split_exact(sep, n - 1).struct.rename_fields(names).alias("_parts"),
        reason=pl.when(found != n)
        .then(pl.format(f"expected {n} {'tab-separated ' if sep == chr(9) else ''}fields, found {{}}", found))
        .otherwise(pl.lit(None, pl.String)),
    ).unnest("_parts")


def check(frame: pl.DataFrame, *rules: tuple[pl.Expr, pl.Expr | str]) -> pl.DataFrame:
    """Fill ``reason`` (keeping a reason already there) with the first failing rule.

    Each rule is ``(is_bad, message)``; ``is_bad`` is a boolean expression (null counts as good)
    and ``message`` a string or string expression naming the value.
    """
    exprs = [pl.col("reason")] if "reason" in frame.columns else []
    for bad, msg in rules:
        # pl.format gives null when a value is null: never let that turn a bad row into a good one
        msg = pl.lit(msg) if isinstance(msg, str) else pl.coalesce(msg, pl.lit("invalid or missing value"))
        exprs.append(pl.when(bad.fill_null(False)).then(msg).otherwise(pl.lit(None, pl.String)))
    return frame.with_columns(reason=pl.coalesce(exprs))


def take_valid(frame: pl.DataFrame, source: str, file: str, rejects: Rejects, raw: str = "line") -> pl.DataFrame:
    """Move rows whose ``reason`` is set to ``rejects`` and return the others (without ``reason``)."""
    bad = frame.filter(pl.col("reason").is_not_null())
    for rec, reason, text in bad.select("record", "reason", pl.col(raw).cast(pl.String)).iter_rows():
        rejects.add(source, file, int(rec), reason, text or "")
    return frame.filter(pl.col("reason").is_null()).drop("reason")


def no_rows_error(what: str, files, rejects: Rejects) -> MusicrecError:
    """One-line error for an input where no row could be used."""
    names = ", ".join(str(f) for f in files) if len(files) <= 3 else f"{len(files)} files"
    if len(rejects):
        r = rejects.rows[0]
        return MusicrecError(f"{what}: no valid rows in {names} ({len(rejects)} rejected; first: "
                             f"{Path(r['file']).name} record {r['record']}: {r['reason']})")
    return MusicrecError(f"{what}: no rows in {names} (empty input?)")


def int_expr(col: str) -> pl.Expr:
    """String column -> Int64, null when it is not an integer (surrounding spaces allowed)."""
    return pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)


def in_time_range(e: pl.Expr) -> pl.Expr:
    """A UTC datetime expression, null outside [1970, 2100) (see ``MAX_EPOCH_S``)."""
    return pl.when((e >= pl.lit(_MIN_TS, schema.UTC_US)) & (e < pl.lit(_MAX_TS, schema.UTC_US))).then(e)


def epoch_expr(col: str) -> pl.Expr:
    """String (or numeric) column of Unix seconds -> UTC datetime; null when not a number or
    outside [1970, 2100)."""
    secs = pl.col(col).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    ok = secs.is_finite() & (secs >= 0) & (secs < MAX_EPOCH_S)
    return pl.when(ok).then((secs * 1_000_000).round().cast(pl.Int64)).cast(pl.Datetime("us")) \
        .dt.replace_time_zone("UTC")


def iso_expr(col: str) -> pl.Expr:
    """ISO-8601 string column -> UTC datetime (``Z``, an offset, or no zone meaning UTC;
    date-only means 00:00 UTC); null when it does not parse or lies outside [1970, 2100)."""
    return in_time_range(_iso_parse(col))


def _iso_parse(col: str) -> pl.Expr:
    e = pl.col(col).cast(pl.String).str.strip_chars()
    naive = pl.Datetime("us")
    return pl.coalesce(
        e.str.strptime(schema.UTC_US, "%Y-%m-%dT%H:%M:%S%.f%#z", strict=False),
        e.str.strptime(naive, "%Y-%m-%dT%H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"),
        e.str.strptime(naive, "%Y-%m-%d %H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"),
        e.str.strptime(naive, "%Y-%m-%d %H:%M", strict=False).dt.replace_time_zone("UTC"),
        e.str.strptime(naive, "%Y-%m-%d", strict=False).dt.replace_time_zone("UTC"),
    )


def with_iso(df: pl.DataFrame, col: str, out: str) -> pl.DataFrame:
    """``df`` plus column ``out`` = ``iso_expr(col)``, trying the common ISO form alone first
    (several formats cost several parses of every row)."""
    first = df.select(pl.col(col).cast(pl.String).str.strip_chars()
                      .str.strptime(schema.UTC_US, "%Y-%m-%dT%H:%M:%S%.f%#z", strict=False)).to_series()
    if first.null_count() == df[col].null_count():
        return df.with_columns(first.alias(out)).with_columns(in_time_range(pl.col(out)))
    return df.with_columns(iso_expr(col).alias(out))


def name_keys(names: pl.Series) -> pl.Series:
    """``name_key`` over a whole column (computed once per distinct name)."""
    uniq = names.drop_nulls().unique()
    keys = [name_key(v) for v in uniq.to_list()]
    return names.replace_strict(uniq, pl.Series(keys, dtype=pl.String), default=None, return_dtype=pl.String)


def track_name_keys(artists: pl.Series, tracks: pl.Series) -> pl.Series:
    """Key of a track known only by names: ``"name:<artist>|<track>"`` (both normalised like
    ``name_key``); null when the track name is missing."""
    a = name_keys(artists).str.strip_prefix("name:").fill_null("")
    t = name_keys(tracks).str.strip_prefix("name:")
    return pl.select(pl.when(t.is_not_null()).then(pl.lit("name:") + a + "|" + t)).to_series().alias(tracks.name)


_SURROGATE = re.compile("[\udc80-\udcff]")


def json_records(path, source: str, rejects: Rejects) -> Iterator[tuple[int, object]]:
    """Records of a JSON file: JSON lines (``.jsonl``/``.ndjson``, or several objects one per
    line; record = line number), a JSON array (record = 1-based position), or one object
    (``{"payload": {"listens": [...]}}``, an API answer, is unwrapped).

    Broken JSON, undecodable bytes and JSON nested deeper than the parser's recursion limit
    reject only their record; in an array, a break that makes the rest unreadable (a truncated
    file) rejects that record and ends the file.
    """
    raw = Path(path).read_bytes()
    text = raw.decode("utf-8", "surrogateescape").lstrip("\ufeff")  # bad bytes -> lone surrogates
    start = len(text) - len(text.lstrip())
    file = str(path)
    first_line = text[start:].split("\n", 1)[0]
    if Path(path).suffix.lower() in (".jsonl", ".ndjson") or (first_line.startswith("[") and _parses(first_line)
                                                              and text[start + len(first_line):].strip()):
        yield from _json_lines(text, source, file, rejects)
        return
    if text[start:start + 1] == "{":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None                                  # several objects: JSON lines
        if isinstance(obj, dict):
            inner = obj.get("payload", {}).get("listens") if isinstance(obj.get("payload"), dict) else None
            yield from enumerate(inner, 1) if isinstance(inner, list) else [(1, obj)]
            return
    if text[start:start + 1] == "[":
        yield from _json_array(text, start + 1, source, file, rejects)
        return
    yield from _json_lines(text, source, file, rejects)


_UNPAIRED = re.compile("[\ud800-\udfff]")


def unpaired_surrogate(row: dict) -> str | None:
    """Reason when a text value of a parsed JSON record holds an unpaired surrogate escape
    (``"\\ud800"``: valid JSON, but not Unicode text any table can store); else None."""
    for key, v in row.items():
        if isinstance(v, str) and _UNPAIRED.search(v):
            return f"bad {key}: an unpaired surrogate escape (not Unicode text)"
    return None


def json_raw(rec) -> str:
    """A parsed record as JSON text for a reject's ``raw`` (never raises)."""
    try:
        return _UNPAIRED.sub("\ufffd", json.dumps(rec, ensure_ascii=False)[:500])
    except (ValueError, TypeError, RecursionError):
        return repr(type(rec))


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except (ValueError, RecursionError):
        return False


def _json_error(exc: Exception) -> str:
    """Reject reason for a record ``json`` could not load."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    if isinstance(exc, json.JSONDecodeError):
        return f"broken JSON: {exc.msg} at column {exc.colno}"
    return f"unreadable JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _json_lines(text: str, source: str, file: str, rejects: Rejects) -> Iterator[tuple[int, object]]:
    for i, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        if _SURROGATE.search(line):
            rejects.add(source, file, i, "undecodable bytes (not UTF-8)", _printable(line))
            continue
        try:
            yield i, json.loads(line)
        except (ValueError, RecursionError) as exc:
            rejects.add(source, file, i, _json_error(exc), line)


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _value_end(text: str, pos: int) -> int:
    """End of the JSON array or object starting at ``pos`` found by matching brackets outside
    strings (for a value too deep to parse); -1 when it never closes."""
    depth = 0
    for m in _BRACKETS.finditer(text, pos):
        t = m.group()
        if t in ("[", "{"):
            depth += 1
        elif t in ("]", "}"):
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


def _json_array(text: str, pos: int, source: str, file: str, rejects: Rejects) -> Iterator[tuple[int, object]]:
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    record = 0
    pos = ws.match(text, pos).end()
    if text[pos:pos + 1] == "]":
        return
    while True:
        record += 1
        deep = False
        try:
            obj, end = decoder.raw_decode(text, pos)
        except RecursionError:
            deep = True
            end = _value_end(text, pos) if text[pos:pos + 1] in ("[", "{") else -1
            rest = "" if end >= 0 else " (the rest of the file is unreadable)"
            rejects.add(source, file, record, TOO_DEEP + rest, _printable(text[pos:pos + 500]))
            if end < 0:
                return
        except ValueError as exc:
            rejects.add(source, file, record, f"{_json_error(exc).split(' at column')[0]} "
                        "(the rest of the file is unreadable)", _printable(text[pos:pos + 500]))
            return
        if deep:
            pass                                         # rejected above
        elif _SURROGATE.search(text, pos, end):
            rejects.add(source, file, record, "undecodable bytes (not UTF-8)", _printable(text[pos:end]))
        else:
            yield record, obj
        pos = ws.match(text, end).end()
        sep = text[pos:pos + 1]
        if sep == "]":
            return
        if sep != ",":
            rejects.add(source, file, record + 1,
                        "broken JSON: expected ',' or ']' (the rest of the file is unreadable)",
                        _printable(text[pos:pos + 500]))
            return
        pos = ws.match(text, pos + 1).end()


def _printable(s: str) -> str:
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def first_per_key(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per non-null ``key``: each other column's first non-null value, in first-seen order."""
    others = [c for c in df.columns if c != key]
    return (df.filter(pl.col(key).is_not_null())
            .group_by(key, maintain_order=True).agg([pl.col(c).drop_nulls().first() for c in others]))
