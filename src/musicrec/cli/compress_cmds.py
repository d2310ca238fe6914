"""``musicrec compress``: distil a deep model into a smaller one, store it compressed, export it to ONNX.

    musicrec compress distill SPLIT --teacher MODEL_DIR --out DIR [--param embedding_dim=64 ...]
    musicrec compress quantize MODEL_DIR --out DIR [--int8] [--fp16]
    musicrec compress export MODEL_DIR [--int8]
"""

from __future__ import annotations

from typing import Optional

import typer

from musicrec import MusicrecError, fsio


def _size(folder: str, name: str) -> str:
    fs, path = fsio.filesystem(fsio.join(folder, name))
    return f"{name} {fs.size(path) / 1e6:.2f} MB" if fs.isfile(path) else f"{name} ?"


def _check_dir(model_dir: str) -> None:
    if not fsio.exists(model_dir):
        raise MusicrecError(f"{model_dir}: no such model folder")


def _load_bundle(model_dir: str):
    from musicrec.bundle import ModelBundle

    _check_dir(model_dir)
    return ModelBundle.load(model_dir)


def _check_out(out: str, *sources: str) -> None:
    for src in sources:
        if fsio.absolute(out).rstrip("/") == fsio.absolute(src).rstrip("/"):
            raise MusicrecError(f"--out {out} is the input model folder; write the new model to another folder")


