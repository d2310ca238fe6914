"""Compression of deep models: distillation, fp16 tables, ONNX export and the ONNX serving path.

Synthetic data (``models_synthetic``) for the training checks; a small SASRec on 30Music (artist
level) for the export checks on real data. Models are tiny: these check behaviour, not accuracy
(``benchmarks/compression.py`` measures that).
"""

import os

import numpy as np
import polars as pl
import pytest
from models_synthetic import N_ITEMS, synthetic_events

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.models import registry
from musicrec.models.compress import Distillation, distill, export_onnx, to_fp16

SMALL = {"embedding_dim": 8, "n_layers": 1, "epochs": 15, "learning_rate": 0.01, "batch_size": 16, "loss": "ce",
         "dropout": 0.1, "max_len": 8}
HISTORIES = [[1, 2, 3], [20, 21], [], [5], [40, 22, 23, 24], [12, 13, 14, 15, 16, 17, 18, 19, 0, 1]]


@pytest.fixture(scope="module")
def teacher(synthetic):
    """A SASRec trained on the synthetic sessions with the item ids permuted: on the original
    sessions it predicts other successors than the data's (i -> i + 1), so a student can only
    agree with it by learning from it."""
    events = synthetic_events()
    perm = np.random.default_rng(0).permutation(N_ITEMS)
    permuted = Interactions.from_frame(events.with_columns(
        pl.col("item_id").map_elements(lambda i: int(perm[i]), return_dtype=pl.Int64)))
    assert np.array_equal(permuted.items.ids, synthetic.items.ids)        # the same catalogue
    return registry.create("sasrec", **{**SMALL, "embedding_dim": 16, "epochs": 20}).fit(permuted)


ONE = [[i] for i in range(40)]          # one-play histories of every group item


def hist(seqs=HISTORIES) -> Histories:
    return Histories.from_sequences(seqs, N_ITEMS)


def top(model, k=5, seqs=HISTORIES) -> np.ndarray:
    return model.recommend(hist(seqs), k=k, exclude_seen=False)[0]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


# ---------------------------------------------------------------- distillation
def test_alpha_one_is_plain_training_and_lower_alpha_uses_the_teacher(synthetic, teacher):
    params = {**SMALL, "epochs": 3}
    plain = registry.create("sasrec", **params).fit(synthetic)
    only_task = distill(registry.create("sasrec", **params), teacher, synthetic, alpha=1.0)
    # the hook adds nothing but the teacher term: with weight 0 on it, the same weights
    np.testing.assert_array_equal(plain.score(hist()), only_task.score(hist()))
    mixed = distill(registry.create("sasrec", **params), teacher, synthetic, alpha=0.5)
    assert not np.allclose(plain.score(hist()), mixed.score(hist()))
    assert [h["loss"] for h in plain.history_] != [h["loss"] for h in mixed.history_]


@pytest.mark.slow      # a teacher and two students trained
def test_distilled_student_follows_the_teacher(synthetic, teacher):
    want = top(teacher, 1, ONE)[:, 0]
    # trained on the teacher alone (alpha = 0), the student predicts the teacher's successors ...
    student = distill(registry.create("sasrec", **SMALL), teacher, synthetic, alpha=0.0, temperature=1.0)
    assert (top(student, 1, ONE)[:, 0] == want).mean() >= 0.6
    # ... which a student of the data alone almost never does (chance: 1 / 44)
    plain = registry.create("sasrec", **SMALL).fit(synthetic)
    assert (top(plain, 1, ONE)[:, 0] == want).mean() <= 0.2
    # soft targets over the teacher's top items only (large catalogues) work too, through fit
    topk = registry.create("sasrec", **SMALL).fit(synthetic, distill=Distillation(teacher, 1.0, 0.0, top_k=10))
    assert (top(topk, 1, ONE)[:, 0] == want).mean() >= 0.4


def test_distillation_covers_other_sequence_losses(synthetic, teacher):
    student = registry.create("gru4rec", hidden_size=8, max_len=8, epochs=2, loss="bpr-max", n_negatives=10)
    distill(student, teacher, synthetic, alpha=0.5)
    assert np.isfinite(student.history_[-1]["loss"])


def test_distillation_errors_are_clear(synthetic, teacher):
    with pytest.raises(MusicrecError, match="max_len"):
        distill(registry.create("sasrec", **{**SMALL, "max_len": 20}), teacher, synthetic)
    with pytest.raises(MusicrecError, match="sequence model"):
        distill(registry.create("multvae", hidden_dims=8, latent_dim=4, epochs=1), teacher, synthetic)
    other = Interactions.from_frame(synthetic_events().filter(pl.col("item_id") < 30))
    with pytest.raises(MusicrecError, match="catalogue"):
        distill(registry.create("sasrec", **SMALL), teacher, other)
    with pytest.raises(MusicrecError, match="temperature"):
        distill(registry.create("sasrec", **SMALL), teacher, synthetic, temperature=0)
    with pytest.raises(MusicrecError, match="teacher"):
        distill(registry.create("sasrec", **SMALL), registry.create("ease").fit(synthetic), synthetic)


