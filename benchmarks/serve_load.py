"""Load tests of ``musicrec serve`` on loopback: throughput and latency percentiles.

Two suites (the first argument; ``load`` when none is given):

``models``: every model type servable. Every registered model (``musicrec models``) trained on
HetRec 2011 Last.fm 2K (user-holdout split, artist level) is served and sent user
recommendations (``GET /v1/users/{id}/recommendations?k=10`` for listeners of the training data);
every sequence model (``sequential = True``: recently-played, sknn, sr, gru4rec, sasrec,
nextitnet, caser) is also trained on 30Music (session-lastday, artist level) and sent session
recommendations (``POST /v1/recommendations`` with the last 1-5 plays of a test session). Each
runs at ``--rate`` requests/s offered (default 500) for ``--seconds`` or ``--max-requests``::

    python benchmarks/serve_load.py models [--models als,sasrec] [--quick] [--work DIR] [--retrain]
                                           [--epochs 1] [--out benchmarks/results/serve_models.md]

Models are trained once with ``musicrec train`` (classic models: their defaults; deep models:
``--epochs`` epochs, since serving latency depends on the network's shape, not on how well it
learned) and cached under ``--work`` (default: TMPDIR/musicrec-serve-models), keyed by the
model, its parameters, the split and the source of the model's file; a re-run only serves.
``--quick`` is a smoke run (3 s per model, written next to the cached models, not to the
results table).

``load``: the original catalogues under 50 clients, closed loop and open loop::

    python benchmarks/serve_load.py [load] [--data ../shared/data] [--clients 50] [--seconds 20]
                                    [--rate 300,500] [--max-requests 50000] [--synthetic-items 1000000]
                                    [--server-args "--no-access-log"] [--out benchmarks/results/serve_load.md]

  * HetRec 2011 Last.fm 2K: ingest, user-holdout split, ALS (the quickstart's best model);
  * synthetic: 1,000,000 tracks with 64-dim item vectors (clustered directions, power-law norms,
    so popularity is skewed as in a real catalogue) in an ALS model folder; above the exact-search
    threshold the service retrieves with an ANN index.
  Each gets user and session recommendations, once as fast as the server answers (closed loop:
  maximum throughput) and at each ``--rate`` offered.

In both, the server runs as its own process (``musicrec serve``, one worker, one thread) and a
load generator in this process drives ``--clients`` concurrent keep-alive connections. Open loop:
the clients together send ``--rate`` requests/s on a fixed schedule and latency counts from when
a request was *due*, so a server that falls behind pays for the wait. Every phase is bounded by
``--seconds`` and ``--max-requests``, and a request unanswered after ``--request-timeout``
seconds counts as an error (with that wait as its latency, a lower bound). The client is a
minimal asyncio HTTP/1.1 client so that it takes as little of the shared cores as possible.
Reported per phase: requests, errors (non-200, failed connections, timeouts), requests/s,
p50/p95/p99 latency in ms, and the 1-minute load average at its end. The ``load`` suite ends with
readers at the highest ``--rate`` while a second client posts plays (``--post-rate`` per second,
each stored in the model's Delta store by the server): reads must not slow down while the store is
written.

Why not locust: locust drives closed-loop users (each waits for its answer before the next
request), so a slow server is offered less load and its latency looks better than it is
(coordinated omission), and its Python workers would take more of the 2 shared cores than the
server under test. This client keeps a fixed open-loop schedule and costs a few percent of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import os
import random
import shutil
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
                    rate: float = 0.0, timeout: float = 10.0) -> dict:
    """``clients`` workers send requests from ``make_request(rng) -> (method, path, body)``.

    ``rate`` = 0: closed loop, each worker sends its next request as soon as the answer arrives
    (the maximum throughput; latency then is mostly queueing). ``rate`` > 0: open loop, the workers
    together send ``rate`` requests/s on a fixed schedule, and latency is counted from the time a
    request was *due*, so a server that falls behind is charged for the wait (no coordinated
    omission). A request unanswered after ``timeout`` seconds is an error; its connection is
    dropped, and the wait so far is its latency (a lower bound). No request is sent after
    ``seconds``: requests of the schedule still unsent then (a server too slow to keep up) count
    as errors. So a phase ends by ``seconds + timeout`` even against a server that has stopped
    answering.
    """
    latencies: list[float] = []
    errors = {"n": 0, "failed": 0, "examples": []}
    sent = unsent = 0
    start = time.perf_counter()
    deadline = start + seconds
    interval = clients / rate if rate > 0 else 0.0

    def error(example: str) -> None:
        errors["n"] += 1
        if len(errors["examples"]) < 5:
            errors["examples"].append(example[:200])

    async def worker(w: int) -> None:
        nonlocal sent, unsent
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
            now = time.perf_counter()
            # behind schedule at the end: the rest is unsent (a request due at the last instant,
            # whose worker woke a scheduler tick late, is merely on time)
            if now > deadline and now - due > 0.05:
                n = min(int((deadline - due) / interval) + 1, max_requests - sent)
                sent += n
                unsent += n
                break
            due += interval
            sent += 1
            method, path, body = make_request(rng)
            try:
                status, data = await asyncio.wait_for(conn.request(method, path, body), timeout)
            except asyncio.TimeoutError:
                latencies.append(time.perf_counter() - t0)
                error(f"no answer in {timeout:g} s")
                if conn.writer is not None:
                    conn.writer.close()
                conn = Conn(port)
                continue
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                errors["failed"] += 1
                error(repr(exc))
                if conn.writer is not None:
                    conn.writer.close()
                conn = Conn(port)
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                error(f"{status} {data[:200]!r}")
        if conn.writer is not None:
            conn.writer.close()

    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    answered = len(latencies) - (errors["n"] - errors["failed"])     # 200s
    if unsent:
        errors["n"] += unsent
        errors["examples"].insert(0, f"{unsent} requests due but not sent by the end (the server fell behind)")
    return {"requests": len(latencies) + errors["failed"] + unsent, "errors": errors["n"],
            "error_examples": errors["examples"][:5], "seconds": round(wall, 2),
            "rps": answered / wall,
            "load": os.getloadavg()[0],
            **{f"p{q}": float(np.percentile(lat, q)) if len(lat) else float("nan") for q in (50, 95, 99)}}


# ----------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, port: int, extra: list[str], log: str | None = None) -> subprocess.Popen:
    """``musicrec serve model_dir`` on loopback, once /health answers; its output goes to ``log``
    (a file: an unread pipe would fill up and stall the server)."""
    cmd = [sys.executable, "-m", "musicrec.cli.main", "serve", model_dir, "--host", "127.0.0.1", "--port", str(port),
           *extra]
    if log is None:
        log = os.path.join(tempfile.mkdtemp(prefix="musicrec-serve-"), "server.log")
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    # every worker process must be up: keep-alive connections opened while only the first one
    # accepts stay with it for the whole phase, and the others would idle
    workers = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(log) as fh:
                raise SystemExit(f"server exited: {fh.read()[-2000:]}")
        with open(log) as fh:
            if fh.read().count("Application startup complete") < workers:
                time.sleep(0.2)
                continue
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(200):
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
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
    from musicrec.bundle import ModelBundle
    from musicrec.preprocess.split import make_split
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
    from musicrec.bundle import ModelBundle
    from musicrec.features.interactions import Interactions
    from musicrec.features.vocab import IdMap
    from musicrec.models.als import ALS

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


# ----------------------------------------------------------------------------- suite: every model
DATASETS = {
    # name: (folder under --data, reader, split protocol, item level, request, table label)
    "hetrec": ("hetrec2011-lastfm-2k", "hetrec-lastfm-2k", "user-holdout", "artist", "user", "HetRec 2K"),
    "30music": ("30music-200ks-test-slices", "30music", "session-lastday", "artist", "session", "30Music artists"),
}
GOAL_P99_MS = 20.0


def prepared_split(data: str, dataset: str, work: str) -> str:
    """The split folder of ``dataset`` under ``work`` (ingested and split once, seed 0)."""
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path

    folder, reader, protocol, level, _, _ = DATASETS[dataset]
    split_dir = os.path.join(work, f"{dataset}-split")
    if not os.path.isfile(os.path.join(split_dir, "meta.json")):
        store = os.path.join(work, f"{dataset}-store")
        shutil.rmtree(store, ignore_errors=True)
        ingest_path(reader, os.path.join(data, folder), store)
        make_split(store, protocol, item_level=level, seed=0, out=split_dir)
    return split_dir


def models_for(dataset: str) -> list[str]:
    """Every registered model on HetRec; the sequence models on 30Music."""
    from musicrec.models.registry import MODELS

    return [name for name, cls in MODELS.items() if dataset == "hetrec" or cls.sequential]


def bench_params(name: str, epochs: int) -> dict:
    """Training parameters: the defaults, and ``epochs`` for deep models (serving cost depends on
    the network's shape, not on how long it trained)."""
    from musicrec.models.neural import NeuralRecommender
    from musicrec.models.registry import model_class

    return {"epochs": epochs} if issubclass(model_class(name), NeuralRecommender) else {}


def cache_key(name: str, params: dict, split_dir: str) -> str:
    """Changes when the model, its parameters, the split or the model's source file change."""
    from musicrec.models.registry import model_class

    h = hashlib.sha256(json.dumps({"model": name, "params": params}, sort_keys=True).encode())
    with open(os.path.join(split_dir, "meta.json"), "rb") as fh:
        h.update(fh.read())
    with open(inspect.getsourcefile(model_class(name)), "rb") as fh:
        h.update(fh.read())
    return h.hexdigest()[:16]


def trained_model(name: str, dataset: str, split_dir: str, work: str, epochs: int, retrain: bool) -> tuple[str, dict]:
    """(model folder, {"train_s", "cached"}): ``musicrec train`` once, then the cached folder."""
    out = os.path.join(work, "models", f"{dataset}-{name}")
    params = bench_params(name, epochs)
    key = cache_key(name, params, split_dir)
    stamp = out + ".json"
    if not retrain and os.path.isfile(stamp):
        with open(stamp) as fh:
            done = json.load(fh)
        if done.get("key") == key and os.path.isfile(os.path.join(out, "config.json")):
            return out, {**done, "cached": True}
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "musicrec.cli.main", "train", name, "--split", split_dir, "--include-valid",
           "--out", out, *(f"--param={k}={v}" for k, v in params.items())]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"musicrec train {name} failed: {(run.stderr or run.stdout).strip()[-1000:]}")
    done = {"key": key, "model": name, "params": params, "train_s": round(time.perf_counter() - t0, 1)}
    with open(stamp, "w") as fh:
        json.dump(done, fh)
    return out, {**done, "cached": False}


