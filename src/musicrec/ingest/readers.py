"""The reader registry: source name -> function(path, **options) -> ``SourceTables``.

==================  ===========================================  ==========================
source              input                                        options
==================  ===========================================  ==========================
hetrec-lastfm-2k    HetRec 2011 Last.fm 2K folder                --
lastfm-1k           Last.fm 1K events TSV (or its folder)        --
30music             30Music slice ``.txt`` file or folder        --
listenbrainz        ListenBrainz ``.jsonl`` / ``.json`` export   user
spotify-history     ``Streaming_History_Audio_*.json``           user
csv                 CSV / TSV file or folder                     columns, source, user
parquet             Parquet file or folder                       columns, source, user
==================  ===========================================  ==========================

:func:`read_chunks` gives a reader's output in chunks for ``musicrec.store.Store.ingest_chunks``:
``csv`` and ``parquet`` read file by file (and a big Parquet file slice by slice); the other
readers give their whole output as one chunk. A ``.zip`` file is read as the folder it unpacks to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator

from musicrec import MusicrecError
from musicrec.ingest.archive import unpacked
from musicrec.ingest.base import SourceTables
from musicrec.ingest.hetrec import read_hetrec
from musicrec.ingest.lastfm1k import read_lastfm1k
from musicrec.ingest.listenbrainz import read_listenbrainz
from musicrec.ingest.spotify import read_spotify
from musicrec.ingest.tabular import iter_csv, iter_parquet, read_csv, read_parquet
from musicrec.ingest.thirtymusic import read_thirtymusic

READERS: dict[str, Callable[..., SourceTables]] = {
    "hetrec-lastfm-2k": read_hetrec,
    "lastfm-1k": read_lastfm1k,
    "30music": read_thirtymusic,
    "listenbrainz": read_listenbrainz,
    "spotify-history": read_spotify,
    "csv": read_csv,
    "parquet": read_parquet,
}

#: readers that can also yield their output chunk by chunk (same options as the reader)
CHUNKED: dict[str, Callable[..., Iterator[SourceTables]]] = {"csv": iter_csv, "parquet": iter_parquet}


def options_of(source: str) -> list[str]:
    """Keyword options the reader ``source`` accepts."""
    return [p for p in inspect.signature(reader(source)).parameters if p != "path"]


def reader(source: str) -> Callable[..., SourceTables]:
    """The reader function for ``source``; a clear error lists the valid names."""
    try:
        return READERS[source]
    except KeyError:
        raise MusicrecError(f"unknown source {source!r}; valid sources: {', '.join(READERS)}") from None


def _checked(source: str, options: dict) -> dict:
    options = {k: v for k, v in options.items() if v is not None}
    valid = options_of(source)
    extra = sorted(set(options) - set(valid))
    if extra:
        takes = f"it takes {', '.join(valid)}" if valid else "it takes no options"
        raise MusicrecError(f"source {source!r} does not take option(s) {', '.join(extra)}; {takes}")
    return options


def read_chunks(source: str, path, /, **options) -> Iterator[SourceTables]:
    """Like :func:`read`, as chunks whose concatenation is what ``read`` returns (see the
    module docstring). Unknown sources and options raise at once; input errors when the
    chunks are read."""
    fn = reader(source)
    options = _checked(source, options)
    path = unpacked(path)
    if source in CHUNKED:
        return CHUNKED[source](path, **options)
    return _one_chunk(fn, path, options)


def _one_chunk(fn, path, options) -> Iterator[SourceTables]:
    yield fn(path, **options)


def read(source: str, path, /, **options) -> SourceTables:
    """Read ``path`` with the reader for ``source``. Options a reader does not take are an error
    (None values are ignored, so a CLI can pass its unset flags through). ``source`` and ``path``
    are positional-only, so ``source=`` can be a reader option (csv/parquet key prefix)."""
    fn = reader(source)
    options = _checked(source, options)
    return fn(unpacked(path), **options)
