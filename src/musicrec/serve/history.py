"""A listener's own export (Spotify, ListenBrainz, CSV; zipped or not) as a history for a model.

The export is read by the ingest readers, then each play is matched to the model's catalogue
the way the store matches sources (``musicrec.store.resolve``): by MusicBrainz id where the export
and the catalogue both carry one, else by the artist's identity key (``names.identity_key``) at
artist level, or the artist + title key at track level. Plays of artists (tracks) the model has
never seen are counted and named in the report, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from musicrec import MusicrecError
from musicrec.ingest.archive import unpacked
from musicrec.names import identity_key, track_identity_key

#: what ``--history`` reads, and how each is recognised in a folder (or an unpacked zip)
FORMATS = ("spotify-history", "listenbrainz", "csv")


def detect(path) -> str:
    """The reader for an export: Spotify's ``Streaming_History_Audio_*.json``, a ListenBrainz
    export (``user.json``, ``listens/``, ``.jsonl``), else a CSV file."""
    p = unpacked(path)
    if not p.exists():
        raise MusicrecError(f"{path} does not exist")
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    names = [f.name for f in files]
    if any(n.startswith("Streaming_History_Audio_") and n.endswith(".json") for n in names):
        return "spotify-history"
    if any(n == "user.json" or n.endswith((".jsonl", ".ndjson")) for n in names) or \
            any(f.suffix == ".json" and "listen" in f.as_posix().lower() for f in files):
        return "listenbrainz"
    if any(f.suffix.lower() in (".csv", ".tsv") for f in files):
        return "csv"
    raise MusicrecError(f"{path}: not a Spotify Extended Streaming History, a ListenBrainz export or a CSV file "
                        f"(give --history-format one of {', '.join(FORMATS)})")


@dataclass
class History:
    """An export matched to a catalogue.

    ``items`` (H,) matched item indices in listening order (oldest first) and ``plays`` (H,) how
    often each was played (aggregated rows keep their counts); ``n_plays`` / ``n_matched`` count
    the export's plays; ``unmatched`` names the artists (tracks) not in the catalogue with their
    plays, most played first.
    """

    items: np.ndarray
    plays: np.ndarray
    n_plays: int
    n_matched: int
    source: str
    unmatched: list[tuple[str, int]] = field(default_factory=list)

    def summary(self) -> dict:
        return {"source": self.source, "plays": self.n_plays, "matched_plays": self.n_matched,
                "distinct_items": int(len(np.unique(self.items))),
                "unmatched": [{"name": n, "plays": c} for n, c in self.unmatched[:20]],
                "unmatched_names": len(self.unmatched)}


def read_plays(path, source: str | None = None) -> tuple[pl.DataFrame, str]:
    """The export's plays as ``{artist, artist_mbid, track, timestamp, play_count}`` (input order)."""
    from musicrec.ingest.readers import read

    source = source or detect(path)
    if source not in FORMATS:
        raise MusicrecError(f"--history-format must be one of {', '.join(FORMATS)}, got {source!r}")
    t = read(source, path, user="me")
    artists = t.artists.select("artist_key", artist="name",
                               artist_mbid=pl.when(pl.col("artist_key").str.starts_with("mbid:"))
                               .then(pl.col("artist_key").str.slice(5)))
    tracks = t.tracks.select("track_key", track="name")
    plays = (t.plays.join(artists, on="artist_key", how="left", maintain_order="left")
             .join(tracks, on="track_key", how="left", maintain_order="left"))
    return plays.select("artist", "artist_mbid", "track", "timestamp", "play_count"), source


def match(plays: pl.DataFrame, catalogue: pl.DataFrame, item_level: str, popularity: np.ndarray,
          source: str = "") -> History:
    """Match ``plays`` (see :func:`read_plays`) to ``catalogue`` (a model's items.parquet rows in
    index order: ``source_id``, ``name``, ``artist_name``): by MusicBrainz id, else the very name,
    else the identity key; a name several catalogue items share goes to the most played of them."""
    order = np.argsort(-np.asarray(popularity), kind="stable")
    names, artists = catalogue["name"].to_list(), catalogue["artist_name"].to_list()

    def key_of(artist, title, exact: bool):
        if item_level == "artist":
            return (artist or "") if exact else identity_key(artist)
        return (artist or "", title or "") if exact else (track_identity_key(artist, title) if title else "")

    # the very name first (HetRec has "N.E.R.D." and "N*E*R*D"), then the identity key, most played first
    by_key: dict = {}
    for i in order.tolist():
        for exact in (True, False):
            key = key_of(artists[i] if item_level == "track" else names[i], names[i], exact)
            if key:
                by_key.setdefault((exact, key), i)
    by_mbid = {s: i for i, s in enumerate(catalogue["source_id"].to_list()) if s and len(s) == 36}
    a_col, t_col = plays["artist"].to_list(), plays["track"].to_list()
    mbids = plays["artist_mbid"].to_list() if item_level == "artist" else [None] * plays.height
    seen: dict = {}         # an export repeats its artists: each distinct one is looked up once

    def find(a, t, m) -> int:
        if (a, t, m) not in seen:
            seen[a, t, m] = by_mbid[m] if m in by_mbid else by_key.get(
                (True, key_of(a, t, True)), by_key.get((False, key_of(a, t, False)), -1))
        return seen[a, t, m]

    idx = np.array([find(a, t, m) for a, t, m in zip(a_col, t_col, mbids)], dtype=np.int64)
    if item_level == "artist":
        shown = plays["artist"].fill_null("(no artist)").to_list()
    else:
        shown = [f"{a} - {t}" for a, t in zip(plays["artist"].fill_null("?").to_list(), plays["track"].fill_null("?").to_list())]
    counts = plays["play_count"].fill_null(1).to_numpy().astype(np.int64)
    order = np.argsort(plays["timestamp"].to_physical().fill_null(np.iinfo(np.int64).min).to_numpy(), kind="stable")
    idx, counts, shown = idx[order], counts[order], [shown[i] for i in order]
    hit = idx >= 0
    missing: dict[str, int] = {}
    for name, c, ok in zip(shown, counts.tolist(), hit.tolist()):
        if not ok:
            missing[name] = missing.get(name, 0) + c
    return History(items=idx[hit], plays=counts[hit], n_plays=int(counts.sum()), n_matched=int(counts[hit].sum()),
                   source=source, unmatched=sorted(missing.items(), key=lambda kv: (-kv[1], kv[0])))


def history_of(svc, path, source: str | None = None) -> History:
    """Read the export at ``path`` and match it to the catalogue of ``svc`` (a ``Service``)."""
    plays, source = read_plays(path, source)
    found = match(plays, svc.bundle.items, svc.item_level, svc.popularity, source=source)
    if not len(found.items):
        raise MusicrecError(f"none of the {found.n_plays:,} plays in {Path(str(path)).name} is of an "
                            f"{'artist' if svc.item_level == 'artist' else 'track'} the model knows "
                            f"(most played: {', '.join(n for n, _ in found.unmatched[:3])})")
    return found