def user_request_maker(model_dir: str):
    """GET recommendations for a random listener of the training data (their own ids)."""
    import polars as pl

    users = [u for u in pl.read_parquet(os.path.join(model_dir, "users.parquet"))["source_id"].to_list() if u]

    def make(rng):
        return "GET", f"/v1/users/{rng.choice(users)}/recommendations?k=10", None
    return make


def session_request_maker(model_dir: str, split_dir: str):
    """POST the last 1-5 plays of a random test session (its items the model knows), store ids."""
    import polars as pl

    known = pl.read_parquet(os.path.join(model_dir, "items.parquet"))["item_id"]
    test = pl.read_parquet(os.path.join(split_dir, "test.parquet"))
    sessions = (test.filter(pl.col("item_id").is_in(known.to_list())).sort(["session_id", "timestamp"])
                .group_by("session_id", maintain_order=True).agg("item_id")["item_id"].to_list())

    def make(rng):
        plays = rng.choice(sessions)
        end = rng.randint(1, len(plays))
        body = {"recent_plays": [str(i) for i in plays[max(0, end - 5):end]], "k": 10}
        return "POST", "/v1/recommendations", json.dumps(body).encode()
    return make


def serve_phase(model_dir: str, make_request, args, log: str) -> dict:
    """Serve ``model_dir``, warm it up, and run one open-loop phase at ``args.rate``."""
    port = free_port()
    t0 = time.perf_counter()
    proc = start_server(model_dir, port, args.server_args.split(), log)
    try:
        ready_s = time.perf_counter() - t0
        _, body = asyncio.run(Conn(port).request("GET", "/health"))
        retrieval = json.loads(body).get("retrieval", "?")
        asyncio.run(run_phase(port, 4, args.warmup, 100 * args.warmup, make_request, timeout=args.request_timeout))
        r = asyncio.run(run_phase(port, args.clients, args.seconds, args.max_requests, make_request,
                                  rate=args.rate, timeout=args.request_timeout))
    finally:
        stop_server(proc)
    return {**r, "retrieval": retrieval, "ready_s": ready_s}


