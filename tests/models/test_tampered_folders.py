"""Tampered model folders: every damaged file is a one-line MusicrecError naming it, never a crash.

Tiny models of several kinds are trained once and saved as model folders (``ModelBundle.save``);
each case copies one, damages one file (out-of-range indices, broken row pointers, wrong
shapes, missing keys, absurd or mistyped config values, non-JSON, truncation) and loads it.
The cases that used to crash the interpreter in scipy's kernels (exit 139) run in a subprocess
through the CLI, which must exit 1 or 2 with a one-line ``error:`` and no traceback.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError, schema
from musicrec.bundle import ModelBundle
from musicrec.models import registry
from musicrec.serve.service import Service

TINY = {
    "itemknn": {"neighbors": 10},
    "ease": {"l2": 10.0},
    "als": {"factors": 4, "iterations": 2},
    "sr": {},
    "sasrec": {"embedding_dim": 8, "n_layers": 1, "max_len": 5, "epochs": 1, "batch_size": 64, "n_negatives": 5,
               "device": "cpu"},
    "gru4rec": {"hidden_size": 8, "max_len": 5, "epochs": 1, "batch_size": 64, "n_negatives": 5, "device": "cpu"},
}
CLI = str(Path(sys.executable).with_name("musicrec"))


@pytest.fixture(scope="module")
def folders(synthetic, tmp_path_factory) -> dict[str, Path]:
    """A saved model folder of each kind in ``TINY``."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, params in TINY.items():
        model = registry.create(name, **params).fit(synthetic)
        ModelBundle(model, schema.empty(schema.SPLIT_ITEMS), schema.empty(schema.SPLIT_USERS), meta={}).save(
            str(root / name))
        out[name] = root / name
    return out


