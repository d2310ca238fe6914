"""The server's store commits in a child process at lower priority.

On a 2-core machine one Delta commit of posted plays (Parquet write, log, now and then a
compaction) is a burst of CPU in Rust thread pools; run in the server's process it competes with
the event loop, and readers' p99 rose from 3 ms to 70 ms beside 20 posts/s. In a child at nice
10 the readers go first.

The child is ``python -m musicrec.serve.writer_process``, not a ``multiprocessing`` process:
that would re-import the user's ``__main__`` (a script without a main guard would deadlock), and
nothing here needs pickle. Protocol over its stdin/stdout, one request at a time:

* request: 4-byte big-endian length + JSON ``{"url", "n", "source"}`` (n: how many posts), then 8-byte length + the posts as one
  Arrow IPC stream (a ``_post`` column says which post each row came from);
* reply: 4-byte length + JSON ``{"reports": [IngestReport fields, ...]}`` or ``{"error"}``.

The child ends when its stdin closes: when the server exits, or is killed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import subprocess
import sys
import threading

import polars as pl

from musicrec import MusicrecError

#: niceness of the writer process
NICE = 10


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) < n:
        raise EOFError("the pipe closed")
    return data


def _send(stream, header: dict, blob: bytes | None = None) -> None:
    head = json.dumps(header).encode()
    stream.write(struct.pack(">I", len(head)) + head)
    if blob is not None:
        stream.write(struct.pack(">Q", len(blob)) + blob)
    stream.flush()


def _recv_header(stream) -> dict:
    (n,) = struct.unpack(">I", _read_exact(stream, 4))
    return json.loads(_read_exact(stream, n))


def _recv_blob(stream) -> bytes:
    (n,) = struct.unpack(">Q", _read_exact(stream, 8))
    return _read_exact(stream, n)


class WriterProcess:
    """The child process and the pipe to it; :meth:`append` is thread-safe (one call at a time)."""

    def __init__(self) -> None:
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-m", "musicrec.serve.writer_process"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def append(self, url: str, frames: list[pl.DataFrame], source: str) -> list:
        """``Store(url).append_play_batches(frames, source)`` in the child: one IngestReport per frame.
        MusicrecError for what the store refused; EOFError/OSError when the child died."""
        from musicrec.store.writer import IngestReport

        posts = pl.concat([f.with_columns(_post=pl.lit(n, pl.Int64)) for n, f in enumerate(frames)], how="diagonal_relaxed")
        buf = io.BytesIO()
        posts.write_ipc_stream(buf)
        with self._lock:
            _send(self.proc.stdin, {"url": url, "n": len(frames), "source": source}, buf.getvalue())
            reply = _recv_header(self.proc.stdout)
        if "error" in reply:
            raise MusicrecError(reply["error"])
        return [IngestReport(**r) for r in reply["reports"]]


_SHARED: WriterProcess | None = None
_SHARED_GUARD = threading.Lock()


def shared(fresh: bool = False) -> WriterProcess:
    """This process's writer process, started on first use (again when it died, or ``fresh``)."""
    global _SHARED
    with _SHARED_GUARD:
        if fresh or _SHARED is None or not _SHARED.alive():
            _SHARED = WriterProcess()
        return _SHARED


def _serve(inp, out) -> None:
    from musicrec.store import Store

    stores: dict[str, Store] = {}       # one per URL: a Store caches the entity tables
    while True:
        try:
            header = _recv_header(inp)
            posts = pl.read_ipc_stream(io.BytesIO(_recv_blob(inp)))
        except EOFError:
            return
        try:
            url = header["url"]
            if url not in stores:
                stores[url] = Store(url)
            store = stores[url]
            frames = [posts.filter(pl.col("_post") == n).drop("_post") for n in range(header["n"])]
            reports = store.append_play_batches(frames, source=header["source"])
            _send(out, {"reports": [dataclasses.asdict(r) for r in reports]})
        except Exception as exc:        # the message goes back to the request that caused it
            _send(out, {"error": str(exc) if isinstance(exc, MusicrecError) else f"{type(exc).__name__}: {exc}"})


def main() -> None:
    try:
        os.nice(NICE)
    except OSError:
        pass
    inp, out = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())       # a stray print must not break the protocol
    _serve(inp, out)


if __name__ == "__main__":
    main()
