"""Ingest and preprocessing throughput and peak memory from 1M to 100M synthetic plays.

    python benchmarks/scale.py [--sizes 1e6,1e7,1e8] [--work /tmp/musicrec-scale]
                               [--stages ingest,clean,user-holdout,temporal] [--mem-limit-gb 20]
                               [--min-free-gb 18] [--reuse 1e8] [--keep] [--out benchmarks/results/scale.md]

For each size: generate listening logs with ``benchmarks/synthetic_logs.py`` (cached in
``--work``; not timed), then run each stage in a fresh Python process so that its peak memory
is its own:

* ``ingest``: ``musicrec.store.ingest_path("parquet", logs, store)`` into an empty store;
* ``user-holdout`` / ``temporal``: ``musicrec.preprocess.split.make_split(store, protocol,
  item_level="track", out=...)`` (dedupe, drop short plays, sessionize, events, protocol, save);
* ``clean``: the per-listener cleaning steps of ``make_split`` alone, partition by partition
  (read, dedupe, drop_short_plays, sessionize, to_events), each step timed — the preprocessing
  without the protocol, the catalogue and the writing of the split.

Reported per stage: wall seconds of the call (interpreter start and imports excluded), input
plays per second (per wall second and per CPU second), peak resident memory of the process
(``ru_maxrss`` from ``wait4``), and rows out. A watchdog kills a stage whose resident memory
passes ``--mem-limit-gb`` (20), so a blow-up fails cleanly instead of making the kernel kill
other work; ``RLIMIT_AS`` (``--as-limit-gb``, 48) is only a backstop, because Polars reserves
far more address space than it touches. Sizes whose run needs more memory than is free
(``--min-free-gb`` for 1e8) are skipped and reported as such. The machine's state (cores,
memory, load, busiest processes) and the code measured (git commit, uncommitted changes) are
written with the table, since timings on a shared machine are noisy.

Each stage's result is saved as ``<work>/results-<size>-<stage>.json``; ``--reuse 1e8`` puts
saved results into the table instead of running those stages again (their rows say when they
were measured), and runs only the stages without one (on the store left by ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STAGES = ("ingest", "clean", "user-holdout", "temporal")


# ----------------------------------------------------------------------------- child side
def _child(stage: str, args: dict) -> dict:
    """Run one stage in this (fresh) process; returns what the parent reports."""
    store = args["store"]
    t0 = time.perf_counter()
    if stage == "ingest":
        from musicrec.store import ingest_path

        report = ingest_path("parquet", args["logs"], store, **args.get("ingest_options", {}))
        return dict(seconds=time.perf_counter() - t0, rows_out=report.counts.get("plays"),
                    detail=dict(added=report.plays_added, duplicate=report.plays_duplicate,
                                tracks=report.counts.get("tracks"), users=report.counts.get("users")))
    if stage == "clean":
        return _clean_profile(store)
    from musicrec.preprocess.split import make_split

    split = make_split(store, stage, item_level="track", out=args["split_out"], **args.get("split_options", {}))
    seconds = time.perf_counter() - t0
    parts = {p: getattr(split, p).height for p in ("train", "valid", "test") if getattr(split, p) is not None}
    pre = split.meta.get("preprocess", {})
    return dict(seconds=seconds, rows_out=sum(parts.values()),
                detail=dict(parts, dropped_duplicates=pre.get("dropped_duplicates"),
                            dropped_short=pre.get("dropped_short")))


def _clean_profile(store_url: str) -> dict:
    """Time the cleaning steps of ``make_split`` one by one over the store's play partitions."""
    from musicrec import schema
    from musicrec.preprocess.clean import dedupe, drop_short_plays, to_events
    from musicrec.preprocess.sessionize import sessionize
    from musicrec.store import Store, read_play_partition

    steps = dict(read=0.0, dedupe=0.0, drop_short=0.0, sessionize=0.0, to_events=0.0)
    rows = 0
    t_all = time.perf_counter()
    for url in Store(store_url).play_partitions():
        t = time.perf_counter()
        plays = schema.conform(read_play_partition(url), schema.STORE_PLAYS)
        steps["read"] += time.perf_counter() - t
        t = time.perf_counter()
        plays = dedupe(plays)
        steps["dedupe"] += time.perf_counter() - t
        t = time.perf_counter()
        plays, _ = drop_short_plays(plays, 30_000)
        steps["drop_short"] += time.perf_counter() - t
        t = time.perf_counter()
        plays = sessionize(plays, gap_s=1800)
        steps["sessionize"] += time.perf_counter() - t
        t = time.perf_counter()
        events = to_events(plays, item_level="track")
        steps["to_events"] += time.perf_counter() - t
        rows += events.height
        del plays, events
    return dict(seconds=time.perf_counter() - t_all, rows_out=rows,
                detail={k: round(v, 2) for k, v in steps.items()})


