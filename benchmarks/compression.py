"""Compression of a deep sequence model: distillation, int8 / fp16 weights, ONNX Runtime scoring.

    nice python benchmarks/compression.py [--data ../shared/data] [--work /tmp/musicrec-compression]
                                          [--teacher-epochs 8] [--student-epochs 15] [--threads 1]
                                          [--out benchmarks/results/compression.md]

On 30Music session-lastday at artist level (the split ``benchmarks/deep.py`` makes), it trains

* the teacher: SASRec, 4 layers, 256 dims, 4 heads (full softmax, early-stopped on validation MRR@20);
* a student without distillation: SASRec, 1 layer, 64 dims, same training otherwise;
* distilled students (same size) whose loss mixes next-item cross-entropy with the KL divergence
  to the teacher's softened distribution (``musicrec.models.compress``); temperature and alpha
  are picked on the validation part only (a small grid, ``--grid``);

then derives from the best distilled student an fp16-embedding copy, an ONNX export
(``network.onnx``), an ONNX Runtime int8 copy (``network.int8.onnx``) and an int8 copy with fp16
item vectors (plus an ONNX export of the teacher, for the latency of a large network), and measures for each
its size on disk (the files needed to score: ``state.npz`` for torch, the ONNX network + item
vectors for ONNX; the training histories every model folder also holds are left out),
parameter count, scoring latency (ms per batch of 256 histories, the first test sessions, and per
single history: query network + scores over the full catalogue, median of repeats, one thread)
and NDCG@10 / MRR@20 on test. Every model is trained on the training part only (no refit on train + valid)
so all of them see the same data; trained models are kept under ``--work`` and reused by the
next run (``--only teacher|student|distill|measure`` runs one stage, e.g. grid points in
parallel processes). The table ends with paired t-tests on per-prefix NDCG@10.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import polars as pl

HERE = os.path.dirname(os.path.abspath(__file__))

TEACHER = {"embedding_dim": 256, "n_layers": 4, "n_heads": 4, "dropout": 0.3, "max_len": 20, "loss": "ce",
           "learning_rate": 0.001, "batch_size": 128, "patience": 2}
STUDENT = {"embedding_dim": 64, "n_layers": 1, "n_heads": 1, "dropout": 0.3, "max_len": 20, "loss": "ce",
           "learning_rate": 0.003, "batch_size": 128, "patience": 2}
GRID = [(2.0, 0.5), (1.0, 0.5), (1.0, 0.8)]      # (temperature, alpha) tried for the README table


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_split(data: str, work: str):
    from musicrec.preprocess.split import make_split as split_
    from musicrec.preprocess.splitset import Split
    from musicrec.store import ingest_path

    split_dir = os.path.join(work, "split-30music-artist")
    if os.path.isdir(split_dir):
        return Split.load(split_dir), split_dir
    store = os.path.join(work, "store-30music")
    if not os.path.isdir(store):
        ingest_path("30music", os.path.join(data, "30music-200ks-test-slices"), store)
    return split_(store, "session-lastday", item_level="artist", seed=0, out=split_dir), split_dir


def train_events(split):
    from musicrec.features.interactions import Interactions
    from musicrec.train.fit import catalogue, training_events

    events = training_events(split, False)
    return Interactions.from_frame(events, items=catalogue(split, events))


def save_bundle(model, split, split_dir: str, out: str, meta: dict) -> None:
    from musicrec.bundle import ModelBundle

    ModelBundle(model, split.items, split.users, {"item_level": "artist", "split": split_dir, **meta}).save(out)


def fit_or_load(name: str, work: str, split, split_dir: str, params: dict, teacher=None,
                temperature: float = 2.0, alpha: float = 0.5):
    """Train (or reuse from ``work``) one SASRec; returns (model, fit seconds)."""
    from musicrec.models.registry import create, load_model
    from musicrec.train.fit import validation_fn

    out = os.path.join(work, name)
    if os.path.isfile(os.path.join(out, "bench.json")):
        with open(os.path.join(out, "bench.json"), encoding="utf-8") as fh:
            info = json.load(fh)
        return load_model(out), info
    model = create("sasrec", **params)
    train = train_events(split)
    valid = validation_fn(split, "mrr@20")
    start = time.perf_counter()
    on_epoch = lambda epoch, value: log(f"{name}: epoch {epoch}, valid MRR@20 {value:.4f}")  # noqa: E731
    if teacher is None:
        model.fit(train, valid=valid, on_epoch=on_epoch)
    else:
        from musicrec.models.compress import distill

        distill(model, teacher, train, temperature=temperature, alpha=alpha, valid=valid, on_epoch=on_epoch)
    fit_s = time.perf_counter() - start
    info = {"fit_s": fit_s, "epochs": len(model.history_), "best_epoch": model.best_epoch_,
            "valid_mrr20": max(h["value"] for h in model.history_), "params": params,
            "temperature": temperature if teacher is not None else None,
            "alpha": alpha if teacher is not None else None}
    save_bundle(model, split, split_dir, out, {"bench": name})
    with open(os.path.join(out, "bench.json"), "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    log(f"{name}: valid MRR@20 {info['valid_mrr20']:.4f}, {info['epochs']} epochs, {fit_s:.0f} s")
    return model, info


def folder_bytes(path: str, names: list[str]) -> int:
    return sum(os.path.getsize(os.path.join(path, n)) for n in names)


def latency_ms(model, histories, repeats: int) -> float:
    """Median milliseconds of ``model.score(histories)`` (query network + full-catalogue scores)."""
    model.score(histories)                              # warm-up (lazy init, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.score(histories)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def test_histories(split, model, n: int = 256):
    """The first ``n`` test sessions (plays in order) as histories over the model's catalogue."""
    from musicrec.features.interactions import Histories

    index = {int(i): k for k, i in enumerate(model.train_.items.ids)}
    test = split.test.sort(["session_id", "timestamp"], maintain_order=True)
    seqs = []
    for _, g in test.group_by("session_id", maintain_order=True):
        s = [index[int(i)] for i in g["item_id"].to_list() if int(i) in index]
        if s:
            seqs.append(s)
        if len(seqs) == n:
            break
    return Histories.from_sequences(seqs, model.train_.n_items)


