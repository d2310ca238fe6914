"""Synthetic listening logs with the shape of real scrobble data, as a folder of Parquet files.

    python benchmarks/synthetic_logs.py --plays 1e7 --out /tmp/logs-10m [--seed 0]
                                        [--plays-per-file 1e6] [--zipf 0.9] ...
    musicrec ingest parquet /tmp/logs-10m --store /tmp/store-10m

Every file holds about ``--plays-per-file`` plays of a block of listeners (all of a listener's
plays are in one file) sorted by time, with the columns the Parquet reader maps by name
(``musicrec.ingest.tabular``): ``user``, ``artist``, ``track`` (int64 ids), ``timestamp`` (Unix
seconds) and ``ms_played``. Files are generated one at a time from ``(seed, file number)``, so
100M plays never sit in memory and the output does not depend on anything but the arguments.

What makes the logs realistic (defaults calibrated on the 30Music slices in ``../shared/data``:
next artist equal to the previous one in 49% of plays, 5.8% next track equal, 12.8 plays per
session (median 8), 252 s median gap inside a session):

* catalogue: ``n_tracks`` tracks owned by artists with Pareto-distributed catalogue sizes; track
  popularity is Zipf(``--zipf``) over a random rank order, so artists with more tracks are more
  popular on the whole; each track has a fixed duration (log-normal, median 220 s);
* listeners: Pareto-distributed activity (a few heavy listeners, a long tail of light ones),
  each active over a random span of 2 to 24 months;
* sessions: geometric lengths (mean ``--session-mean``), plays back to back (previous play's
  listened time + a short pause), sessions separated by more than 30 minutes;
* what is played: each play is (a) a fresh pick by global popularity, (b) another track of the
  previous play's artist (album / artist listening), or (c) a replay of a track from the
  listener's recent history (geometric look-back); probabilities differ at session starts;
* skips and partial plays: ``--skip`` of plays last under 30 s, ``--partial`` stop part-way;
* double scrobbles: ``--duplicates`` of plays appear twice (same listener, track and second),
  so ``--plays`` counts distinct plays and the files hold slightly more rows.

Modes (b) and (c) make each play depend on earlier ones; they are resolved without a Python
loop by pointer doubling (each play points at the play it copies from; ``log2`` rounds of
``root = root[root]`` reach the fresh pick at the start of every chain).
The generated statistics are printed and written to ``<out>/_stats.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

DAY_S = 86_400
SESSION_GAP_S = 1_800          # musicrec's default sessionize gap; sessions here are split by more
T_START = 1_546_300_800        # 2019-01-01 UTC: listeners start within the following year


@dataclass
class LogConfig:
    """Parameters of the generator (defaults: 30Music-like behaviour; see the module docstring).

    Sizes left at 0 follow the number of plays: ``n_users = plays / 500``, ``n_tracks =
    plays / 15``, ``n_artists = n_tracks / 8``: between 30Music (~31M plays over ~5.6M tracks)
    and Last.fm-1K (~19M plays over ~1M tracks), a few to ten tracks per artist.
    """

    plays: int = 1_000_000
    seed: int = 0
    plays_per_file: int = 1_000_000
    n_users: int = 0
    n_tracks: int = 0
    n_artists: int = 0
    zipf: float = 0.9              # track popularity exponent
    artist_alpha: float = 1.2      # Pareto tail of artist catalogue sizes
    user_alpha: float = 1.3        # Pareto tail of listener activity
    max_user_plays: int = 200_000  # the heaviest Last.fm-1K listeners have ~180k scrobbles
    session_mean: float = 12.0     # plays per session (geometric)
    p_same_artist: float = 0.51    # inside a session: another track of the previous artist
    p_replay: float = 0.10         # inside a session: replay of a recent track
    p_same_artist_start: float = 0.15   # first play of a session: the previous session's artist
    p_replay_start: float = 0.25        # first play of a session: replay of a recent track
    replay_lookback: float = 40.0  # mean look-back (plays) of a replay
    within_skew: float = 1.2       # >1 favours an artist's popular tracks in same-artist picks
    skip: float = 0.12             # plays under 30 s
    partial: float = 0.08          # plays stopped between 30 s and the end
    duplicates: float = 0.002      # double scrobbles: exact copies of a play (two clients)

    def sizes(self) -> tuple[int, int, int]:
        users = self.n_users or max(10, self.plays // 500)
        tracks = self.n_tracks or max(1_000, self.plays // 15)
        artists = self.n_artists or max(100, tracks // 8)
        return users, min(artists, tracks), tracks


# ----------------------------------------------------------------------------- catalogue
@dataclass
class Catalog:
    """Tracks sorted by artist, each artist's tracks by popularity (most popular first).

    Attributes
    ----------
    track_artist : (n_tracks,) int64, artist of each track
    artist_start, artist_size : (n_artists,) int64, the artist's first track and track count
    by_rank : (n_tracks,) int64, track id of each popularity rank (0 = most played)
    cdf : (n_tracks,) float64, cumulative Zipf weight of the ranks, ending at 1
    duration_s : (n_tracks,) int64, track length in seconds
    """

    track_artist: np.ndarray
    artist_start: np.ndarray
    artist_size: np.ndarray
    by_rank: np.ndarray
    cdf: np.ndarray
    duration_s: np.ndarray


def pareto_split(total: int, n: int, alpha: float, rng: np.random.Generator, cap: int | None = None) -> np.ndarray:
    """``n`` positive integers summing to ``total``, Pareto(``alpha``)-distributed, each <= ``cap``."""
    if total < n:
        raise ValueError(f"cannot split {total} into {n} positive parts")
    w = (1.0 - rng.random(n)) ** (-1.0 / alpha)
    extra = total - n
    counts = np.ones(n, dtype=np.int64)
    for _ in range(20):   # rescale what the cap cut off onto the others
        share = w / w.sum()
        add = np.floor(share * extra).astype(np.int64)
        if cap is not None:
            add = np.minimum(add, cap - counts)
        counts += add
        extra -= int(add.sum())
        w = np.where(counts >= (cap or np.iinfo(np.int64).max), 0.0, w)
        if extra < n or not w.any():
            break
    if extra > 0:   # the rounding remainder: one more play for randomly chosen open slots
        open_ = np.flatnonzero(w > 0) if w.any() else np.arange(n)
        np.add.at(counts, rng.choice(open_, size=extra, replace=True), 1)
    return counts


def make_catalog(cfg: LogConfig) -> Catalog:
    _, n_artists, n_tracks = cfg.sizes()
    rng = np.random.default_rng([cfg.seed, 1])
    size = pareto_split(n_tracks, n_artists, cfg.artist_alpha, rng, cap=max(1, n_tracks // 50))
    artist_of_slot = np.repeat(np.arange(n_artists, dtype=np.int64), size)
    rank_of_slot = rng.permutation(n_tracks).astype(np.int64)
    # Track ids: by artist, then by popularity inside the artist.
    order = np.lexsort((rank_of_slot, artist_of_slot))
    track_artist = artist_of_slot[order]
    rank = rank_of_slot[order]
    by_rank = np.empty(n_tracks, dtype=np.int64)
    by_rank[rank] = np.arange(n_tracks, dtype=np.int64)
    cdf = np.cumsum(np.arange(1, n_tracks + 1, dtype=np.float64) ** -cfg.zipf)
    cdf /= cdf[-1]
    start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    duration = np.clip(np.exp(rng.normal(np.log(220.0), 0.35, n_tracks)), 45, 900).astype(np.int64)
    return Catalog(track_artist, start, size.astype(np.int64), by_rank, cdf, duration)


# ----------------------------------------------------------------------------- plays
def _resolve(parent: np.ndarray) -> np.ndarray:
    """Root of every node of a forest given as parent pointers (a root points at itself)."""
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def generate_block(cat: Catalog, counts: np.ndarray, first_user: int, cfg: LogConfig,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plays of listeners ``first_user, first_user + 1, ...`` with ``counts[k]`` plays each.

    Returns
    -------
    dict of int64 arrays in time order per listener: ``user``, ``artist``, ``track``,
    ``timestamp`` (Unix s), ``ms_played``, ``new_session`` (bool); ``sum(counts)`` plays plus
    about ``duplicates * sum(counts)`` exact copies (double scrobbles).
    """
    n_users = len(counts)
    m = int(counts.sum())
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    ustart = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    idx = np.arange(m, dtype=np.int64)
    first = np.zeros(m, dtype=bool)
    first[ustart] = True
    new_session = first | (rng.random(m) < 1.0 / cfg.session_mean)

    # What each play is: 0 fresh pick, 1 same artist as the previous play, 2 replay.
    u = rng.random(m)
    p_same = np.where(new_session, cfg.p_same_artist_start, cfg.p_same_artist)
    p_rep = np.where(new_session, cfg.p_replay_start, cfg.p_replay)
    mode = np.where(u < p_same, 1, np.where(u < p_same + p_rep, 2, 0))
    mode[first] = 0
    lag = rng.geometric(1.0 / cfg.replay_lookback, m)
    src = np.maximum(idx - lag, ustart[user])

    # Artists: a fresh pick roots its chain; same-artist plays point at the previous play and
    # replays at the replayed play.
    fresh = cat.by_rank[np.minimum(np.searchsorted(cat.cdf, rng.random(m)), len(cat.cdf) - 1)]
    parent = np.where(mode == 0, idx, np.where(mode == 1, idx - 1, src))
    artist = cat.track_artist[fresh[_resolve(parent)]]
    # Tracks: fresh picks and same-artist picks are roots (the latter drawn inside the artist,
    # its hits first); replays copy the track of the play they point at.
    size = cat.artist_size[artist]
    within = cat.artist_start[artist] + np.minimum((size * rng.random(m) ** cfg.within_skew).astype(np.int64), size - 1)
    base = np.where(mode == 1, within, fresh)
    track = base[_resolve(np.where(mode == 2, src, idx))]

    # Listened time: skips (< 30 s), partial plays, otherwise the whole track.
    dur_ms = cat.duration_s[track] * 1000
    v = rng.random(m)
    ms = np.where(v < cfg.skip, rng.integers(1_000, 30_000, m),
                  np.where(v < cfg.skip + cfg.partial,
                           (30_000 + rng.random(m) * np.maximum(dur_ms - 30_000, 1)).astype(np.int64), dur_ms))

    # Time: back to back inside a session; between sessions more than 30 min, spread so that
    # each listener's sessions cover their active span.
    n_sess = np.bincount(user, weights=new_session, minlength=n_users)
    span = rng.uniform(60, 730, n_users) * DAY_S
    mean_gap = np.maximum(span / np.maximum(n_sess, 1), 2 * SESSION_GAP_S)
    prev_ms = np.concatenate([[0], ms[:-1]])
    gap = np.where(new_session,
                   SESSION_GAP_S + 1 + rng.exponential(1.0, m) * (mean_gap[user] - SESSION_GAP_S),
                   prev_ms / 1000 + rng.exponential(15.0, m)).astype(np.int64)
    gap[first] = 0
    cs = np.cumsum(gap)
    t0 = T_START + (rng.random(n_users) * 365 * DAY_S).astype(np.int64)
    ts = t0[user] + cs - cs[ustart][user]
    out = dict(user=user + first_user, artist=artist, track=track, timestamp=ts, ms_played=ms,
               new_session=new_session)
    # Double scrobbles: a copy right after the original (not a new session, so stats hold).
    dup = np.flatnonzero(rng.random(m) < cfg.duplicates)
    if len(dup):
        at = np.sort(np.concatenate([idx, dup]), kind="stable")
        out = {k: v[at] for k, v in out.items()}
        out["new_session"][1:] &= at[1:] != at[:-1]
    return out