def child_main(stage: str, args_json: str, result_path: str) -> int:
    limit = int(json.loads(args_json).get("mem_limit_bytes", 0))
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result = _child(stage, json.loads(args_json))
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


# ----------------------------------------------------------------------------- parent side
def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_stage(stage: str, args: dict, limit_gb: float, as_limit_gb: float, threads: int) -> dict:
    """Run ``stage`` in a fresh process; wall time, peak RSS and the child's result."""
    result_path = os.path.join(args["work"], f".result-{stage}.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    limit = int(limit_gb * 2**30)
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads), OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "_child", stage,
           json.dumps(dict(args, mem_limit_bytes=int(as_limit_gb * 2**30))), result_path]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    killed = []

    def watchdog():
        while proc.poll() is None:
            if _rss_bytes(proc.pid) > limit:
                killed.append(True)
                proc.send_signal(signal.SIGKILL)
                return
            time.sleep(0.1)

    threading.Thread(target=watchdog, daemon=True).start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    out = dict(stage=stage, returncode=proc.returncode, process_s=wall, peak_rss_gb=usage.ru_maxrss / 2**20,
               cpu_s=usage.ru_utime + usage.ru_stime)
    if proc.returncode == 0 and os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as fh:
            out.update(json.load(fh))
    else:
        out["error"] = (f"killed by the watchdog: resident memory passed {limit_gb:g} GiB" if killed
                        else f"exit code {proc.returncode} (out of memory under RLIMIT_AS {as_limit_gb:g} GiB, "
                             "or a crash; see its stderr)")
    return out