def register(app: typer.Typer) -> None:
    compress = typer.Typer(no_args_is_help=True, help="Distil, quantise and export deep models for serving.")
    app.add_typer(compress, name="compress")

    @compress.command()
    def distill(
        split: str = typer.Argument(..., help="split folder (the one the teacher was trained on)"),
        teacher: str = typer.Option(..., "--teacher", help="model folder of the fitted teacher"),
        out: str = typer.Option(..., "--out", help="model folder to write the student to"),
        model: Optional[str] = typer.Option(None, "--model", help="student model (default: the teacher's)"),
        param: Optional[list[str]] = typer.Option(None, "--param",
                                                  help="student name=value, repeatable (e.g. embedding_dim=64)"),
        temperature: float = typer.Option(2.0, "--temperature", help="softening of both distributions (> 0)"),
        alpha: float = typer.Option(0.5, "--alpha", help="weight of the next-item loss; 1 - alpha goes to the teacher"),
        top_k: Optional[int] = typer.Option(None, "--top-k",
                                            help="match the teacher on its top K items only (large catalogues)"),
        include_valid: bool = typer.Option(False, "--include-valid", help="train on train+valid (no early stopping)"),
    ):
        """Train a student model on a split from a fitted teacher's soft targets (knowledge distillation).

        The student starts from the teacher's hyperparameters (or --model's defaults) changed by
        --param, e.g. `--param embedding_dim=64 --param n_layers=1` for a small SASRec.
        """
        import time

        from musicrec.bundle import ModelBundle, bundle_meta
        from musicrec.features.interactions import Interactions
        from musicrec.models.compress import Distillation
        from musicrec.models.registry import create
        from musicrec.preprocess.splitset import Split
        from musicrec.train.fit import catalogue, default_metric, parse_param, training_events, validation_fn

        _check_out(out, teacher)
        if not fsio.exists(split):
            raise MusicrecError(f"{split}: no such split folder; make one with `musicrec split`")
        teacher_model = _load_bundle(teacher).model
        name = model or teacher_model.name
        params = dict(teacher_model.get_params()) if name == teacher_model.name else {}
        params.update(dict(parse_param(p) for p in (param or [])))
        student = create(name, **params)
        sp = Split.load(split)
        events = training_events(sp, include_valid)
        if events.height == 0:
            raise MusicrecError("the split has no training rows")
        train = Interactions.from_frame(events, items=catalogue(sp, events))
        has_valid = sp.valid is not None and sp.valid.height > 0
        valid = validation_fn(sp, default_metric(sp)) if has_valid and not include_valid else None
        task = Distillation(teacher_model, temperature=temperature, alpha=alpha, top_k=top_k)
        task.check(student, train)          # before any output is written
        start = time.perf_counter()
        student.fit(train, valid=valid, distill=task, checkpoint_dir=fsio.join(out, "checkpoints"), progress=True)
        fit_s = time.perf_counter() - start
        ModelBundle(student, sp.items, sp.users, bundle_meta(
            sp, split, include_valid, fit_s=fit_s, params=student.get_params(),
            distilled_from={"teacher_dir": fsio.absolute(teacher), **task.describe()})).save(out)
        ratio = student.n_parameters() / max(teacher_model.n_parameters(), 1)
        typer.echo(f"distilled {teacher_model.name} ({teacher_model.n_parameters():,} parameters) into {name} "
                   f"({student.n_parameters():,}, {ratio:.0%}) in {fit_s:.1f}s, best epoch {student.best_epoch_} "
                   f"-> {out}")

    @compress.command()
    def quantize(
        model_dir: str = typer.Argument(..., help="model folder of a fitted deep model"),
        out: str = typer.Option(..., "--out", help="model folder to write the compressed copy to"),
        int8: bool = typer.Option(False, "--int8", help="int8 ONNX network (ONNX Runtime dynamic quantisation)"),
        fp16: bool = typer.Option(False, "--fp16", help="store the embedding tables as float16"),
    ):
        """Write a compressed copy of a model folder: fp16 embedding tables and/or an int8 ONNX network.

        The copy loads like any model folder (`musicrec serve`, `evaluate`, `recommend`); with
        --int8 it scores through ONNX Runtime (network.int8.onnx).
        """
        from musicrec.bundle import ModelBundle
        from musicrec.models.compress import _check_neural, check_exportable, export_onnx, remove_onnx, to_fp16

        if not (int8 or fp16):
            raise MusicrecError("give --int8 and/or --fp16")
        _check_out(out, model_dir)
        bundle = _load_bundle(model_dir)
        model = bundle.model
        _check_neural(model)
        if int8:
            check_exportable(model)
        if fp16:
            model = to_fp16(model)
        meta = {**bundle.meta, "compressed_from": fsio.absolute(model_dir),
                "compression": {"int8": int8, "fp16": fp16}}
        ModelBundle(model, bundle.items, bundle.users, meta, item_tags=bundle.item_tags).save(out)
        if int8:
            export_onnx(model, out, int8=True)
        else:
            remove_onnx(out)          # an export left in --out from an earlier run
        files = ["state.npz"] + (["network.int8.onnx", "item_vectors.npz"] if int8 else [])
        typer.echo(f"wrote {out}: " + ", ".join(_size(out, f) for f in files)
                   + f" (the input's {_size(model_dir, 'state.npz')})")

    @compress.command()
    def export(
        model_dir: str = typer.Argument(..., help="model folder of a fitted deep sequence model"),
        int8: bool = typer.Option(False, "--int8", help="also write network.int8.onnx and serve it"),
        remove: bool = typer.Option(False, "--remove", help="delete the folder's ONNX export instead"),
    ):
        """Export the scoring network to ONNX, into the model folder.

        Writes network.onnx (history window -> query vector), item_vectors.npz and network.json;
        loading the folder (`musicrec serve`, `evaluate`) then scores through ONNX Runtime.
        MUSICREC_ONNX=off|fp32|int8 overrides the choice at load time, MUSICREC_ONNX_THREADS sets
        ONNX Runtime's intra-op threads (default 1).
        """
        from musicrec.models.compress import export_onnx, remove_onnx
        from musicrec.models.registry import load_model

        _check_dir(model_dir)
        if remove:
            remove_onnx(model_dir)
            typer.echo(f"removed the ONNX export of {model_dir}")
            return
        meta = export_onnx(load_model(model_dir), model_dir, int8=int8)
        files = [*meta["files"].values(), meta["item_vectors"]]
        typer.echo(f"exported {meta['model']} to {model_dir}: " + ", ".join(_size(model_dir, f) for f in files)
            + f"; max |onnx - torch| = {meta['max_abs_diff']:.2g}; serving {meta['serve']}")