# ----------------------------------------------------------------------------- statistics
class Stats:
    """Running statistics over generated blocks (each block: whole listeners, in time order)."""

    def __init__(self, n_tracks: int, n_artists: int):
        self.track_plays = np.zeros(n_tracks, dtype=np.int64)
        self.artist_plays = np.zeros(n_artists, dtype=np.int64)
        self.session_len = np.zeros(1001, dtype=np.int64)
        self.n = self.pairs = self.same_artist = self.same_track = self.replays = self.skips = self.dups = 0
        self.users = self.sessions = 0
        self.t_min, self.t_max = np.iinfo(np.int64).max, 0

    def add(self, b: dict[str, np.ndarray]) -> None:
        user, artist, track = b["user"], b["artist"], b["track"]
        same_user = user[1:] == user[:-1]
        dup = np.zeros(len(user), dtype=bool)
        dup[1:] = same_user & (track[1:] == track[:-1]) & (b["timestamp"][1:] == b["timestamp"][:-1])
        self.dups += int(dup.sum())
        b = {k: v[~dup] for k, v in b.items()}
        user, artist, track = b["user"], b["artist"], b["track"]
        same_user = user[1:] == user[:-1]
        self.n += len(user)
        self.pairs += int(same_user.sum())
        self.same_artist += int((same_user & (artist[1:] == artist[:-1])).sum())
        self.same_track += int((same_user & (track[1:] == track[:-1])).sum())
        key = (user - user.min()) * len(self.track_plays) + track
        self.replays += len(key) - len(np.unique(key))
        self.skips += int((b["ms_played"] < 30_000).sum())
        self.users += len(np.unique(user))
        starts = np.flatnonzero(b["new_session"])
        self.sessions += len(starts)
        lengths = np.diff(np.append(starts, len(user)))
        self.session_len += np.bincount(np.minimum(lengths, 1000), minlength=1001)
        self.track_plays += np.bincount(track, minlength=len(self.track_plays))
        self.artist_plays += np.bincount(artist, minlength=len(self.artist_plays))
        self.t_min = min(self.t_min, int(b["timestamp"].min()))
        self.t_max = max(self.t_max, int(b["timestamp"].max()))

    @staticmethod
    def _top_share(counts: np.ndarray, frac: float = 0.01) -> float:
        c = np.sort(counts)[::-1]
        return float(c[: max(1, int(len(c) * frac))].sum() / max(c.sum(), 1))

    def summary(self) -> dict:
        cdf = np.cumsum(self.session_len) / max(self.sessions, 1)
        return dict(
            plays=self.n, rows=self.n + self.dups, duplicates=self.dups, users=self.users,
            tracks_played=int((self.track_plays > 0).sum()),
            artists_played=int((self.artist_plays > 0).sum()),
            next_artist_repeat=self.same_artist / max(self.pairs, 1),
            next_track_repeat=self.same_track / max(self.pairs, 1),
            replay_share=self.replays / max(self.n, 1),
            skip_share=self.skips / max(self.n, 1),
            top1pct_track_share=self._top_share(self.track_plays),
            top1pct_artist_share=self._top_share(self.artist_plays),
            sessions=self.sessions, plays_per_session=self.n / max(self.sessions, 1),
            median_session_len=int(np.searchsorted(cdf, 0.5)),
            first_day=time.strftime("%Y-%m-%d", time.gmtime(self.t_min)),
            last_day=time.strftime("%Y-%m-%d", time.gmtime(self.t_max)),
        )


