"""Posting plays into the store, many times: does a post stay as fast as the first one?

Ingests HetRec into a fresh store, then posts ``--posts`` plays one request at a time, as the HTTP
server does (``serve.events.StoreWriter.append``: duplicate check against the listener's stored
plays, one Delta append, a bucket compacted once ``COMPACT_FILES`` small files piled up), each by
one of the HetRec listeners, of one of its artists. Reports the median and p99 latency of the
first and of the last ``--window`` posts, and their ratio (goal: last median <= 1.5 x first), to
``benchmarks/results/store_posts.md``.

    python benchmarks/store_posts.py --posts 50000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np
import polars as pl

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data", "hetrec2011-lastfm-2k")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=50_000)
    ap.add_argument("--window", type=int, default=500, help="posts averaged at the start and at the end")
    ap.add_argument("--data", default=SHARED)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "store_posts.md"))
    args = ap.parse_args(argv)

    from musicrec.serve.events import StoreWriter
    from musicrec.store import Store, ingest_path
    from musicrec.store import writer as store_writer

    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        t = time.perf_counter()
        ingest_path("hetrec-lastfm-2k", args.data, store)
        ingest_s = time.perf_counter() - t
        s = Store(store)
        users = s.table("users")["user_id"].to_numpy()
        artists = s.table("artists")["artist_id"].to_numpy()
        rng = np.random.default_rng(0)
        w = StoreWriter(store)
        t0 = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        lat = np.zeros(args.posts)
        for i in range(args.posts):
            frame = pl.DataFrame({
                "user_id": [int(users[rng.integers(len(users))])], "user": [None],
                "artist_id": [int(artists[rng.integers(len(artists))])],
                "timestamp": pl.Series([t0 + dt.timedelta(seconds=i)], dtype=pl.Datetime("us", "UTC"))})
            t = time.perf_counter()
            report = w.append(frame)
            lat[i] = time.perf_counter() - t
            assert report.plays_added == 1
            if (i + 1) % 5000 == 0:
                print(f"{i + 1:,} posts, last 500 median {np.median(lat[i - 499:i + 1]) * 1e3:.1f} ms", flush=True)
        total = s.manifest()["tables"]["plays"]
        files = int(len(os.listdir(os.path.join(store, "plays", "_delta_log"))))
    n = min(args.window, args.posts // 2)
    first, last = lat[:n] * 1e3, lat[-n:] * 1e3
    ratio = np.median(last) / np.median(first)
    lines = [
        "# Posting plays: latency after many posts",
        "",
        f"`python benchmarks/store_posts.py --posts {args.posts}` on {os.cpu_count()} CPU(s), "
        f"{dt.date.today().isoformat()}. HetRec ingested first ({ingest_s:.1f} s, 92,834 plays); then "
        f"{args.posts:,} posts of one play each, one at a time, through `StoreWriter.append` (what `POST /v1/events` "
        f"calls): a duplicate check against the listener's stored plays and one Delta append; a bucket is "
        f"compacted once it holds {store_writer.COMPACT_FILES} files.",
        "",
        "| posts | median ms | p99 ms | max ms |",
        "|---|---:|---:|---:|",
        f"| first {n:,} | {np.median(first):.1f} | {np.percentile(first, 99):.1f} | {first.max():.1f} |",
        f"| last {n:,} | {np.median(last):.1f} | {np.percentile(last, 99):.1f} | {last.max():.1f} |",
        "",
        f"Last / first median: **{ratio:.2f}x** (goal <= 1.5x). Plays stored afterwards: {total:,} "
        f"(= 92,834 + {args.posts:,}: {'yes' if total == 92_834 + args.posts else 'NO'}); "
        f"files in the plays log folder: {files:,}.",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ratio <= 1.5 and total == 92_834 + args.posts else 1


if __name__ == "__main__":
    sys.exit(main())
