"""Load test of ``musicrec serve`` on loopback: throughput and latency percentiles under 50 clients.

    python benchmarks/serve_load.py [--data ../shared/data] [--clients 50] [--seconds 20] [--rate 300,500]
                                    [--max-requests 50000] [--synthetic-items 1000000]
                                    [--server-args "--no-access-log"] [--out benchmarks/results/serve_load.md]

Two catalogues:
  * HetRec 2011 Last.fm 2K: ingest, user-holdout split, ALS (the quickstart's best model);
  * synthetic: 1,000,000 tracks with 64-dim item vectors (clustered directions, power-law norms,
    so popularity is skewed as in a real catalogue) in an ALS model folder; above the exact-search
    threshold the service retrieves with an ANN index.
For each, the server runs as its own process (``musicrec serve``, one worker) and a load
generator in this process drives ``--clients`` concurrent keep-alive connections with user
recommendations (``GET /v1/users/{id}/recommendations?k=10``) and, separately, session
recommendations (``POST /v1/recommendations`` with 5 recent plays): once as fast as the server
answers (closed loop: maximum throughput) and at each ``--rate`` (requests/s) offered on a fixed
schedule (open loop: the latency a listener sees at that load). Each phase is bounded by
``--seconds`` and ``--max-requests``. The client is a minimal asyncio HTTP/1.1 client so that it
takes as little of the shared 2 cores as possible. Reported per phase: requests, errors
(non-200 or failed connections), requests/s, p50/p95/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- client
class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data += await self.reader.readexactly(size + 2)
            return status, data
        return status, await self.reader.readexactly(length)


async def run_phase(port: int, clients: int, seconds: float, max_requests: int, make_request,
                    rate: float = 0.0) -> dict:
    """``clients`` workers send requests from ``make_request(rng) -> (method, path, body)``.

    ``rate`` = 0: closed loop, each worker sends its next request as soon as the answer arrives
    (the maximum throughput; latency then is mostly queueing). ``rate`` > 0: open loop, the workers
    together send ``rate`` requests/s on a fixed schedule, and latency is counted from the time a
    request was *due*, so a server that falls behind is charged for the wait (no coordinated
    omission).
    """
    latencies: list[float] = []
    errors = {"n": 0, "failed": 0, "examples": []}
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    interval = clients / rate if rate > 0 else 0.0

    async def worker(w: int) -> None:
        nonlocal sent
        rng = random.Random(w)
        conn = Conn(port)
        due = start + w * (interval / clients)
        while sent < max_requests:
            if rate > 0:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            t0 = due if rate > 0 else time.perf_counter()
            if t0 > deadline:
                break
            due += interval
            sent += 1
            method, path, body = make_request(rng)
            try:
                status, data = await conn.request(method, path, body)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                errors["n"] += 1
                errors["failed"] += 1
                if len(errors["examples"]) < 5:
                    errors["examples"].append(repr(exc)[:200])
                conn = Conn(port)
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors["n"] += 1
                if len(errors["examples"]) < 5:
                    errors["examples"].append(f"{status} {data[:200]!r}")
        if conn.writer is not None:
            conn.writer.close()

    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies) + errors["failed"], "errors": errors["n"],
            "error_examples": errors["examples"][:5], "seconds": round(wall, 2), "rps": len(latencies) / wall,
            **{f"p{q}": float(np.percentile(lat, q)) if len(lat) else float("nan") for q in (50, 95, 99)}}


# ----------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "musicrec.cli.main", "serve", model_dir, "--host", "127.0.0.1", "--port", str(port),
           *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(200):
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become healthy in 600 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# ----------------------------------------------------------------------------- models
def hetrec_model(data: str, work: str) -> tuple[str, list[str], list[str]]:
    """ALS on HetRec user-holdout; returns (model dir, user ids, item ids)."""
    from musicrec.preprocess.split import make_split
    from musicrec.serve.bundle import ModelBundle
    from musicrec.store import ingest_path
    from musicrec.train.fit import fit_model

    store = os.path.join(work, "hetrec")
    ingest_path("hetrec-lastfm-2k", os.path.join(data, "hetrec2011-lastfm-2k"), store)
    split = make_split(store, "user-holdout", out=os.path.join(work, "hetrec-split"), seed=0)
    model, _ = fit_model("als", split, {}, include_valid=True)
    out = os.path.join(work, "hetrec-als")
    ModelBundle(model, split.items, split.users, {"item_level": "artist", "split": os.path.join(work, "hetrec-split"),
                                                  "protocol": "user-holdout"}).save(out)
    trained = set(model.train_.users.ids.tolist())
    users = [str(u) for u, uid in zip(split.users["source_id"].to_list(), split.users["user_id"].to_list())
             if u is not None and uid in trained]
    items = [str(i) for i in model.train_.items.ids.tolist()]
    return out, users, items


def synthetic_model(n_items: int, work: str, dim: int = 64, n_users: int = 20_000, seed: int = 0):
    """An ALS model folder over ``n_items`` synthetic tracks (random but structured factors)."""
    import polars as pl

    from musicrec import schema
    from musicrec.features.interactions import Interactions
    from musicrec.features.vocab import IdMap
    from musicrec.models.als import ALS
    from musicrec.serve.bundle import ModelBundle

    rng = np.random.default_rng(seed)
    n_clusters = 256
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    cluster = rng.integers(0, n_clusters, n_items)
    directions = centres[cluster] + 0.7 * rng.normal(size=(n_items, dim)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    norms = (1.0 / np.arange(1, n_items + 1) ** 0.3)[rng.permutation(n_items)].astype(np.float32)
    item_factors = directions * norms[:, None] * 3
    # listening histories: 20 plays per user, popularity-weighted within the user's favourite cluster
    popularity = norms / norms.sum()
    plays_per_user = 20
    item_ids = np.arange(1, n_items + 1, dtype=np.int64)
    picks = rng.choice(n_items, size=n_users * plays_per_user, p=popularity)
    events = schema.conform(pl.DataFrame({"user_id": np.repeat(np.arange(1, n_users + 1), plays_per_user),
                                          "item_id": item_ids[picks], "weight": np.ones(len(picks))}),
                            schema.SPLIT_EVENTS)
    train = Interactions.from_frame(events, items=IdMap(item_ids))
    model = ALS(factors=dim)
    model.train_ = train
    user_factors = rng.normal(size=(train.n_users, dim)).astype(np.float32) * 0.3
    model._set_state({"user_factors": user_factors, "item_factors": item_factors[train.items.index(item_ids)]})
    items = pl.DataFrame({"item_id": item_ids, "source_id": [f"t{i}" for i in item_ids],
                          "name": [f"track {i}" for i in item_ids],
                          "artist_name": [f"artist {i % 50_000}" for i in item_ids]})
    users = pl.DataFrame({"user_id": train.users.ids, "source_id": [str(u) for u in train.users.ids]})
    out = os.path.join(work, f"synthetic-{n_items}")
    ModelBundle(model, items, users, {"item_level": "track", "protocol": "synthetic"}).save(out)
    return out, [str(u) for u in train.users.ids[:5000]], [str(i) for i in item_ids[picks[:50_000]]]


# ----------------------------------------------------------------------------- main
def load_phases(port: int, users: list[str], items: list[str], args) -> list[tuple[str, str, dict]]:
    """(request kind, load, result) for user and session requests, closed loop and at ``--rate``."""
    def user_request(rng):
        return "GET", f"/v1/users/{rng.choice(users)}/recommendations?k=10", None

    def session_request(rng):
        body = json.dumps({"recent_plays": [rng.choice(items) for _ in range(5)], "k": 10}).encode()
        return "POST", "/v1/recommendations", body

    out = []
    for name, fn in (("user recommendations", user_request), ("session recommendations", session_request)):
        asyncio.run(run_phase(port, 4, 2.0, 400, fn))            # warm-up
        for load, rate in [("max (closed loop)", 0.0)] + [(f"{r:,.0f} req/s offered", r) for r in args.rates]:
            r = asyncio.run(run_phase(port, args.clients, args.seconds, args.max_requests, fn, rate=rate))
            out.append((name, load, r))
            print(f"  {name}, {load}: {r['requests']} requests, {r['errors']} errors, {r['rps']:,.0f} req/s, "
                  f"p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms, p99 {r['p99']:.1f} ms", flush=True)
            if r["error_examples"]:
                print(f"    errors: {r['error_examples']}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=50_000)
    ap.add_argument("--rate", default="300,500", help="offered loads of the open-loop phases (requests/s, comma-separated)")
    ap.add_argument("--synthetic-items", type=int, default=1_000_000, help="0 skips the synthetic catalogue")
    ap.add_argument("--server-args", default="", help="extra arguments for `musicrec serve`")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "serve_load.md"))
    args = ap.parse_args(argv)
    args.rates = [float(r) for r in args.rate.split(",") if r]

    work = tempfile.mkdtemp(prefix="musicrec-load-")
    cases = [("HetRec ALS", lambda: hetrec_model(args.data, work))]
    if args.synthetic_items:
        cases.append((f"synthetic {args.synthetic_items:,} tracks",
                      lambda: synthetic_model(args.synthetic_items, work)))
    rows = []
    for label, build in cases:
        t0 = time.perf_counter()
        model_dir, users, items = build()
        print(f"{label}: model built in {time.perf_counter() - t0:.0f} s", flush=True)
        port = free_port()
        t0 = time.perf_counter()
        proc = start_server(model_dir, port, args.server_args.split())
        print(f"{label}: server ready in {time.perf_counter() - t0:.0f} s", flush=True)
        try:
            for phase, load, r in load_phases(port, users, items, args):
                rows.append((label, phase, load, r))
        finally:
            stop_server(proc)
    lines = [f"Load test on {os.cpu_count()} cores (server: `{('musicrec serve MODEL ' + args.server_args).strip()}`; client: {args.clients} "
             f"concurrent keep-alive connections in a second process, {args.seconds:.0f} s or "
             f"{args.max_requests:,} requests per phase). \"max\": each client sends its next request when the "
             f"answer arrives (throughput; latency is then mostly queueing: {args.clients} requests always in "
             f"flight). \"offered\": the clients send that many requests/s together on a fixed schedule, "
             f"latency counted from when each request was due. Load average at the end "
             f"{os.getloadavg()[0]:.2f}.\n",
             "| catalogue | request | load | requests | errors | req/s | p50 ms | p95 ms | p99 ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, phase, load, r in rows:
        lines.append(f"| {label} | {phase} | {load} | {r['requests']:,} | {r['errors']} | {r['rps']:,.0f} | "
                     f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
