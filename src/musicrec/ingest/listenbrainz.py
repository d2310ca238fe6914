"""ListenBrainz listen exports: JSON lines (``listens/YYYY/M.jsonl`` in a user export) or a JSON
array of listens, one file or a folder of them (searched recursively).

One listen::

    {"listened_at": 1699999999, "user_name": "alice", "recording_msid": "...",
     "track_metadata": {"artist_name": "...", "track_name": "...", "release_name": "...",
        "additional_info": {"recording_mbid": "...", "artist_mbids": ["..."], "duration_ms": 215000},
        "mbid_mapping": {"recording_mbid": "...", "artist_mbids": ["..."]}}}

``listened_at`` is Unix seconds (the start of the listen). Keys: users ``listenbrainz:<user>``;
artists ``mbid:<first artist MBID>`` else ``name:<artist name>``; tracks ``mbid:<recording MBID>``
else ``name:<artist>|<track>``. MBIDs come from ``additional_info`` (what the player sent) or,
failing that, ``mbid_mapping`` (ListenBrainz's own match). ``duration_ms`` (or ``duration`` in
seconds) gives the track duration; how long the listen lasted is unknown (``ms_played`` null).

Every field used is type-checked and bounded: ``listened_at`` in [1970, 2100), a duration from 0
(unknown) to ``MAX_MS`` (a number's text is read as the number), names text or null. A listen
failing a check, or JSON nested too deeply to parse, is a reject with its reason.

The user is the ``user`` option when given, else the listen's ``user_name``, else the
``user_name`` of a ``user.json`` beside the files, else the one listener the file's other
listens name, else ``"me"`` -- listed in
``SourceTables.anonymous_users``, so the store refuses a second nameless export.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.base import (MAX_EPOCH_S, MAX_MS, UNPARSED, Rejects, SourceTables, first_per_key, input_files,
                                  json_raw, json_records, name_keys, no_rows_error, track_name_keys,
                                  unpaired_surrogate)

SOURCE = "listenbrainz"
DEFAULT_USER = "me"


def _text(v) -> str | None:
    if not isinstance(v, str):
        return None
    return v.strip() or None


def _first_mbid(v) -> str | None:
    if isinstance(v, list):
        v = v[0] if v else None
    return _text(v).lower() if _text(v) else None


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(v) -> float | int | None:
    """A JSON number (or a number's text) as a Python number; None when it is neither."""
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _duration_ms(info: dict) -> tuple[int | None, str | None]:
    """(track duration in ms or None, None), or (None, reason) for a bad value: ``duration_ms``
    or ``duration`` (seconds); 0 means unknown; a number's text is read as the number."""
    for key, scale in (("duration_ms", 1), ("duration", 1000)):
        v = info.get(key)
        if v is None:
            continue
        n = _number(v)
        if n is None:
            return None, f"bad {key} {_show(v)} (want a number)"
        if (isinstance(n, float) and not math.isfinite(n)) or not 0 <= n * scale <= MAX_MS:
            return None, f"bad {key} {_show(v)} (want 0 to {MAX_MS // scale})"
        if n > 0:
            return int(round(n * scale)), None
    return None, None


def _wrong_type(d: dict, keys: tuple[str, ...]) -> str | None:
    """Reason when one of ``keys`` holds something other than text (or null)."""
    for key in keys:
        v = d.get(key)
        if v is not None and not isinstance(v, str):
            return f"bad {key} {_show(v)} (want text)"
    return None


def _parse(rec, default_user: str | None, fallback_user: str | None) -> tuple[dict | None, str | None]:
    """One listen -> (row, None) or (None, reason)."""
    if not isinstance(rec, dict):
        return None, f"not a JSON object ({type(rec).__name__})"
    meta = rec.get("track_metadata")
    if not isinstance(meta, dict):
        return None, "missing track_metadata"
    ts = rec.get("listened_at")
    if ts is None:
        return None, "missing listened_at"
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts < MAX_EPOCH_S:
        return None, f"bad listened_at {_show(ts)} (want Unix seconds from 1970 to 2100)"
    wrong = _wrong_type(rec, ("user_name",)) or _wrong_type(meta, ("artist_name", "track_name"))
    if wrong:
        return None, wrong
    info = meta.get("additional_info") if isinstance(meta.get("additional_info"), dict) else {}
    mapping = meta.get("mbid_mapping") if isinstance(meta.get("mbid_mapping"), dict) else {}
    duration, reason = _duration_ms(info)
    if reason:
        return None, reason
    artist, track = _text(meta.get("artist_name")), _text(meta.get("track_name"))
    artist_mbid = _first_mbid(info.get("artist_mbids")) or _first_mbid(mapping.get("artist_mbids"))
    rec_mbid = _first_mbid(info.get("recording_mbid")) or _first_mbid(mapping.get("recording_mbid"))
    if artist is None and artist_mbid is None:
        return None, "missing artist_name"
    if track is None and rec_mbid is None:
        return None, "missing track_name"
    user = default_user or _text(rec.get("user_name")) or fallback_user
    return {"user": user, "ts": int(round(ts * 1_000_000)), "artist": artist, "track": track,
            "artist_mbid": artist_mbid, "recording_mbid": rec_mbid, "duration_ms": duration}, None


def _export_user(folder: Path) -> str | None:
    """``user_name`` from the ``user.json`` of an unzipped ListenBrainz export, if any."""
    for candidate in (folder / "user.json", folder.parent / "user.json"):
        try:
            info = json.loads(candidate.read_text("utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(info, dict):
            return _text(info.get("username")) or _text(info.get("user_name"))
    return None


def read_listenbrainz(path, user: str | None = None) -> SourceTables:
    """Read ListenBrainz listens from a ``.jsonl``/``.json`` file or a folder of them."""
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    # an unzipped user export keeps its listens in listens/YYYY/M.jsonl beside user.json, feedback.jsonl...
    search = root / "listens" if Path(path).is_dir() and (root / "listens").is_dir() else Path(path)
    files = input_files(search, ("*.jsonl", "*.json"), SOURCE, exclude=("user.json", "feedback.jsonl"))
    export_user = _export_user(root)
    rejects, rows, looked_like_listens = Rejects(), [], False
    for f in files:
        fallback = export_user
        for record, rec in json_records(f, SOURCE, rejects):
            looked_like_listens |= isinstance(rec, dict) and ("track_metadata" in rec or "listened_at" in rec)
            row, reason = _parse(rec, user, fallback)
            if row is not None and (reason := unpaired_surrogate(row)):
                row = None
            if row is None:
                rejects.add(SOURCE, str(f), record, reason, json_raw(rec))
            else:
                row.update(record=record, file=str(f))
                rows.append(row)
    if not rows:
        unparsed = all(r["reason"].startswith(UNPARSED) for r in rejects.rows)
        if looked_like_listens or unparsed:          # unparsed includes an empty input
            raise no_rows_error(SOURCE, files, rejects)
        raise MusicrecError(f"{SOURCE}: {path} does not look like a ListenBrainz listen export "
                            "(no record has listened_at / track_metadata)")

    df = pl.DataFrame(rows, schema={"user": pl.String, "ts": pl.Int64, "artist": pl.String, "track": pl.String,
                                    "artist_mbid": pl.String, "recording_mbid": pl.String,
                                    "duration_ms": pl.Int64, "record": pl.Int64, "file": pl.String})
    # a listen without user_name in a file whose other listens name one listener is theirs
    only = pl.col("user").drop_nulls().unique()
    df = df.with_columns(pl.col("user").fill_null(
        pl.when(only.len() == 1).then(only.first()).otherwise(None).over("file")))
    anonymous = df["user"].null_count() > 0
    df = df.with_columns(pl.col("user").fill_null(DEFAULT_USER))
    df = df.with_columns(
        user_key=pl.lit("listenbrainz:") + pl.col("user"),
        artist_key=pl.coalesce(pl.lit("mbid:") + pl.col("artist_mbid"), name_keys(df["artist"])),
        track_key=pl.coalesce(pl.lit("mbid:") + pl.col("recording_mbid"),
                              track_name_keys(df["artist"], df["track"])),
    )
    plays = df.select("user_key", "artist_key", "track_key",
                      timestamp=pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
                      play_count=pl.lit(1), source_row="record")
    artists = first_per_key(df.select("artist_key", source_id="artist_mbid", name="artist"), "artist_key")
    tracks = first_per_key(df.select("track_key", "artist_key", source_id="recording_mbid", name="track",
                                     duration_ms="duration_ms"), "track_key")
    users = first_per_key(df.select("user_key", source_id="user"), "user_key")
    return SourceTables(SOURCE, plays, artists=artists, tracks=tracks, users=users, rejects=rejects,
                        files=[str(f) for f in files],
                        anonymous_users=[f"listenbrainz:{DEFAULT_USER}"] if anonymous else [])
