"""Spotify Extended Streaming History (``Streaming_History_Audio_*.json``).

Each file is a JSON array of streams::

    {"ts": "2023-03-01T18:22:05Z", "username": "alice", "platform": "android", "ms_played": 215320,
     "conn_country": "SE", "master_metadata_track_name": "...", "master_metadata_album_artist_name": "...",
     "master_metadata_album_album_name": "...", "spotify_track_uri": "spotify:track:...",
     "episode_name": null, "episode_show_name": null, "spotify_episode_uri": null,
     "reason_start": "trackdone", "reason_end": "endplay", "shuffle": false, "skipped": false, ...}

``ts`` is when playback **ended** (UTC); it is kept as the play's ``timestamp`` unchanged (start =
``ts - ms_played`` when a model needs it). Every music stream is kept, however short: dropping
sub-30 s plays is a preprocessing choice. Podcast episodes and audiobooks (no track URI) are
skipped and counted in ``SourceTables.skipped``, not rejected.

Keys: tracks are the track URI (``spotify:track:<id>``); artists ``name:<album artist name>``
(the export names only the album artist); users ``spotify:user:<username>``. The user is the
``user`` option when given, else ``username``, else ``"me"`` -- listed in
``SourceTables.anonymous_users``, so the store refuses a second nameless export, and refused here
when the nameless files lie in more than one folder (several exports, maybe several people).

A stream is rejected with its reason when ``ts`` is not an ISO time in [1970, 2100), ``ms_played``
is not an integer from 0 to ``MAX_MS``, a text field holds something else than text or null, or
``skipped`` something else than a boolean or null.
"""

from __future__ import annotations


from pathlib import Path

import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.base import (MAX_MS, TIME_RANGE, UNPARSED, Rejects, SourceTables, first_per_key, input_files,
                                  iso_expr, json_raw, json_records, name_keys, no_rows_error,
                                  unpaired_surrogate)

SOURCE = "spotify-history"
DEFAULT_USER = "me"
#: fields read as text: each must be text or null
TEXT_FIELDS = ("username", "master_metadata_track_name", "master_metadata_album_artist_name", "spotify_track_uri",
               "spotify_episode_uri", "episode_name")


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(v) -> str | None:
    return (v.strip() or None) if isinstance(v, str) else None


def _kind(rec: dict) -> str | None:
    """Why a well-formed stream is not music (None for music)."""
    if _text(rec.get("spotify_track_uri")):
        return None
    if _text(rec.get("spotify_episode_uri")) or _text(rec.get("episode_name")):
        return "podcast episodes"
    if _text(rec.get("audiobook_uri")) or _text(rec.get("audiobook_chapter_uri")):
        return "audiobook chapters"
    return "streams without a track URI"


def _parse(rec, user: str | None) -> tuple[dict | None, str | None]:
    """One stream -> (row, None), (None, reason) for a malformed one, or ({"skip": kind}, None)."""
    if not isinstance(rec, dict):
        return None, f"not a JSON object ({type(rec).__name__})"
    ts = rec.get("ts")
    if not isinstance(ts, str) or not ts.strip():
        return None, "missing ts"
    ms = rec.get("ms_played")
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= MAX_MS:
        return None, f"bad ms_played {_show(ms)} (want an integer from 0 to {MAX_MS})"
    for key in TEXT_FIELDS:
        v = rec.get(key)
        if v is not None and not isinstance(v, str):
            return None, f"bad {key} {_show(v)} (want text or null)"
    skipped = rec.get("skipped")
    if skipped is not None and not isinstance(skipped, bool):
        return None, f"bad skipped {_show(skipped)} (want true, false or null)"
    kind = _kind(rec)
    if kind:
        return {"skip": kind}, None
    return {"user": user or _text(rec.get("username")), "ts": ts, "ms_played": ms,
            "uri": rec["spotify_track_uri"].strip(), "track": _text(rec.get("master_metadata_track_name")),
            "artist": _text(rec.get("master_metadata_album_artist_name")),
            "skipped": skipped}, None