# ---------------------------------------------------------------- tamperings
def npz_edit(file: str, change):
    """A tampering that rewrites ``file`` with ``change(arrays)`` applied (arrays: a dict to edit)."""
    def apply(folder: Path):
        with np.load(folder / file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        change(arrays)
        np.savez(folder / file, **arrays)
    return apply


def set_key(key, fn):
    def change(a):
        a[key] = fn(a[key], a)
    return change


def drop(key):
    return lambda a: a.pop(key)


def config_edit(change):
    def apply(folder: Path):
        cfg = json.loads((folder / "config.json").read_text())
        change(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
    return apply


def write(file: str, text: str):
    return lambda folder: (folder / file).write_text(text)


def truncate(file: str, keep: float = 0.5):
    def apply(folder: Path):
        data = (folder / file).read_bytes()
        (folder / file).write_bytes(data[:int(len(data) * keep)])
    return apply


def flip_byte(file: str, at: float = 0.6):
    def apply(folder: Path):
        data = bytearray((folder / file).read_bytes())
        data[int(len(data) * at)] ^= 0xFF
        (folder / file).write_bytes(bytes(data))
    return apply


def not_monotone(ptr, a):
    ptr = ptr.copy()
    mid = len(ptr) // 2
    ptr[mid], ptr[mid + 1] = ptr[mid + 1] + 3, max(ptr[mid] - 3, 0)
    return ptr


def bigger_ptr_end(ptr, a):
    ptr = ptr.copy()
    ptr[-1] += 1000
    return ptr


def fewer_rows(prefix_rows: int):
    def change(a):
        for k in list(a):
            if k.startswith("net.") and a[k].ndim >= 1 and a[k].shape[0] >= prefix_rows:
                a[k] = a[k][:-1]
                return
    return change


def parquet(file: str, frame: pl.DataFrame):
    return lambda folder: frame.write_parquet(folder / file)


IX = "interactions.npz"
ST = "state.npz"
CF = "config.json"
# (model, case id, tampering, file the message must name). The interactions cases hit every model
# through Interactions.load; itemknn is the one that crashed (its CSR state too).
CRASHED = [  # formerly segfaults (exit 139): run through the CLI in a subprocess
    ("itemknn", "m_indices beyond the items", npz_edit(IX, set_key("m_indices", lambda v, a: v + 10_000)), IX),
    ("itemknn", "negative m_indices", npz_edit(IX, set_key("m_indices", lambda v, a: v - 10_000)), IX),
    ("itemknn", "m_indptr not monotone", npz_edit(IX, set_key("m_indptr", not_monotone)), IX),
    ("itemknn", "m_indptr ends beyond the data", npz_edit(IX, set_key("m_indptr", bigger_ptr_end)), IX),
    ("ease", "m_indices beyond the items", npz_edit(IX, set_key("m_indices", lambda v, a: v * 1000)), IX),
    ("sr", "seq beyond the items", npz_edit(IX, set_key("seq", lambda v, a: v + 10_000)), IX),
    ("sr", "session_items negative", npz_edit(IX, set_key("session_items", lambda v, a: v - 100)), IX),
    ("sr", "session_indptr past the items", npz_edit(IX, set_key("session_indptr", bigger_ptr_end)), IX),
    ("itemknn", "state indices beyond the items", npz_edit(ST, set_key("indices", lambda v, a: v + 10_000)), ST),
    ("itemknn", "state indptr not monotone", npz_edit(ST, set_key("indptr", not_monotone)), ST),
    ("sr", "state indices negative", npz_edit(ST, set_key("indices", lambda v, a: v - 10_000)), ST),
]
TRACEBACKS = [
    ("itemknn", "seq_len not summing to seq", npz_edit(IX, set_key("seq_len", lambda v, a: v + 1)), IX),
    ("itemknn", "negative seq_len", npz_edit(IX, set_key("seq_len", lambda v, a: -v)), IX),
    ("itemknn", "session_user beyond the users", npz_edit(IX, set_key("session_user", lambda v, a: v + 10_000)), IX),
    ("itemknn", "session_time of another length", npz_edit(IX, set_key("session_time", lambda v, a: v[:-1])), IX),
    ("itemknn", "m_data missing", npz_edit(IX, drop("m_data")), IX),
    ("itemknn", "m_data as text", npz_edit(IX, set_key("m_data", lambda v, a: v.astype(str))), IX),
    ("itemknn", "m_data NaN", npz_edit(IX, set_key("m_data", lambda v, a: v * np.nan)), IX),
    ("itemknn", "m_indices float", npz_edit(IX, set_key("m_indices", lambda v, a: v.astype(np.float64))), IX),
    ("itemknn", "users 2-D", npz_edit(IX, set_key("users", lambda v, a: v[:, None])), IX),
    ("itemknn", "repeated item ids", npz_edit(IX, set_key("items", lambda v, a: np.zeros_like(v))), IX),
    ("itemknn", "interactions truncated", truncate(IX), IX),
    ("itemknn", "interactions byte flipped", flip_byte(IX), IX),
    ("itemknn", "interactions not a zip", write(IX, "hello"), IX),
    ("itemknn", "state indptr too short", npz_edit(ST, set_key("indptr", lambda v, a: v[:-5])), ST),
    ("itemknn", "state missing data", npz_edit(ST, drop("data")), ST),
    ("ease", "inverse not square", npz_edit(ST, set_key("inverse", lambda v, a: v[:, :-1])), ST),
    ("ease", "inverse of another size", npz_edit(ST, set_key("inverse", lambda v, a: v[:-1, :-1])), ST),
    ("ease", "inverse 1-D", npz_edit(ST, set_key("inverse", lambda v, a: v.ravel())), ST),
    ("ease", "active beyond the items", npz_edit(ST, set_key("active", lambda v, a: v + 10_000)), ST),
    ("ease", "active repeated", npz_edit(ST, set_key("active", lambda v, a: np.zeros_like(v))), ST),
    ("ease", "inv_diag missing", npz_edit(ST, drop("inv_diag")), ST),
    ("ease", "fallback too short", npz_edit(ST, set_key("fallback", lambda v, a: v[:-1])), ST),
    ("ease", "state truncated", truncate(ST), ST),
    ("als", "item factors narrower than user factors",
     npz_edit(ST, set_key("item_factors", lambda v, a: v[:, :-1])), ST),
    ("als", "user factors for fewer users", npz_edit(ST, set_key("user_factors", lambda v, a: v[:-1])), ST),
    ("als", "factors in config differ from state", config_edit(lambda c: c["params"].update(factors=8)), ST),
    ("als", "item factors missing", npz_edit(ST, drop("item_factors")), ST),
    ("sr", "fallback missing", npz_edit(ST, drop("fallback")), ST),
    ("sasrec", "embedding for fewer items", npz_edit(ST, fewer_rows(10)), ST),
    ("sasrec", "a weight missing", npz_edit(ST, lambda a: a.pop(sorted(k for k in a if k.startswith("net."))[0])), ST),
    ("sasrec", "an extra weight", npz_edit(ST, lambda a: a.update({"net.stray": np.zeros(3, np.float32)})), ST),
    ("sasrec", "a weight as integers",
     npz_edit(ST, lambda a: a.update({k: a[k].astype(np.int64) for k in a if k.endswith("weight")})), ST),
    ("sasrec", "n_layers = 1000000", config_edit(lambda c: c["params"].update(n_layers=1_000_000)), CF),
    ("sasrec", "embedding_dim = 1e9", config_edit(lambda c: c["params"].update(embedding_dim=10**9)), CF),
    ("sasrec", "max_len huge", config_edit(lambda c: c["params"].update(max_len=10**8)), CF),
    ("sasrec", "n_layers as text", config_edit(lambda c: c["params"].update(n_layers="2")), CF),
    ("sasrec", "n_layers more than saved", config_edit(lambda c: c["params"].update(n_layers=3)), ST),
    ("gru4rec", "hidden_size differs from state", config_edit(lambda c: c["params"].update(hidden_size=12)), ST),
    ("gru4rec", "hidden_size negative", config_edit(lambda c: c["params"].update(hidden_size=-1)), CF),
    ("gru4rec", "state truncated", truncate(ST, 0.3), ST),
    ("gru4rec", "embedding for fewer items", npz_edit(ST, fewer_rows(10)), ST),
    ("ease", "l2 negative", config_edit(lambda c: c["params"].update(l2=-1)), CF),
    ("itemknn", "unknown parameter", config_edit(lambda c: c["params"].update(color="red")), CF),
    ("itemknn", "params not an object", config_edit(lambda c: c.update(params=[1, 2])), CF),
    ("itemknn", "unknown model", config_edit(lambda c: c.update(model="nope")), CF),
    ("itemknn", "model not a string", config_edit(lambda c: c.update(model=["itemknn"])), CF),
    ("itemknn", "config not JSON", write(CF, "{not json"), CF),
    ("itemknn", "config a JSON array", write(CF, "[1, 2, 3]"), CF),
    ("itemknn", "config deeply nested", write(CF, "[" * 100_000 + "]" * 100_000), CF),
    ("itemknn", "bundle.json a JSON array", write("bundle.json", "[]"), "bundle.json"),
    ("itemknn", "bundle.json not JSON", write("bundle.json", "{"), "bundle.json"),
    ("itemknn", "bundle.json item_level of another kind", write("bundle.json", '{"item_level": 3}'), "bundle.json"),
    ("itemknn", "bundle.json unknown item_level", write("bundle.json", '{"item_level": "album"}'), "bundle.json"),
    ("itemknn", "items.parquet without item_id", parquet("items.parquet", pl.DataFrame({"x": [1]})), "items.parquet"),
    ("itemknn", "items.parquet item_id as text",
     parquet("items.parquet", pl.DataFrame({"item_id": ["abc"], "name": ["a"]})), "items.parquet"),
    ("itemknn", "users.parquet without user_id", parquet("users.parquet", pl.DataFrame({"x": [1]})), "users.parquet"),
    ("itemknn", "items.parquet truncated", truncate("items.parquet"), "items.parquet"),
]


def tampered(folders, tmp_path, model: str, tamper) -> Path:
    folder = tmp_path / model
    shutil.copytree(folders[model], folder)
    tamper(folder)
    return folder


def one_line_naming(message: str, file: str) -> None:
    assert "\n" not in message.strip(), message
    assert file in message, f"{file!r} not named in: {message}"
    assert "Traceback" not in message


@pytest.mark.parametrize("model,case,tamper,file", CRASHED + TRACEBACKS, ids=[c[1] for c in CRASHED + TRACEBACKS])
def test_loading_a_tampered_folder_is_one_line_error_naming_the_file(folders, tmp_path, model, case, tamper, file):
    folder = tampered(folders, tmp_path, model, tamper)
    if (model, case, tamper, file) in CRASHED:
        # in a subprocess: a regression would crash the interpreter, not just fail the test
        proc = subprocess.run([sys.executable, "-c", LOAD_AND_USE, str(folder)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        one_line_naming(proc.stdout, file)
        return
    with pytest.raises(MusicrecError) as err:
        Service.load(str(folder), one_off=True).recommend_user("0", k=5)  # loading must refuse the folder
    one_line_naming(str(err.value), file)


LOAD_AND_USE = """
import sys
from musicrec import MusicrecError
from musicrec.serve.service import Service
try:
    svc = Service.load(sys.argv[1], one_off=True)
    svc.recommend_user("0", k=5)
    svc.recommend_session([], ["1"], k=5)
except MusicrecError as exc:
    print(exc)
    sys.exit(1)
"""


def by_name(*names):
    return [c for c in CRASHED + TRACEBACKS if c[1] in names]


@pytest.mark.parametrize("model,case,tamper,file",
                         by_name("m_indices beyond the items", "state indices beyond the items", "n_layers = 1000000",
                                 "config not JSON", "inverse not square"),
                         ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.slow      # a CLI process per case
def test_the_cli_says_one_line_and_exits_nonzero(folders, tmp_path, model, case, tamper, file):
    """`musicrec recommend` on a tampered folder: exit 2, one `error:` line naming the file."""
    folder = tampered(folders, tmp_path, model, tamper)
    proc = subprocess.run([CLI, "recommend", str(folder), "--user", "0"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode in (1, 2), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert file in lines[0]


@pytest.mark.parametrize("model", list(TINY))
def test_untouched_folders_still_load_and_answer(folders, model):
    assert Service.load(str(folders[model]), one_off=True).recommend_user("0", k=3)


# ---------------------------------------------------------------- ONNX exports and size caps
@pytest.fixture(scope="module")
def exported(folders, tmp_path_factory) -> Path:
    """The sasrec folder with an ONNX export beside its weights."""
    from musicrec.models.compress import export_onnx
    from musicrec.models.registry import load_model

    folder = tmp_path_factory.mktemp("onnx") / "sasrec"
    shutil.copytree(folders["sasrec"], folder)
    export_onnx(load_model(str(folder)), str(folder))
    return folder


def edit_json(file: str, change):
    def apply(folder: Path):
        meta = json.loads((folder / file).read_text())
        change(meta)
        (folder / file).write_text(json.dumps(meta))
    return apply


ONNX = [
    ("network.onnx garbage", lambda f: (f / json.loads((f / "network.json").read_text())["serve"]).write_bytes(
        b"\x08\x07garbage" * 50)),
    ("network.json not JSON", write("network.json", "{")),
    ("network.json a JSON array", write("network.json", "[]")),
    ("network.json names no network", edit_json("network.json", lambda m: m.pop("serve"))),
    ("network.json points outside the folder", edit_json("network.json", lambda m: m.update(serve="../network.onnx"))),
    ("item vectors outside the folder", edit_json("network.json", lambda m: m.update(item_vectors="/etc/passwd"))),
    ("item vectors of another catalogue", npz_edit("item_vectors.npz",
                                                   set_key("item_vectors", lambda v, a: v[:-1]))),
]


@pytest.mark.parametrize("case,tamper", ONNX, ids=[c[0] for c in ONNX])
def test_a_damaged_onnx_export_is_one_line_error(exported, tmp_path, monkeypatch, case, tamper):
    from musicrec.models.registry import load_model

    monkeypatch.setenv("MUSICREC_ONNX", "auto")
    folder = tmp_path / "sasrec"
    shutil.copytree(exported, folder)
    assert load_model(str(folder)).scorer.startswith("onnxruntime")   # the export is used when intact
    tamper(folder)
    with pytest.raises(MusicrecError) as err:
        load_model(str(folder))
    assert "\n" not in str(err.value)
    assert "network" in str(err.value) or "item_vectors" in str(err.value)


@pytest.mark.parametrize("name,params,word", [
    ("multvae", {"hidden_dims": [10**6]}, "hidden_dims"),
    ("multvae", {"hidden_dims": [8] * 100}, "hidden_dims"),
    ("nextitnet", {"dilations": "1,2,100000"}, "dilations"),
    ("nextitnet", {"n_blocks": 10**6}, "n_blocks"),
    ("caser", {"n_h": 10**7}, "n_h"),
    ("two-tower", {"content_hidden": 10**7}, "content_hidden"),
    ("gru4rec", {"n_layers": 1000}, "n_layers"),
    ("bpr", {"factors": 10**6}, "factors"),
    ("bpr", {"factors": 1.5}, "factors"),
])
def test_sizes_beyond_the_caps_are_refused_before_building(name, params, word):
    from musicrec.models.validate import check_params

    with pytest.raises(MusicrecError, match=rf"^config\.json: {name}: {word} "):
        check_params(registry.create(name, **params), "config.json")


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_default_parameters_pass_the_load_checks(name):
    from musicrec.models.validate import check_params

    check_params(registry.create(name), "config.json")


def test_an_array_header_declaring_a_huge_array_is_one_line_error(folders, tmp_path):
    """A .npy header can declare any shape: reading it must not take the process down."""
    import io
    import zipfile

    from numpy.lib import format as npy

    def huge(folder: Path):
        header = io.BytesIO()
        npy.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
        with zipfile.ZipFile(folder / IX, "a") as z:
            z.writestr("m_data_huge.npy", header.getvalue() + b"\0" * 64)

    folder = tampered(folders, tmp_path, "itemknn", huge)
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_USE, str(folder)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    one_line_naming(proc.stdout, IX)
