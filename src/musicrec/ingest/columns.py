"""Typed columns of a tabular log (Parquet's types, or CSV's text) -> the reader's fields.

Each canonical field accepts a set of column types and converts each one explicitly: a value
that cannot be converted (a float id of 1.5, NaN, a count of 1e30) becomes null, so the
reader's checks reject its row with a reason; a column of a type the field cannot use at all
(a list of artists, a boolean ``ms_played``) is a one-line ``MusicrecError`` naming the column,
its type and the types expected (:func:`check_types`).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.base import MAX_EPOCH_S, epoch_expr, int_expr, iso_expr

TEXT_FIELDS = ("user", "artist", "track", "session", "artist_name", "track_name")
_ACCEPTS = {
    **{f: ({"text", "null", "int", "float"}, "text or whole-number ids") for f in TEXT_FIELDS},
    "timestamp": ({"text", "null", "int", "float", "datetime", "date"},
                  "a datetime, a date, Unix seconds or ISO-8601 text"),
    "play_count": ({"text", "null", "int", "float"}, "a whole number (or its text)"),
    "ms_played": ({"text", "null", "int", "float", "duration"}, "milliseconds as a number or text, or a duration"),
}
_EXACT = 2.0 ** 53          # floats above this are no longer whole numbers one by one
_MIN_DATE, _MAX_DATE = dt.date(1970, 1, 1), dt.date(2100, 1, 1)


def kind(dtype) -> str:
    """The family of a column type: text, null, int, float, datetime, date, duration or other."""
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "text"
    if dtype == pl.Null:
        return "null"
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return "float"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Duration):
        return "duration"
    return "other"


def check_types(fields: dict[str, str], schema, file: str, shown) -> None:
    """Raise ``MusicrecError`` for the first field whose column type it cannot use.

    ``fields``: canonical name -> column; ``shown(column)``: the column's name as the file has it.
    """
    for field, col in fields.items():
        accepts, expected = _ACCEPTS[field]
        if kind(schema[col]) not in accepts:
            raise MusicrecError(f"{file}: column {shown(col)!r} ({field}) has type {schema[col]}; "
                                f"expected {expected}")


def _float(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Float64)


def text_expr(col: str, dtype) -> pl.Expr:
    """An id or name column as stripped text (null when empty); a float is a whole-number id
    written without its ``.0``, and null when it is not one (1.5, NaN)."""
    k = kind(dtype)
    if k == "int":                  # an integer's text is never blank nor padded
        return pl.col(col).cast(pl.String)
    if k == "float":
        x = _float(col)
        whole = x.is_finite() & (x == x.floor()) & (x.abs() < _EXACT)
        return pl.when(whole).then(x.cast(pl.Int64, strict=False).cast(pl.String))
    return pl.col(col).cast(pl.String).str.strip_chars().replace("", None)


def count_expr(col: str, dtype) -> pl.Expr:
    """A whole-number column -> Int64; null when a value is not a whole number or overflows."""
    k = kind(dtype)
    if k == "text":
        return int_expr(col) if dtype == pl.String else pl.col(col).cast(pl.String).pipe(_int_text)
    if k == "float":
        x = _float(col)
        return pl.when(x.is_finite() & (x == x.floor()) & (x.abs() < 2.0 ** 62)).then(x.cast(pl.Int64, strict=False))
    return pl.col(col).cast(pl.Int64, strict=False)


def ms_expr(col: str, dtype) -> pl.Expr:
    """Milliseconds -> Int64: a duration's total milliseconds, a float rounded to the
    millisecond; null when a value is not a finite number or overflows."""
    k = kind(dtype)
    if k == "duration":
        return pl.col(col).dt.total_milliseconds()
    if k == "float":
        x = _float(col)
        return pl.when(x.is_finite() & (x.abs() < 2.0 ** 62)).then(x.round().cast(pl.Int64, strict=False))
    return count_expr(col, dtype)


def _int_text(e: pl.Expr) -> pl.Expr:
    return e.str.strip_chars().cast(pl.Int64, strict=False)


def time_expr(col: str, dtype) -> pl.Expr:
    """A datetime, date, Unix-seconds or text column -> UTC datetime; null when a value is not a
    time or lies outside [1970, 2100) (one range for every type, as for every reader)."""
    k = kind(dtype)
    if k == "datetime":
        e = pl.col(col)
        secs = e.dt.epoch("s")      # checked before any conversion that could overflow
        e = pl.when((secs >= 0) & (secs < MAX_EPOCH_S)).then(e)
        return (e.dt.replace_time_zone("UTC") if dtype.time_zone is None else e.dt.convert_time_zone("UTC")) \
            .cast(pl.Datetime("us", "UTC"))
    if k == "date":
        d = pl.col(col)
        return pl.when((d >= _MIN_DATE) & (d < _MAX_DATE)).then(d).cast(pl.Datetime("us")) \
            .dt.replace_time_zone("UTC")
    if k in ("int", "float"):       # Unix seconds already: no text round trip (a number is never ISO)
        secs = _float(col)
        ok = secs.is_finite() & (secs >= 0) & (secs < MAX_EPOCH_S)
        return pl.when(ok).then((secs * 1_000_000).round().cast(pl.Int64)).cast(pl.Datetime("us")) \
            .dt.replace_time_zone("UTC")
    if k == "null":
        return pl.lit(None, pl.Datetime("us", "UTC"))
    return pl.coalesce(epoch_expr(col), iso_expr(col))


def raw_text(col: str, dtype) -> pl.Expr:
    """A column's values as text for a reject's reason and raw row (a placeholder for nested
    types, which have no text form)."""
    k = kind(dtype)
    if k == "duration":
        return pl.col(col).dt.total_milliseconds().cast(pl.String) + pl.lit(" ms")
    if k == "other":
        return pl.when(pl.col(col).is_not_null()).then(pl.lit(f"<{dtype}>"))
    if k == "text":
        return pl.col(col).cast(pl.String).str.strip_chars().replace("", None)
    return pl.col(col).cast(pl.String)