# ---------------------------------------------------------------- fp16, ONNX on synthetic data
def no_pickles(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for f in files:
            assert not f.endswith((".pkl", ".pickle", ".pt", ".pth", ".joblib")), f
            if f.endswith(".npz"):
                with np.load(os.path.join(root, f), allow_pickle=False) as z:
                    assert all(z[k].dtype != object for k in z.files)


def test_fp16_tables_are_stored_half_size_and_score_close(teacher, tmp_path):
    small = to_fp16(teacher)
    assert not hasattr(teacher, "fp16_")                     # the original is untouched
    path = str(tmp_path / "fp16")
    small.save(path)
    teacher.save(str(tmp_path / "fp32"))
    loaded = registry.load_model(path)
    with np.load(os.path.join(path, "state.npz")) as z:
        assert z["net.item_emb.weight"].dtype == np.float16 and z["net.blocks.0.ff.0.weight"].dtype == np.float32
    assert os.path.getsize(os.path.join(path, "state.npz")) < os.path.getsize(str(tmp_path / "fp32" / "state.npz"))
    np.testing.assert_array_equal(loaded.score(hist()), small.score(hist()))     # scored in float32, as saved
    np.testing.assert_allclose(loaded.score(hist()), teacher.score(hist()), atol=0.05)
    assert overlap(top(loaded), top(teacher)) >= 0.9
    # saving the loaded model keeps the tables in float16
    loaded.save(str(tmp_path / "again"))
    with np.load(str(tmp_path / "again" / "state.npz")) as z:
        assert z["net.item_emb.weight"].dtype == np.float16
    no_pickles(str(tmp_path))


def test_onnx_export_scores_like_torch_and_int8_close(teacher, tmp_path):
    path = str(tmp_path / "m")
    teacher.save(path)
    meta = export_onnx(teacher, path, int8=True)
    assert meta["max_abs_diff"] < 1e-4 and meta["serve"] == "network.int8.onnx"
    want = teacher.score(hist())
    os.environ["MUSICREC_ONNX"] = "fp32"
    try:
        fp32 = registry.load_model(path)
    finally:
        del os.environ["MUSICREC_ONNX"]
    assert fp32.scorer == "onnxruntime:network.onnx"
    np.testing.assert_allclose(fp32.score(hist()), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fp32.query_vectors(hist()) @ fp32.item_vectors().T, want, rtol=1e-4, atol=1e-4)
    int8 = registry.load_model(path)
    assert int8.scorer == "onnxruntime:network.int8.onnx"
    got = int8.score(hist())
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.98
    assert overlap(top(int8), top(teacher)) >= 0.8
    no_pickles(path)


def test_stale_export_is_not_used(synthetic, teacher, tmp_path):
    path = str(tmp_path / "m")
    teacher.save(path)
    export_onnx(teacher, path)
    # retrained into the same folder: the old network no longer matches the weights
    registry.create("sasrec", **{**SMALL, "embedding_dim": 32, "n_layers": 2, "epochs": 1}).fit(synthetic).save(path)
    with pytest.warns(UserWarning, match="other weights"):
        model = registry.load_model(path)
    assert model.scorer == "torch"


def test_repeat_head_and_classic_models_do_not_export(synthetic, tmp_path):
    rep = registry.create("sasrec", **{**SMALL, "repeat_head": True, "epochs": 1}).fit(synthetic)
    with pytest.raises(MusicrecError, match="repeat head"):
        export_onnx(rep, str(tmp_path / "r"))
    with pytest.raises(MusicrecError, match="not a deep model"):
        export_onnx(registry.create("ease").fit(synthetic), str(tmp_path / "e"))


# ---------------------------------------------------------------- real data, serving, CLI
@pytest.fixture(scope="module")
def real(tmp_path_factory, shared_data):
    """A small SASRec bundle on 30Music (artist level, session-lastday), its split and test sessions."""
    from musicrec.bundle import ModelBundle
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path
    from musicrec.train.fit import fit_model

    base = tmp_path_factory.mktemp("compress")
    ingest_path("30music", os.path.join(shared_data, "30music-200ks-test-slices"), str(base / "store"))
    # artists with >= 10 listeners (~1k): distillation's (positions x catalogue) terms stay small
    split = make_split(str(base / "store"), "session-lastday", item_level="artist", k_core_item=10,
                       out=str(base / "split"))
    model, _ = fit_model("sasrec", split, {"embedding_dim": 16, "n_layers": 1, "max_len": 10, "epochs": 1,
                                           "batch_size": 256, "n_negatives": 32}, include_valid=True)
    path = str(base / "sasrec")
    ModelBundle(model, split.items, split.users, {"item_level": "artist", "split": str(base / "split")}).save(path)
    test = split.test.sort(["session_id", "timestamp"], maintain_order=True)
    index = {int(i): k for k, i in enumerate(model.train_.items.ids)}
    seqs = [[index[int(i)] for i in g["item_id"].to_list() if int(i) in index]
            for _, g in test.group_by("session_id", maintain_order=True)]
    seqs = [s for s in seqs if s][:300]
    return {"model": model, "path": path, "split": str(base / "split"), "base": base,
            "histories": Histories.from_sequences(seqs, model.train_.n_items)}


def test_onnx_on_real_data_same_top10(real, monkeypatch):
    from musicrec.serve.service import Service

    model, path, h = real["model"], real["path"], real["histories"]
    export_onnx(model, path)
    loaded = registry.load_model(path)
    assert loaded.scorer == "onnxruntime:network.onnx"
    want, got = model.score(h), loaded.score(h)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    idx_t, _ = model.recommend(h, k=10)
    idx_o, _ = loaded.recommend(h, k=10)
    assert (idx_t == idx_o).mean() > 0.99         # ties within float rounding may swap a pair
    # the serving path: a Service over the folder scores through ONNX Runtime ...
    service = Service.load(path)
    assert service.health()["scorer"] == "onnxruntime:network.onnx"
    names = service.names[:3]
    onnx_cards = service.recommend_session(names, [], k=10)
    # ... and answers like the torch model
    monkeypatch.setenv("MUSICREC_ONNX", "off")
    torch_service = Service.load(path)
    assert torch_service.health()["scorer"] == "torch"
    torch_cards = torch_service.recommend_session(names, [], k=10)
    assert [c["item_id"] for c in onnx_cards] == [c["item_id"] for c in torch_cards]
    np.testing.assert_allclose([c["score"] for c in onnx_cards], [c["score"] for c in torch_cards], atol=1e-4)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from musicrec.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_quantize_export_and_distill(real, capsys, tmp_path):
    path = real["path"]
    out = str(tmp_path / "q")
    code, stdout, err = run_cli(capsys, "compress", "quantize", path, "--out", out, "--int8", "--fp16")
    assert code == 0, err
    loaded = registry.load_model(out)
    assert loaded.scorer == "onnxruntime:network.int8.onnx" and loaded.fp16_
    h = real["histories"]
    assert overlap(loaded.recommend(h, k=10)[0], real["model"].recommend(h, k=10)[0]) > 0.7
    no_pickles(out)

    student = str(tmp_path / "student")
    code, stdout, err = run_cli(capsys, "compress", "distill", real["split"], "--teacher", path, "--out", student,
                                "--param", "embedding_dim=8", "--param", "epochs=1", "--alpha", "0.3")
    assert code == 0, err
    s = registry.load_model(student)
    assert s.embedding_dim == 8 and s.n_layers == 1 and s.scorer == "torch"
    assert "distilled sasrec" in stdout
    no_pickles(student)

    code, stdout, err = run_cli(capsys, "compress", "export", student, "--int8")
    assert code == 0, err
    assert registry.load_model(student).scorer == "onnxruntime:network.int8.onnx"


@pytest.mark.parametrize("args, message", [
    (["compress", "export", "/no/such/model"], "no such model folder"),
    (["compress", "quantize", "/no/such/model", "--out", "/tmp/x", "--int8"], "no such model folder"),
    (["compress", "quantize", "MODEL", "--out", "/tmp/x"], "--int8 and/or --fp16"),
    (["compress", "quantize", "MODEL", "--out", "MODEL", "--fp16"], "input model folder"),
    (["compress", "export", "EASE"], "not a deep model"),
    (["compress", "distill", "SPLIT", "--teacher", "EASE", "--out", "OUT"], "teacher"),
    (["compress", "distill", "SPLIT", "--teacher", "MODEL", "--out", "OUT", "--param", "max_len=50"], "max_len"),
])
def test_cli_errors_are_one_line(real, capsys, tmp_path, synthetic, args, message):
    ease = str(tmp_path / "ease")
    registry.create("ease").fit(synthetic).save(ease)
    subst = {"MODEL": real["path"], "EASE": ease, "SPLIT": real["split"], "OUT": str(tmp_path / "out")}
    code, _, err = run_cli(capsys, *[subst.get(a, a) for a in args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
