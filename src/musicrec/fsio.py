"""File IO that works on any fsspec URL: a local path, ``s3://bucket/key``, ``gs://``, ``memory://``.

Every writer goes to a temporary name beside the target and renames it into place, so a reader
never sees a half-written file (on object stores the rename is a copy + delete of one object,
which is still all-or-nothing per object). Credentials come from the environment or the
standard config files of each backend (e.g. ``AWS_ACCESS_KEY_ID``, ``~/.aws/credentials``,
``AWS_ENDPOINT_URL`` for an S3-compatible server); nothing here reads or logs them.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
import zlib
from typing import Callable

import fsspec
import numpy as np

from musicrec import MusicrecError


def filesystem(url: str):
    """``(fs, path)`` for ``url`` (``path`` without the protocol, as fsspec methods want it)."""
    fs, path = fsspec.core.url_to_fs(os.fspath(url))
    return fs, path


def is_local(url: str) -> bool:
    fs, _ = filesystem(url)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def absolute(url: str) -> str:
    """A local path made absolute; a URL unchanged (what a folder records about another)."""
    url = os.fspath(url)
    return url if "://" in url else os.path.abspath(url)


def join(url: str, *parts: str) -> str:
    """``url/part/...`` (``os.path.join`` for local paths, ``/`` for URLs)."""
    url = os.fspath(url)
    if "://" not in url:
        return os.path.join(url, *parts)
    return "/".join([url.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def isfile(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.isfile(path)


def makedirs(url: str) -> None:
    fs, path = filesystem(url)
    fs.makedirs(path, exist_ok=True)


def open_file(url: str, mode: str = "rb", **kwargs):
    """An open file object for ``url`` (use as a context manager)."""
    return fsspec.open(os.fspath(url), mode, **kwargs).open()


def atomic_write(url: str, write: Callable, mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``url``, then rename it over ``url``."""
    fs, path = filesystem(url)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        kwargs = {"encoding": "utf-8"} if "b" not in mode else {}
        with fs.open(tmp, mode, **kwargs) as fh:
            write(fh)
        fs.mv(tmp, path)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(url: str, obj) -> None:
    atomic_write(url, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True, default=str), mode="w")


def atomic_savez(url: str, arrays: dict) -> None:
    """``np.savez`` of ``arrays`` (name -> ndarray) to ``url``, atomically."""
    atomic_write(url, lambda fh: np.savez(fh, **arrays))


def read_json(url: str):
    with open_file(url, "r", encoding="utf-8") as fh:
        return json.load(fh)


def load_npz(url: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` at ``url`` (never unpickles: ``allow_pickle=False``); a local
    file is read straight from disk, a remote one through one in-memory copy."""
    fs, path = filesystem(url)
    if is_local(url):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    with fs.open(path, "rb") as fh:
        data = fh.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_arrays(url: str) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``url`` (never unpickles); a missing or unreadable file is a
    one-line MusicrecError naming it."""
    try:
        return load_npz(url)
    except FileNotFoundError:
        raise MusicrecError(f"{url}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # numpy takes any file that is neither a zip nor a .npy for a pickle (refused)
        why = "not an .npz archive of plain arrays" if "pickle" in str(exc) else first_line(exc)
        raise MusicrecError(f"{url}: unreadable array file ({why})") from None
    except MemoryError:   # a damaged header declaring a huge array
        raise MusicrecError(f"{url}: unreadable array file (declares an array too large to hold)") from None


def read_parquet(url: str, columns: list[str] | None = None):
    """A Parquet file at ``url`` as a Polars DataFrame (only ``columns`` when given). A local
    file is read by path, so Polars reads just the columns it needs."""
    import polars as pl

    fs, path = filesystem(url)
    if is_local(url):
        return pl.read_parquet(path, columns=columns)
    with fs.open(path, "rb") as fh:
        return pl.read_parquet(fh, columns=columns)


def read_parquet_if_any(url: str):
    """The Parquet file at ``url`` as a Polars DataFrame, None when there is none; MusicrecError
    naming the file when it cannot be read."""
    import polars as pl

    try:
        return read_parquet(url) if isfile(url) else None
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise MusicrecError(f"{url}: unreadable ({first_line(exc)})") from None


def write_parquet(df, url: str) -> None:
    """A Polars DataFrame to ``url``, atomically."""
    atomic_write(url, df.write_parquet)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line
    errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