def code_state() -> str:
    """Which musicrec the stages import: the git commit, uncommitted changes, PYTHONPATH."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain", "src").splitlines()]
    extra = f", PYTHONPATH={os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else ""
    return (f"git {git('rev-parse', '--short', 'HEAD')}"
            + (f" + uncommitted changes in {len(dirty)} file(s) under src/" if dirty else "") + extra)


def free_gb() -> float:
    with open("/proc/meminfo", encoding="ascii") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) for line in fh}
    return info["MemAvailable"] / 2**20


def machine() -> str:
    """Cores, memory, load and the busiest other processes, for the record."""
    with open("/proc/meminfo", encoding="ascii") as fh:
        total = int(fh.readline().split()[1]) / 2**20
    ps = subprocess.run(["ps", "-eo", "pcpu,rss,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [" ".join(line.split()) for line in ps.splitlines()[1:6]]
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores, {total:.0f} GiB RAM ({free_gb():.1f} GiB available), load average "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; busiest processes (%cpu rss-KiB name): "
            + "; ".join(busy))


def ensure_logs(plays: int, work: str, seed: int) -> tuple[str, dict]:
    """The generated logs for ``plays`` (reused when a complete folder with the same config exists)."""
    sys.path.insert(0, HERE)
    from synthetic_logs import LogConfig, format_stats, generate

    from dataclasses import asdict

    cfg = LogConfig(plays=plays, seed=seed)
    out = os.path.join(work, f"logs-{plays:.0e}".replace("+", ""))
    stats_path = os.path.join(out, "_stats.json")
    if os.path.exists(stats_path):
        with open(stats_path, encoding="utf-8") as fh:
            saved = json.load(fh)
        if saved["config"] == asdict(cfg):
            return out, saved["stats"]
    shutil.rmtree(out, ignore_errors=True)
    print(f"generating {plays:,} plays in {out}", flush=True)
    stats = generate(cfg, out, verbose=False)
    print(format_stats(stats), flush=True)
    return out, stats


def _saved_path(work: str, plays: int, stage: str) -> str:
    return os.path.join(work, f"results-{plays:.0e}-{stage}.json".replace("+", ""))


def _load_saved(work: str, plays: int, stage: str) -> dict | None:
    path = _saved_path(work, plays, stage)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _save(work: str, plays: int, stage: str, entry: dict) -> None:
    path = _saved_path(work, plays, stage)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(entry, fh, indent=1)
    os.replace(path + ".tmp", path)


def _fmt_size(n: int) -> str:
    return f"{n / 1e6:g}M"


def table(results: list[dict]) -> str:
    lines = ["| plays | stage | wall s | plays/s | peak RSS GiB | CPU s | plays per CPU-s | rows out | notes |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "seconds" in r:
            notes = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in r["detail"].items())
            if r.get("reused"):
                notes += f" (earlier run, {r['reused']})"
            lines.append(f"| {_fmt_size(r['plays'])} | {r['stage']} | {r['seconds']:.1f} | "
                         f"{r['rows_in'] / r['seconds']:,.0f} | {r['peak_rss_gb']:.2f} | {r['cpu_s']:.1f} | "
                         f"{r['rows_in'] / max(r['cpu_s'], 1e-9):,.0f} | {r['rows_out']:,} | {notes} |")
        else:
            when = f" (earlier run, {r['reused']})" if r.get("reused") else ""
            lines.append(f"| {_fmt_size(r['plays'])} | {r['stage']} | — | — | "
                         f"{r.get('peak_rss_gb', float('nan')):.2f} | — | — | — | FAILED: {r['error']}{when} |")
    return "\n".join(lines)


def growth(results: list[dict]) -> str:
    """Time and memory ratios between consecutive sizes, per stage."""
    lines = ["| stage | sizes | plays × | wall × | CPU × | peak RSS × |", "|---|---|---:|---:|---:|---:|"]
    by_stage: dict[str, list[dict]] = {}
    for r in results:
        if "seconds" in r:
            by_stage.setdefault(r["stage"], []).append(r)
    for stage, rs in by_stage.items():
        rs = sorted(rs, key=lambda r: r["plays"])
        for a, b in zip(rs, rs[1:]):
            lines.append(f"| {stage} | {_fmt_size(a['plays'])} → {_fmt_size(b['plays'])} | "
                         f"{b['plays'] / a['plays']:.0f} | {b['seconds'] / a['seconds']:.1f} | "
                         f"{b['cpu_s'] / max(a['cpu_s'], 1e-9):.1f} | "
                         f"{b['peak_rss_gb'] / a['peak_rss_gb']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e6,1e7,1e8")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"some of {', '.join(STAGES)}")
    ap.add_argument("--work", default="/tmp/musicrec-scale", help="generated logs, stores and splits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="POLARS_MAX_THREADS of each stage")
    ap.add_argument("--mem-limit-gb", type=float, default=20.0, help="resident memory at which a stage is killed")
    ap.add_argument("--as-limit-gb", type=float, default=48.0,
                    help="RLIMIT_AS of a stage: Polars reserves address space well beyond what it touches, "
                         "so this is a loose backstop against runaway allocations, not the memory goal")
    ap.add_argument("--min-free-gb", type=float, default=18.0, help="needed free memory to run 1e8 or more")
    ap.add_argument("--ingest-option", action="append", default=[], metavar="K=V",
                    help="extra keyword for ingest_path (JSON value), e.g. engine='\"local\"'")
    ap.add_argument("--split-option", action="append", default=[], metavar="K=V",
                    help="extra keyword for make_split (JSON value)")
    ap.add_argument("--keep", action="store_true", help="keep the stores and splits")
    ap.add_argument("--reuse", default="", metavar="SIZES",
                    help="sizes whose saved stage results (<work>/results-<size>-<stage>.json, written by an "
                         "earlier run) go into the table instead of being run again; marked as such. Stages "
                         "without a saved result run (on the store kept by --keep when ingest is reused)")
    ap.add_argument("--note", action="append", default=[], help="a line for the Notes section (repeatable)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scale.md"))
    args = ap.parse_args(argv)

    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    stages = [s for s in args.stages.split(",") if s]
    opts = lambda kvs: {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in kvs)}  # noqa: E731
    reuse = {int(float(s)) for s in args.reuse.split(",") if s}
    os.makedirs(args.work, exist_ok=True)
    conditions = [f"start: {machine()}", f"code: {code_state()}"]
    results, gen, skipped = [], {}, []
    for plays in sizes:
        saved = {st: _load_saved(args.work, plays, st) for st in stages} if plays in reuse else {}
        to_run = [st for st in stages if not saved.get(st)]
        need = args.min_free_gb if plays >= 100_000_000 else min(args.min_free_gb, 6.0 * plays / 1e7 + 2)
        if to_run and free_gb() < need:
            skipped.append(f"{_fmt_size(plays)}: skipped, {free_gb():.1f} GiB available < {need:.0f} GiB needed")
            print(skipped[-1], flush=True)
            continue
        logs, stats = ensure_logs(plays, args.work, args.seed)
        gen[plays] = stats
        store = os.path.join(args.work, f"store-{_fmt_size(plays)}")
        if "ingest" in to_run:
            shutil.rmtree(store, ignore_errors=True)
        for stage in stages:
            if saved.get(stage):
                results.append(dict(saved[stage]["result"], reused=saved[stage]["measured_at"]))
                conditions.append(f"{_fmt_size(plays)} {stage} (earlier run, {saved[stage]['measured_at']}): "
                                  f"{saved[stage]['machine']}; code: {saved[stage]['code']}")
                continue
            child_args = dict(work=args.work, logs=logs, store=store,
                              split_out=os.path.join(args.work, f"split-{_fmt_size(plays)}-{stage}"),
                              ingest_options=opts(args.ingest_option), split_options=opts(args.split_option))
            shutil.rmtree(child_args["split_out"], ignore_errors=True)
            at, state, code = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine(), code_state()
            print(f"{_fmt_size(plays)} {stage}: {free_gb():.1f} GiB available, load {os.getloadavg()[0]:.2f}",
                  flush=True)
            r = run_stage(stage, child_args, args.mem_limit_gb, args.as_limit_gb, args.threads)
            r.update(plays=plays, rows_in=stats["rows"], available_gb=free_gb())
            results.append(r)
            print("  " + json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}),
                  flush=True)
            _save(args.work, plays, stage, dict(result=r, measured_at=at, machine=state, code=code))
            if not args.keep:
                shutil.rmtree(child_args["split_out"], ignore_errors=True)
            if r.get("error") and stage == "ingest":
                break
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
    conditions.append(f"end: {machine()}")

    gen_lines = [f"- {_fmt_size(p)}: {s['rows']:,} rows ({s['duplicates']:,} double scrobbles), {s['users']:,} "
                 f"listeners, {s['tracks_played']:,} tracks, {s['artists_played']:,} artists, {s['files']} file(s); "
                 f"next artist = previous {s['next_artist_repeat']:.1%}, replays {s['replay_share']:.1%}, "
                 f"skips {s['skip_share']:.1%}, top 1% tracks {s['top1pct_track_share']:.1%} of plays, "
                 f"{s['plays_per_session']:.1f} plays/session; generated in {s['generate_s']:.0f} s"
                 for p, s in gen.items()]
    text = "\n".join([
        "# Scale: ingest and preprocessing from 1M to 100M plays",
        "",
        "`python benchmarks/scale.py --sizes " + args.sizes + (f" --reuse {args.reuse}" if args.reuse else "")
        + "` — each stage in a fresh process with "
        f"{args.threads} Polars threads, killed if its resident memory passes {args.mem_limit_gb:g} GiB "
        f"(RLIMIT_AS {args.as_limit_gb:g} GiB as a backstop). plays/s = input rows "
        "(plays + double scrobbles) / wall seconds of the call (imports excluded); peak RSS = the process's "
        "ru_maxrss; CPU s = user + system time of the process (> wall means several cores were used; "
        "< wall means it waited for the CPU, e.g. for other work on a shared machine, so plays per CPU-s "
        "is the steadier figure there).",
        "",
        table(results),
        "",
        "Growth between sizes (how time and memory multiply for 10× the plays; 10 = linear):",
        "",
        growth(results),
        "",
        "Generated logs (`benchmarks/synthetic_logs.py`, seed " + str(args.seed) + "):",
        "",
        *gen_lines, *[f"- {s}" for s in skipped],
        "",
        *(["Notes:", "", *[f"- {n}" for n in args.note], ""] if args.note else []),
        "Machine (shared with other work, so timings are noisy):",
        "",
        *[f"- {c}" for c in conditions],
        "",
    ])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(args.out + ".tmp", args.out)
    print(text)
    return 0 if all("seconds" in r for r in results) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        raise SystemExit(child_main(*sys.argv[2:5]))
    raise SystemExit(main())