def models_suite(args) -> int:
    import datetime as dt

    work = os.path.abspath(args.work)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    only = {m for m in args.models.split(",") if m}
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(only - {m for d in DATASETS for m in models_for(d)})
    if unknown:
        raise SystemExit(f"unknown dataset or model: {', '.join(unknown)}")
    started = time.perf_counter()
    load_start = os.getloadavg()
    rows, train_s = [], 0.0
    for dataset in datasets:
        split_dir = prepared_split(args.data, dataset, work)
        request, label = DATASETS[dataset][4], DATASETS[dataset][5]
        for name in models_for(dataset):
            if only and name not in only:
                continue
            try:
                model_dir, info = trained_model(name, dataset, split_dir, work, args.epochs, args.retrain)
            except RuntimeError as exc:
                print(f"{label} {name}: {exc}", flush=True)
                rows.append((name, label, request, None))
                continue
            train_s += 0 if info["cached"] else info["train_s"]
            print(f"{label} {name}: {'cached' if info['cached'] else 'trained in %.0f s' % info['train_s']} "
                  f"({model_dir})", flush=True)
            if args.train_only:
                continue
            make = user_request_maker(model_dir) if request == "user" else session_request_maker(model_dir, split_dir)
            log = os.path.join(work, "logs", f"{dataset}-{name}.log")
            try:
                r = serve_phase(model_dir, make, args, log)
            except SystemExit as exc:          # the server did not start: say so, go on
                print(f"  {exc}".splitlines()[0][:300], f"(log: {log})", flush=True)
                rows.append((name, label, request, None))
                continue
            rows.append((name, label, request, r))
            print(f"  {request} recommendations, {args.rate:,.0f} req/s offered ({r['retrieval']}): "
                  f"{r['requests']} requests, {r['errors']} errors, {r['rps']:,.0f} req/s, p50 {r['p50']:.1f} ms, "
                  f"p95 {r['p95']:.1f} ms, p99 {r['p99']:.1f} ms, load {r['load']:.2f}", flush=True)
            if r["error_examples"]:
                print(f"    errors: {r['error_examples']}", flush=True)
    total_s = time.perf_counter() - started
    if args.train_only:
        print(f"trained in {train_s:.0f} s ({total_s:.0f} s in all) under {work}")
        return 0
    text = models_table(rows, args, load_start, total_s, train_s, dt.datetime.now(dt.timezone.utc))
    out = args.out or (os.path.join(work, "serve_models_quick.md") if args.quick
                       else os.path.join(HERE, "results", "serve_models.md"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)
    print(f"written to {out}")
    return 0


def models_table(rows, args, load_start, total_s: float, train_s: float, when) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    server = ("musicrec serve MODEL " + args.server_args).strip()
    lines = [
        f"Every model type through `{server}` (one process, one thread) on {os.cpu_count()} cores, "
        f"{when:%Y-%m-%d %H:%M} UTC, commit {commit or '?'}; client: {args.clients} keep-alive connections in a "
        f"second process offering {args.rate:,.0f} requests/s on a fixed schedule (latency from when each "
        f"request was due), {args.seconds:g} s or {args.max_requests:,} requests per model after a "
        f"{args.warmup:g} s warm-up; a request unanswered in {args.request_timeout:g} s is an error. "
        f"Classic models trained with their defaults, deep models for {args.epochs} epoch(s) "
        f"(serving cost depends on the network's shape, not on how well it learned). HetRec: user-holdout split, "
        f"`GET /v1/users/{{id}}/recommendations?k=10` for listeners of the training data; 30Music: session-lastday, "
        f"artist level, `POST /v1/recommendations` with the last 1-5 plays of a test session, k=10. "
        f"\"scoring\": exact = one matrix product with the item vectors, scores = the model's own full "
        f"scores. Goal: p99 <= {GOAL_P99_MS:g} ms with 0 errors. Load average (1 min) {load_start[0]:.2f} at the "
        f"start; {total_s / 60:.1f} min in all ({train_s:.0f} s of it training).\n",
        "| model | data | request | scoring | requests | errors | req/s | p50 ms | p95 ms | p99 ms | load avg | goal |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, label, request, r in rows:
        if r is None:
            lines.append(f"| {name} | {label} | {request} | – | – | – | – | – | – | – | – | failed (see the output) |")
            continue
        ok = r["errors"] == 0 and r["p99"] <= GOAL_P99_MS
        lines.append(f"| {name} | {label} | {request} | {r['retrieval']} | {r['requests']:,} | {r['errors']:,} | "
                     f"{r['rps']:,.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['load']:.2f} | "
                     f"{'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def load_phases(port: int, users: list[str], items: list[str], args, can_post: bool = False
                ) -> list[tuple[str, str, dict]]:
    """(request kind, load, result) for user and session requests, closed loop and at ``--rate``;
    with ``can_post`` (the server has a store) also user requests at the highest rate while a
    second client posts plays (``--post-rate`` requests/s, one play each) to the store."""
    def user_request(rng):
        return "GET", f"/v1/users/{rng.choice(users)}/recommendations?k=10", None

    def session_request(rng):
        body = json.dumps({"recent_plays": [rng.choice(items) for _ in range(5)], "k": 10}).encode()
        return "POST", "/v1/recommendations", body

    out = []
    for name, fn in (("user recommendations", user_request), ("session recommendations", session_request)):
        asyncio.run(run_phase(port, 4, 2.0, 400, fn))            # warm-up
        for load, rate in [("max (closed loop)", 0.0)] + [(f"{r:,.0f} req/s offered", r) for r in args.rates]:
            r = asyncio.run(run_phase(port, args.clients, args.seconds, args.max_requests, fn, rate=rate,
                                      timeout=args.request_timeout))
            out.append((name, load, r))
            print(f"  {name}, {load}: {r['requests']} requests, {r['errors']} errors, {r['rps']:,.0f} req/s, "
                  f"p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms, p99 {r['p99']:.1f} ms", flush=True)
            if r["error_examples"]:
                print(f"    errors: {r['error_examples']}", flush=True)
    if can_post and args.post_rate > 0:
        def post_request(rng):
            body = json.dumps({"plays": [{"item_id": rng.choice(items)}]}).encode()
            return "POST", f"/v1/users/{rng.choice(users)}/events", body

        async def together():
            return await asyncio.gather(
                run_phase(port, args.clients, args.seconds, args.max_requests, user_request, rate=args.rates[-1],
                          timeout=args.request_timeout),
                run_phase(port, 4, args.seconds, args.max_requests, post_request, rate=args.post_rate,
                          timeout=args.request_timeout))

        read, post = asyncio.run(together())
        out.append(("user recommendations beside posted plays", f"{args.rates[-1]:,.0f} req/s offered", read))
        out.append(("posted plays (one play per POST, stored)", f"{args.post_rate:,.0f} req/s offered", post))
        for name, r in (("readers", read), ("posting client", post)):
            print(f"  {name}: {r['requests']} requests, {r['errors']} errors, p50 {r['p50']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", nargs="?", choices=("load", "models"), default="load",
                    help="load: ALS on HetRec and a synthetic catalogue; models: every model type")
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, help="per phase (default 20; models --quick: 3)")
    ap.add_argument("--max-requests", type=int, help="per phase (default load: 50,000; models: 10,000)")
    ap.add_argument("--rate", help="offered load(s) in requests/s (load: comma-separated, default 300,500; "
                                   "models: one, default 500)")
    ap.add_argument("--request-timeout", type=float,
                    help="seconds before an unanswered request counts as an error (load: 10, models: 5)")
    ap.add_argument("--synthetic-items", type=int, default=1_000_000, help="load: 0 skips the synthetic catalogue")
    ap.add_argument("--post-rate", type=float, default=20.0,
                    help="load: plays posted per second beside the readers (HetRec; 0: no posting phase)")
    ap.add_argument("--server-args", default="--no-access-log", help="extra arguments for `musicrec serve`")
    ap.add_argument("--models", default="", help="models: comma-separated subset (default all)")
    ap.add_argument("--datasets", default=",".join(DATASETS), help="models: comma-separated subset of "
                                                                   + ", ".join(DATASETS))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "musicrec-serve-models"),
                    help="models: splits, trained models and server logs (kept: a re-run only serves)")
    ap.add_argument("--retrain", action="store_true", help="models: train again even when cached")
    ap.add_argument("--epochs", type=int, default=1, help="models: training epochs of the deep models")
    ap.add_argument("--train-only", action="store_true", help="models: train (or find cached) and stop")
    ap.add_argument("--quick", action="store_true", help="models: smoke run, 3 s per model, not written to results/")
    ap.add_argument("--out", help="results file (default benchmarks/results/serve_load.md or serve_models.md)")
    args = ap.parse_args(argv)
    if args.suite == "models":
        args.seconds = args.seconds or (3.0 if args.quick else 20.0)
        args.max_requests = args.max_requests or 10_000
        args.rate = float(args.rate or 500)
        args.warmup = 1.0 if args.quick else 2.0
        args.request_timeout = args.request_timeout or 5.0
        return models_suite(args)
    args.seconds = args.seconds or 20.0
    args.request_timeout = args.request_timeout or 10.0
    args.max_requests = args.max_requests or 50_000
    args.rates = [float(r) for r in (args.rate or "300,500").split(",") if r]
    args.out = args.out or os.path.join(HERE, "results", "serve_load.md")

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
            for phase, load, r in load_phases(port, users, items, args, can_post=label.startswith("HetRec")):
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
