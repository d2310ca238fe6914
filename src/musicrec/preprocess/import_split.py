"""Import an externally made train / valid / test split (e.g. a paper's published files).

The files hold the source's original ids (artist ids for HetRec, track ids for 30Music);
they are mapped to store ids so models, names and tags work as for a built-in protocol.
Nothing is filtered: the evaluation must be about exactly these rows.
"""

from __future__ import annotations

import os

import polars as pl

from musicrec import MusicrecError, schema
from musicrec.preprocess.split import catalog, open_store, user_table
from musicrec.preprocess.splitset import Split

REQUIRED = ("user_id", "item_id")
# Column names are matched ignoring case and underscores, so session-rec style headers
# (UserId, ItemId, SessionId, Time) import as they are.
ALIASES = {"userid": "user_id", "itemid": "item_id", "weight": "weight", "sessionid": "session_id",
           "timestamp": "timestamp", "time": "timestamp"}


def read_split_file(path: str) -> pl.DataFrame:
    """A split file as string columns named ``user_id, item_id[, weight, session_id, timestamp]``.

    Parquet by extension (``.parquet``, ``.pq``); otherwise delimited text with a header,
    tab- or comma-separated (sniffed from the header line).
    """
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        raise MusicrecError(f"{path}: no such file")
    with fs.open(fs_path, "rb") as fh:
        data = fh.read()
    if path.lower().endswith((".parquet", ".pq")):
        df = pl.read_parquet(data)
        df = df.select(pl.all().cast(pl.String))
    else:
        header = data.split(b"\n", 1)[0]
        sep = "\t" if b"\t" in header else ","
        try:
            df = pl.read_csv(data, separator=sep, infer_schema=False)
        except pl.exceptions.PolarsError as exc:
            raise MusicrecError(f"{path}: cannot read as {'TSV' if sep == chr(9) else 'CSV'}: {exc}") from None
    rename = {}
    for col in df.columns:
        canonical = ALIASES.get(col.strip().lower().replace("_", "").replace(" ", ""))
        if canonical and canonical not in rename.values():
            rename[col] = canonical
    df = df.select([pl.col(c).alias(n) for c, n in rename.items()])
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise MusicrecError(f"{path}: missing required column(s) {', '.join(missing)} "
                            f"(a header with user_id, item_id and optional weight, session_id, timestamp)")
    return df.with_columns(pl.col(c).str.strip_chars() for c in df.columns)


def _parse(df: pl.DataFrame, path: str) -> pl.DataFrame:
    """Typed weight (float, default 1) and timestamp (Unix seconds -> UTC datetime)."""
    out = df.with_columns(
        (pl.col("weight") if "weight" in df.columns else pl.lit("1")).alias("weight"),
        (pl.col("timestamp") if "timestamp" in df.columns else pl.lit(None, pl.String)).alias("timestamp"),
        (pl.col("session_id") if "session_id" in df.columns else pl.lit(None, pl.String)).alias("session_id"),
    )
    try:
        return out.with_columns(
            pl.col("weight").cast(pl.Float64).fill_null(1.0),
            (pl.col("timestamp").cast(pl.Float64) * 1e6).cast(pl.Int64).cast(schema.UTC_US),
        )
    except pl.exceptions.PolarsError:
        raise MusicrecError(f"{path}: weight and timestamp must be numbers (timestamp in Unix seconds)") from None


def _restrict(table: pl.DataFrame, id_col: str, plays: pl.LazyFrame, source: str | None) -> pl.DataFrame:
    """Rows of ``table`` whose id occurs in plays of ``source`` (all rows when None)."""
    if source is None:
        return table
    ids = plays.filter(pl.col("source") == source).select(pl.col(id_col).unique()).collect()
    return table.join(ids, on=id_col, how="semi")


def _lookup(table: pl.DataFrame, id_col: str) -> pl.DataFrame:
    """``orig -> id`` pairs from a store table's ``source_id`` and ``key`` columns."""
    return pl.concat([
        table.select(pl.col("source_id").alias("orig"), pl.col(id_col).alias("id")),
        table.select(pl.col("key").alias("orig"), pl.col(id_col).alias("id")),
    ]).drop_nulls().unique()


def _map_ids(values: pl.Series, lookup: pl.DataFrame, what: str, sources: list[str]) -> tuple[pl.DataFrame, int]:
    """``orig -> id`` for every distinct value; unknown values get ids -1, -2, ... (sorted)."""
    wanted = pl.DataFrame({"orig": values.unique().sort()})
    hits = wanted.join(lookup, on="orig", how="inner")
    ambiguous = hits.filter(pl.len().over("orig") > 1)["orig"].unique().sort()
    if len(ambiguous):
        raise MusicrecError(
            f"{len(ambiguous)} {what} id(s) match several store ids (e.g. {ambiguous[0]!r}); "
            f"pass the source, one of: {', '.join(sources)}")
    unknown = wanted.join(hits, on="orig", how="anti")
    new = unknown.with_columns((-1 - pl.int_range(pl.len(), dtype=pl.Int64)).alias("id"))
    return pl.concat([hits, new]), unknown.height