# ----------------------------------------------------------------------------- files
def generate(cfg: LogConfig, out: str, verbose: bool = True) -> dict:
    """Write the logs to ``out/part-00000.parquet, ...`` and return the generated statistics.

    Files are written to a temporary name and renamed; ``out/_stats.json`` (config + stats) is
    written last, so its presence marks a complete folder.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_users, n_artists, n_tracks = cfg.sizes()
    os.makedirs(out, exist_ok=True)
    cat = make_catalog(cfg)
    counts = pareto_split(cfg.plays, n_users, cfg.user_alpha, np.random.default_rng([cfg.seed, 2]),
                          cap=max(cfg.max_user_plays, -(-cfg.plays // n_users)))
    # Listeners in blocks of about plays_per_file plays (a heavy listener never straddles two).
    block = (np.cumsum(counts) - 1) // max(cfg.plays_per_file, 1)
    bounds = np.flatnonzero(np.diff(block)) + 1
    edges = np.concatenate([[0], bounds, [n_users]])
    edges = np.unique(edges)
    stats = Stats(n_tracks, n_artists)
    t0 = time.perf_counter()
    for f, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        rng = np.random.default_rng([cfg.seed, 3, f])
        blk = generate_block(cat, counts[a:b], int(a), cfg, rng)
        stats.add(blk)
        order = np.argsort(blk["timestamp"], kind="stable")
        table = pa.table({c: blk[c][order] for c in ("user", "artist", "track", "timestamp", "ms_played")})
        path = os.path.join(out, f"part-{f:05d}.parquet")
        pq.write_table(table, path + ".tmp", compression="zstd")
        os.replace(path + ".tmp", path)
        if verbose:
            print(f"  {path}: {table.num_rows:,} plays, {b - a:,} listeners "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    summary = dict(stats.summary(), files=len(edges) - 1, catalog_tracks=n_tracks, catalog_artists=n_artists,
                   generate_s=round(time.perf_counter() - t0, 1))
    with open(os.path.join(out, "_stats.json.tmp"), "w", encoding="utf-8") as fh:
        json.dump({"config": asdict(cfg), "stats": summary}, fh, indent=2)
    os.replace(os.path.join(out, "_stats.json.tmp"), os.path.join(out, "_stats.json"))
    return summary


def format_stats(s: dict) -> str:
    return (f"{s['rows']:,} rows: {s['plays']:,} plays + {s['duplicates']:,} double scrobbles by "
            f"{s['users']:,} listeners over {s['tracks_played']:,} tracks / {s['artists_played']:,} artists "
            f"({s['first_day']} .. {s['last_day']}), {s['files']} files\n"
            f"  next artist = previous {s['next_artist_repeat']:.1%}, next track = previous "
            f"{s['next_track_repeat']:.1%}, replays of an earlier (listener, track) {s['replay_share']:.1%}, "
            f"skips (< 30 s) {s['skip_share']:.1%}\n"
            f"  top 1% of tracks get {s['top1pct_track_share']:.1%} of plays "
            f"(artists {s['top1pct_artist_share']:.1%}); "
            f"{s['plays_per_session']:.1f} plays per session (median {s['median_session_len']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plays", type=float, default=1e6, help="number of plays, e.g. 1e6, 1e7, 1e8")
    ap.add_argument("--out", required=True, help="output folder (created)")
    for f, default in asdict(LogConfig()).items():
        if f != "plays":
            kind = (lambda v: int(float(v))) if isinstance(default, int) else float   # "1e6" is an int too
            ap.add_argument("--" + f.replace("_", "-"), type=kind, default=default)
    ap.add_argument("--quiet", action="store_true")
    args = vars(ap.parse_args(argv))
    out, quiet = args.pop("out"), args.pop("quiet")
    args["plays"] = int(args["plays"])
    cfg = LogConfig(**args)
    print(format_stats(generate(cfg, out, verbose=not quiet)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