def read_spotify(path, user: str | None = None) -> SourceTables:
    """Read Spotify Extended Streaming History files (a file or a folder of them)."""
    files = input_files(path, ("Streaming_History_Audio_*.json",), SOURCE)
    rejects, rows, raws, skipped = Rejects(), [], [], {}
    streams = old_format = 0
    for f in files:
        for record, rec in json_records(f, SOURCE, rejects):
            if isinstance(rec, dict) and "ts" in rec:
                streams += 1
            elif isinstance(rec, dict) and "endTime" in rec and "msPlayed" in rec:
                old_format += 1
            row, reason = _parse(rec, user)
            if row is not None and (reason := unpaired_surrogate(row)):
                row = None
            if row is None:
                rejects.add(SOURCE, str(f), record, reason, json_raw(rec))
            elif "skip" in row:
                skipped[row["skip"]] = skipped.get(row["skip"], 0) + 1
            else:
                row.update(record=record, file=str(f), index=len(rows))
                rows.append(row)
                raws.append(rec)
    if not streams:
        if old_format:
            raise MusicrecError(f"{SOURCE}: {path} is the short account-data StreamingHistory format (no track "
                                "URIs); request the Extended streaming history from Spotify instead")
        if all(r["reason"].startswith(UNPARSED) for r in rejects.rows):
            raise no_rows_error(SOURCE, files, rejects)          # also an empty input
        raise MusicrecError(f"{SOURCE}: {path} does not look like a Spotify Extended Streaming History "
                            "(no record has 'ts')")

    df = pl.DataFrame(rows, schema={"user": pl.String, "ts": pl.String, "ms_played": pl.Int64, "uri": pl.String,
                                    "track": pl.String, "artist": pl.String, "skipped": pl.Boolean,
                                    "record": pl.Int64, "file": pl.String, "index": pl.Int64})
    df = df.with_columns(timestamp=iso_expr("ts"))
    bad_ts = df.filter(pl.col("timestamp").is_null()).select("record", "file", "ts", "index")
    for rec, file, ts, i in bad_ts.iter_rows():
        rejects.add(SOURCE, file, rec, f"bad ts {_show(ts)} (want ISO-8601 from {TIME_RANGE})",
                    json_raw(raws[i]))
    df = df.filter(pl.col("timestamp").is_not_null())
    if df.height == 0:
        if skipped and not len(rejects):
            raise MusicrecError(f"{SOURCE}: {path} holds no music streams "
                                f"({', '.join(f'{n} {k}' for k, n in skipped.items())})")
        raise no_rows_error(SOURCE, files, rejects)

    anonymous = sorted({r["file"] for r in rows if r["user"] is None})
    if len({str(Path(f).parent) for f in anonymous}) > 1:
        raise MusicrecError(f"{SOURCE}: {path} holds exports from {len({str(Path(f).parent) for f in anonymous})} "
                            f"folders and their streams name no listener; ingest each folder with --user NAME")
    df = df.with_columns(pl.col("user").fill_null(DEFAULT_USER))
    df = df.with_columns(user_key=pl.lit("spotify:user:") + pl.col("user"), artist_key=name_keys(df["artist"]))
    plays = df.select("user_key", "artist_key", track_key="uri", timestamp="timestamp", play_count=pl.lit(1),
                      ms_played="ms_played", skipped="skipped", source_row="record")
    artists = first_per_key(df.select("artist_key", name="artist"), "artist_key")
    tracks = first_per_key(df.select(track_key="uri", artist_key="artist_key",
                                     source_id=pl.col("uri").str.split(":").list.last(), name="track"), "track_key")
    users = first_per_key(df.select("user_key", source_id="user"), "user_key")
    return SourceTables(SOURCE, plays, artists=artists, tracks=tracks, users=users, rejects=rejects,
                        files=[str(f) for f in files], skipped=skipped,
                        anonymous_users=[f"spotify:user:{DEFAULT_USER}"] if anonymous else [])