def _session_ids(parts: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """Int64 session ids: the file's own when numeric and never shared by two users, else
    a dense numbering of (user, session)."""
    sessions = pl.concat([p.select("user_id", "session_id") for p in parts]).drop_nulls().unique()
    numeric = sessions["session_id"].cast(pl.Int64, strict=False)
    if numeric.null_count() == 0 and sessions.height == sessions["session_id"].n_unique():
        return [p.with_columns(pl.col("session_id").cast(pl.Int64)) for p in parts]
    ids = sessions.sort("user_id", "session_id").with_row_index("_sid").with_columns(pl.col("_sid").cast(pl.Int64))
    return [p.join(ids, on=["user_id", "session_id"], how="left", maintain_order="left")
            .with_columns(pl.col("_sid").alias("session_id")).drop("_sid") for p in parts]


def import_split(
    store_url: str,
    train: str,
    test: str,
    valid: str | None = None,
    item_level: str | None = None,
    source: str | None = None,
    out: str | None = None,
) -> Split:
    """Build a :class:`Split` from external train / test (/ valid) files.

    Parameters
    ----------
    store_url : str
        The store whose ``users``, ``artists`` / ``tracks`` tables map original ids.
    train, test, valid : str
        Paths or URLs of TSV / CSV / Parquet files (see :func:`read_split_file`).
    item_level : {"artist", "track"}, optional
        What ``item_id`` holds; by default the level whose store ids match more of the
        file's item ids.
    source : str, optional
        Reader name (``plays.source``) whose ids the files use; needed when an original id
        exists in several sources of the store.
    out : str, optional
        Save the split there.

    Returns
    -------
    Split with ``meta["protocol"] = "import"`` and ``evaluation = "session"`` when the test
    file has session ids. Ids unknown to the store are kept with new negative ids (items
    named by their original id); ``meta["unknown"]`` counts them.
    """
    if item_level not in (None, "artist", "track"):
        raise MusicrecError(f"unknown item level {item_level!r}; choose artist or track")
    paths = {"train": train, "test": test, "valid": valid}
    raw = {name: read_split_file(p) for name, p in paths.items() if p is not None}
    for name, label in (("train", "training"), ("test", "test"), ("valid", "validation")):
        if name in raw and raw[name].height == 0:
            fix = " (or leave --valid out)" if name == "valid" else ""
            raise MusicrecError(f"the {label} part is empty: {paths[name]} has a header but no rows; "
                                f"give a --{name} file with rows{fix}")
    has_session = "session_id" in raw["test"].columns
    frames = {name: _parse(df, paths[name]) for name, df in raw.items()}

    store = open_store(store_url)
    plays = store.scan("plays")
    sources = sorted(plays.select(pl.col("source").unique()).collect()["source"].drop_nulls().to_list())
    if source is not None and source not in sources:
        raise MusicrecError(f"source {source!r} not in the store; it has: {', '.join(sources) or 'none'}")

    all_rows = pl.concat(list(frames.values()))
    users = _lookup(_restrict(store.table("users"), "user_id", plays, source), "user_id")
    user_map, n_unknown_users = _map_ids(all_rows["user_id"], users, "user", sources)

    tables = {
        "artist": _lookup(_restrict(store.table("artists"), "artist_id", plays, source), "artist_id"),
        "track": _lookup(_restrict(store.table("tracks"), "track_id", plays, source), "track_id"),
    }
    if item_level is None:
        distinct = pl.DataFrame({"orig": all_rows["item_id"].unique()})
        hits = {lvl: distinct.join(t, on="orig", how="semi").height for lvl, t in tables.items()}
        item_level = "track" if hits["track"] > hits["artist"] else "artist"
    item_map, n_unknown_items = _map_ids(all_rows["item_id"], tables[item_level], "item", sources)

    def to_store(df: pl.DataFrame) -> pl.DataFrame:
        df = df.join(user_map.rename({"orig": "user_id", "id": "_u"}), on="user_id", how="left", maintain_order="left")
        df = df.join(item_map.rename({"orig": "item_id", "id": "_i"}), on="item_id", how="left", maintain_order="left")
        return df.with_columns(pl.col("_u").alias("user_id"), pl.col("_i").alias("item_id")).drop("_u", "_i")

    names = list(frames)
    parts = dict(zip(names, _session_ids([to_store(frames[n]) for n in names])))
    split = Split(train=parts["train"], test=parts["test"], valid=parts.get("valid"))

    used = pl.concat([p["item_id"] for p in parts.values()]).unique()
    items, split.item_tags = catalog(store, item_level, used)
    unknown_items = item_map.filter(pl.col("id") < 0)
    named = unknown_items.select(pl.col("id").alias("item_id"), pl.col("orig").alias("_orig"))
    split.items = schema.conform(
        items.join(named, on="item_id", how="left").with_columns(
            pl.coalesce("source_id", "_orig").alias("source_id"), pl.coalesce("name", "_orig").alias("name")),
        schema.SPLIT_ITEMS)
    known_users = user_table(store, pl.concat([p["user_id"] for p in parts.values()]).unique())
    new_users = user_map.filter(pl.col("id") < 0).select(pl.col("id").alias("user_id"), pl.col("orig").alias("_orig"))
    split.users = schema.conform(
        known_users.join(new_users, on="user_id", how="left")
        .with_columns(pl.coalesce("source_id", "_orig").alias("source_id")), schema.SPLIT_USERS)
    split.meta = dict(
        protocol="import", evaluation="session" if has_session else "user", item_level=item_level,
        seed=None, store=str(store_url),
        params=dict(train=train, test=test, valid=valid, source=source),
        unknown=dict(users=n_unknown_users, items=n_unknown_items,
                     rows_with_unknown_user=sum(int((p["user_id"] < 0).sum()) for p in parts.values()),
                     rows_with_unknown_item=sum(int((p["item_id"] < 0).sum()) for p in parts.values())),
    )
    if out is not None:
        split.save(os.fspath(out))
    return split