def derive(work: str, source: str, name: str, fp16: bool = False, onnx: str | None = None) -> str:
    """Copy model folder ``source`` to ``name`` with fp16 tables and/or an ONNX export ("fp32"/"int8")."""
    from musicrec.bundle import ModelBundle
    from musicrec.models.compress import export_onnx, to_fp16

    out = os.path.join(work, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.environ["MUSICREC_ONNX"] = "off"
    try:
        bundle = ModelBundle.load(os.path.join(work, source))
    finally:
        del os.environ["MUSICREC_ONNX"]
    model = to_fp16(bundle.model) if fp16 else bundle.model
    ModelBundle(model, bundle.items, bundle.users, bundle.meta, item_tags=bundle.item_tags).save(out)
    if onnx:
        export_onnx(model, out, int8=onnx == "int8")
    return out


def measure(rows: list[tuple[str, str, list[str]]], work: str, split, repeats: int) -> list[dict]:
    from musicrec.evaluate.protocols import evaluate
    from musicrec.models.registry import load_model

    out = []
    for label, folder, files in rows:
        path = os.path.join(work, folder)
        model = load_model(path)
        h = test_histories(split, model)
        one = test_histories(split, model, 1)
        res = evaluate(model, split, ks=(10, 20), on="test")
        row = {"label": label, "folder": folder, "scorer": model.scorer, "bytes": folder_bytes(path, files),
               "files": files, "params": int(model.n_parameters()),
               "batch_ms": latency_ms(model, h, max(3, repeats // 10)), "single_ms": latency_ms(model, one, repeats),
               "ndcg@10": res.metrics["ndcg@10"], "mrr@20": res.metrics["mrr@20"],
               "hitrate@20": res.metrics["hitrate@20"], "per_row": res.per_user}
        log(f"{label}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("files", "per_row")))
        out.append(row)
    return out


def paired(a: dict, b: dict, metric: str = "ndcg@10") -> str:
    """Paired t-test of two models' per-prefix ``metric`` on test."""
    from scipy import stats

    ids = ["session_id", "position"]
    j = a["per_row"].select(*ids, pl.col(metric).alias("a")).join(
        b["per_row"].select(*ids, pl.col(metric).alias("b")), on=ids)
    p = stats.ttest_rel(j["a"].to_numpy(), j["b"].to_numpy()).pvalue
    return (f"{a['label']} vs {b['label']}: {metric} {j['a'].mean():.4f} vs {j['b'].mean():.4f} "
            f"(n = {j.height} test prefixes, paired t-test p = {p:.3g})")


def table(rows: list[dict]) -> str:
    teacher = rows[0]
    head = ["model", "scored by", "size on disk", "% of teacher", "parameters", "ms / 256 histories", "ms / 1 history",
            "NDCG@10", "% of teacher", "MRR@20", "HR@20"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["label"], r["scorer"].replace("onnxruntime:", "onnxruntime ").replace("torch", "torch"),
            f"{r['bytes'] / 1e6:.2f} MB", f"{100 * r['bytes'] / teacher['bytes']:.0f} %", f"{r['params']:,}",
            f"{r['batch_ms']:.1f}", f"{r['single_ms']:.2f}", f"{r['ndcg@10']:.4f}",
            f"{100 * r['ndcg@10'] / teacher['ndcg@10']:.1f} %", f"{r['mrr@20']:.4f}", f"{r['hitrate@20']:.4f}"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--work", default="/tmp/musicrec-compression")
    ap.add_argument("--teacher-epochs", type=int, default=8)
    ap.add_argument("--student-epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", default=";".join(f"{t},{a}" for t, a in GRID),
                    help="temperature,alpha pairs tried for distillation (validation picks one)")
    ap.add_argument("--teacher-params", default="{}", help="JSON overriding the teacher's hyperparameters")
    ap.add_argument("--student-params", default="{}", help="JSON overriding the students' hyperparameters")
    ap.add_argument("--only", default="", help="run one stage: teacher, student, distill or measure")
    ap.add_argument("--repeats", type=int, default=50, help="timed repeats of the single-prefix latency")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "compression.md"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("MUSICREC_ONNX_THREADS", str(args.threads))
    os.makedirs(args.work, exist_ok=True)
    split, split_dir = make_split(args.data, args.work)
    stages = [args.only] if args.only else ["teacher", "student", "distill", "measure"]
    teacher = None
    if "teacher" in stages or "distill" in stages:
        teacher, _ = fit_or_load("teacher", args.work, split, split_dir, {**TEACHER, "epochs": args.teacher_epochs,
                                                                          **json.loads(args.teacher_params)})
    student_params = {**STUDENT, "epochs": args.student_epochs, **json.loads(args.student_params)}
    if "student" in stages:
        fit_or_load("student", args.work, split, split_dir, student_params)
    grid = [tuple(float(x) for x in g.split(",")) for g in args.grid.split(";") if g]
    if "distill" in stages:
        for t, a in grid:
            fit_or_load(f"distilled-T{t:g}-a{a:g}", args.work, split, split_dir,
                        student_params, teacher=teacher, temperature=t, alpha=a)
    if "measure" not in stages:
        return 0

    infos = {}
    for name in sorted(os.listdir(args.work)):
        bench = os.path.join(args.work, name, "bench.json")
        if os.path.isfile(bench):
            with open(bench, encoding="utf-8") as fh:
                infos[name] = json.load(fh)
    distilled = {k: v for k, v in infos.items() if k.startswith("distilled-")}
    if "teacher" not in infos or "student" not in infos or not distilled:
        raise SystemExit("train the teacher, the student and at least one distilled student first")
    # validation only: the distilled student with the best validation MRR@20 (the early-stopping metric)
    best = max(distilled, key=lambda k: distilled[k]["valid_mrr20"])
    log(f"best distilled student on validation: {best}")
    derive(args.work, "teacher", "teacher-onnx", onnx="fp32")
    derive(args.work, best, "distilled-fp16", fp16=True)
    derive(args.work, best, "distilled-onnx", onnx="fp32")
    derive(args.work, best, "distilled-int8", onnx="int8")
    derive(args.work, best, "distilled-int8-fp16", fp16=True, onnx="int8")
    onnx32 = ["network.onnx", "item_vectors.npz"]
    onnx8 = ["network.int8.onnx", "item_vectors.npz"]
    rows = [("teacher (4 layers, 256 dims)", "teacher", ["state.npz"]),
            ("teacher, ONNX", "teacher-onnx", onnx32),
            ("student, no distillation (1 layer, 64 dims)", "student", ["state.npz"]),
            (f"distilled student ({best})", best, ["state.npz"]),
            ("distilled student, fp16 embeddings", "distilled-fp16", ["state.npz"]),
            ("distilled student, ONNX", "distilled-onnx", onnx32),
            ("distilled student, ONNX int8", "distilled-int8", onnx8),
            ("distilled student, ONNX int8 + fp16 item vectors", "distilled-int8-fp16", onnx8)]
    results = measure(rows, args.work, split, args.repeats)
    grid_lines = ["| model | temperature | alpha | epochs run (best) | valid MRR@20 | fit s |",
                  "|---|---:|---:|---:|---:|---:|"]
    for name in ["teacher", "student", *sorted(distilled)]:
        i = infos[name]
        grid_lines.append(f"| {name} | {i['temperature'] if i['temperature'] is not None else '–'} | "
                          f"{i['alpha'] if i['alpha'] is not None else '–'} | {i['epochs']} ({i['best_epoch']}) | "
                          f"{i['valid_mrr20']:.4f} | {i['fit_s']:.0f} |")
    load = os.getloadavg()
    text = (f"30Music session-lastday, next artist ({split.train.height:,} training plays); test metrics over the full "
            f"catalogue. torch {torch.__version__}, {args.threads} thread(s) for torch and ONNX Runtime; load average "
            f"{load[0]:.1f} on {os.cpu_count()} cores at the end (other jobs were running: latencies are noisy).\n\n"
            + table(results) + "\n" + paired(results[3], results[2]) + "; "
            + paired(results[0], results[2]) + ".\n\nSize on disk: the files that score (`state.npz` for torch; the ONNX network + "
            "`item_vectors.npz` for ONNX Runtime); every folder also holds the training histories "
            "(`interactions.npz`), the same for all. Latency: `model.score` over the full catalogue (query network + "
            "dot products), median of repeats.\n\nTraining (validation part only; early stopping on MRR@20):\n\n"
            + "\n".join(grid_lines) + "\n")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as fh:
        json.dump({"rows": [{k: v for k, v in r.items() if k != "per_row"} for r in results], "training": infos,
                   "best": best}, fh, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
