"""Data-parallel training (DDP, gloo on CPU): 2 local processes against 1 process with the
same seeds and global batch, on the synthetic next-item task of ``resume_helper`` (sessions of
consecutive items: the answer is known and the windows have no padding).

Full-softmax loss without dropout draws no random numbers, so with the same global batch and a
mean loss the 2-process gradient is the 1-process one up to float summation order: the weights
must agree closely. With sampled negatives and dropout the ranks draw different samples than one
process does; the runs must agree within the noise of the task (measured: see TOLERANCE).
"""

import contextlib
import io
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))   # the trainer's synthetic task lives with its tests
from resume_helper import N_ITEMS, hit_rate, make_model, make_train  # noqa: E402

from musicrec import MusicrecError, schema
from musicrec.bundle import train_model
from musicrec.preprocess.splitset import Split
from musicrec.train import distributed

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow     # 2-process DDP runs, Ray, torchrun

# sampled loss + dropout: 1-process runs with seeds 0..4 (6 epochs) end with final losses
# 1.62-1.84 and hit rates 0.63-0.87 (measured); a 2-process run differs from the 1-process
# run of the same seed by its samples only, so it must land within those spreads
LOSS_TOLERANCE, HIT_TOLERANCE = 0.25, 0.25

# ---------------------------------------------------------------- workers (importable by spawned processes)
def build(params: dict):
    """SASRec of ``resume_helper`` or, with ``model="gru4rec"``, a GRU4Rec of the same size."""
    params = dict(params)
    if params.pop("model", "sasrec") == "sasrec":
        return make_model(**params)
    from musicrec.models.gru4rec import GRU4Rec

    settings = dict(hidden_size=8, max_len=5, epochs=4, batch_size=16, learning_rate=0.01, loss="ce",
                    dropout_embed=0.0, dropout_hidden=0.0, patience=10, seed=0, device="cpu")
    return GRU4Rec(**{**settings, **params})


def fit_worker(params: dict, validate: bool, **fit_options) -> dict:
    """Fit the synthetic model in this rank; returns weights, history and this rank's id."""
    model = build(params)
    model.fit(make_train(), valid=hit_rate if validate else None, **fit_options)
    return {"rank": distributed.rank(), "weights": {k: v.numpy() for k, v in model.net_.state_dict().items()},
            "loss": [h["loss"] for h in model.history_], "value": [h["value"] for h in model.history_],
            "best_epoch": model.best_epoch_, "hit_rate": hit_rate(model),
            "sampler": model._sampler.get_state().numpy()}


def all_ranks_worker(params: dict, validate: bool, **fit_options) -> list:
    """``fit_worker`` on every rank, gathered on all (to compare the ranks' weights)."""
    import torch.distributed as td

    mine = fit_worker(params, validate, **fit_options)
    gathered = [None] * td.get_world_size()
    td.all_gather_object(gathered, mine)
    return gathered


def single(params: dict, validate: bool) -> dict:
    return fit_worker(params, validate)


def assert_close_weights(a: dict, b: dict, atol: float) -> float:
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst <= atol, f"largest weight difference {worst:.2e} > {atol}"
    return worst


# GRU4Rec, not SASRec: attention's key bias has a gradient of exactly 0 in theory (softmax ignores
# a shift), so AdamW turns the 1e-10 rounding noise of its gradient into steps of the learning rate
EXACT = dict(model="gru4rec", loss="ce", epochs=4, batch_size=16)


# ---------------------------------------------------------------- tests
# Spawning a process costs seconds (imports), so one 2-process launch runs every case.
SAMPLED = dict(loss="sampled", dropout=0.2)
# 300 windows, batch 299: the last global batch has 1 row, so rank 1 has none and must still
# take part in the step (weight 0) instead of hanging or failing
TINY_LAST = dict(EXACT, batch_size=299, epochs=2)
ENTRY_PARAMS = {"embedding_dim": 8, "n_layers": 1, "max_len": 5, "epochs": 2, "batch_size": 16,
                "n_negatives": 10, "device": "cpu"}


def suite_worker(folder: str) -> dict:
    out = {"exact": all_ranks_worker(EXACT, False), "sampled": all_ranks_worker(SAMPLED, True),
           "tiny_last": all_ranks_worker(TINY_LAST, False)}
    # stopped after 2 epochs (its checkpoint written by rank 0), resumed by both ranks to 4
    half = dict(SAMPLED, epochs=2)
    all_ranks_worker(half, True, checkpoint_dir=os.path.join(folder, "resumed"))
    out["resumed"] = all_ranks_worker(dict(half, epochs=4), True, checkpoint_dir=os.path.join(folder, "resumed"),
                                      resume=True)
    out["straight"] = all_ranks_worker(dict(half, epochs=4), True, checkpoint_dir=os.path.join(folder, "straight"))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return distributed.spawn(suite_worker, 2, str(tmp_path_factory.mktemp("ddp-runs")))


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> str:
    return make_split_folder(tmp_path_factory.mktemp("ddp") / "split")


@pytest.fixture(scope="module")
def cli_model(split_folder, tmp_path_factory) -> tuple[str, str]:
    """``musicrec train sasrec --nproc 2``: (model folder, stdout)."""
    from musicrec.cli.main import main

    out = str(tmp_path_factory.mktemp("ddp-cli") / "model")
    argv = ["train", "sasrec", "--split", split_folder, "--out", out, "--nproc", "2",
            *(a for k, v in ENTRY_PARAMS.items() for a in ("--param", f"{k}={v}"))]
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stdout(io.StringIO()) as stdout:
        main(argv)
    assert (exc.value.code or 0) == 0
    return out, stdout.getvalue()


def assert_same_on_every_rank(ranks: list) -> None:
    """DDP averages the same gradients everywhere: every rank ends bit-identical."""
    for k in ranks[0]["weights"]:
        assert np.array_equal(ranks[0]["weights"][k], ranks[1]["weights"][k]), k
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["loss"] == ranks[1]["loss"]          # the all-reduced loss
    assert ranks[0]["value"] == ranks[1]["value"] and ranks[0]["best_epoch"] == ranks[1]["best_epoch"]


def test_two_processes_full_softmax_match_one_process_weights(runs):
    ranks, one = runs["exact"], single(EXACT, False)
    assert_same_on_every_rank(ranks)
    # 4 epochs x 19 AdamW steps: summation-order differences measured 3e-7 (atol 1e-5 leaves room)
    assert_close_weights(ranks[0]["weights"], one["weights"], atol=1e-5)
    np.testing.assert_allclose(ranks[0]["loss"], one["loss"], rtol=1e-6)


def test_two_processes_with_sampling_and_dropout_match_within_noise(runs):
    ranks, one = runs["sampled"], single(SAMPLED, True)
    assert_same_on_every_rank(ranks)
    assert len(ranks[0]["loss"]) == len(one["loss"])     # same epochs (early stopping agreed on all ranks)
    assert abs(ranks[0]["loss"][-1] - one["loss"][-1]) <= LOSS_TOLERANCE
    assert abs(ranks[0]["hit_rate"] - one["hit_rate"]) <= HIT_TOLERANCE
    assert ranks[0]["hit_rate"] >= 0.5                   # it learnt the task (chance: 1/30)
    # each rank drew its own negatives (rank 1 re-seeded), and the run is no copy of the 1-process one
    assert not np.array_equal(ranks[0]["sampler"], ranks[1]["sampler"])
    assert ranks[0]["loss"] != one["loss"]


def test_more_ranks_than_rows_in_the_last_batch(runs):
    ranks, one = runs["tiny_last"], single(TINY_LAST, False)
    assert_same_on_every_rank(ranks)
    assert_close_weights(ranks[0]["weights"], one["weights"], atol=1e-5)


def test_a_resumed_two_process_run_continues_exactly(runs):
    """Rank 0 checkpoints; on resume every rank loads it and ranks > 0 re-derive their
    sampling streams, so the weights equal those of an uninterrupted 2-process run."""
    resumed, straight = runs["resumed"], runs["straight"]
    assert_same_on_every_rank(resumed)
    for k in straight[0]["weights"]:
        assert np.array_equal(resumed[0]["weights"][k], straight[0]["weights"][k]), k
    assert resumed[0]["loss"] == straight[0]["loss"] and resumed[0]["value"] == straight[0]["value"]


def test_train_command_with_nproc_writes_the_model_from_rank_0(cli_model):
    from musicrec.bundle import ModelBundle

    out, stdout = cli_model
    assert "on 2 processes (spawn)" in stdout
    bundle = ModelBundle.load(out)
    assert bundle.meta["world_size"] == 2 and len(bundle.model.net_.state_dict()) > 0
    assert os.path.exists(os.path.join(out, "checkpoints", "checkpoint.json"))


def test_a_worker_user_error_is_one_line(split_folder, tmp_path):
    """Both ranks refuse a model that is not a PyTorch one; the launcher raises that message."""
    with pytest.raises(MusicrecError, match="not a deep model"):
        distributed.spawn(train_model, 2, "most-popular", split_folder, str(tmp_path / "m"))


def test_ray_train_gives_the_weights_of_spawn(cli_model, split_folder, tmp_path):
    """Ray Train's TorchTrainer (local Ray, 2 CPU workers, gloo) runs the same entry: the
    weights equal those of the 2 spawned processes bit for bit (same seeds and shards)."""
    pytest.importorskip("ray.train")
    from musicrec.bundle import ModelBundle

    out = str(tmp_path / "ray-model")
    summary = distributed.run_ray(train_model, 2, "sasrec", split_folder, out, ENTRY_PARAMS,
                                  num_cpus=2)
    assert summary["world_size"] == 2
    ray_w = ModelBundle.load(out).model.net_.state_dict()
    spawn_w = ModelBundle.load(cli_model[0]).model.net_.state_dict()
    for k in spawn_w:
        assert torch.equal(ray_w[k], spawn_w[k]), k


def test_torchrun_gives_the_weights_of_spawn(cli_model, split_folder, tmp_path):
    """``torchrun --standalone … -m musicrec.cli.main train`` (its own rendezvous on loopback): every
    rank runs the train command, which joins the group."""
    import subprocess
    import sys

    from musicrec.bundle import ModelBundle

    out = str(tmp_path / "torchrun-model")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "musicrec.cli.main", "train", "sasrec", "--split", split_folder, "--out", out,
           *(a for k, v in ENTRY_PARAMS.items() for a in ("--param", f"{k}={v}"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": distributed.LOOPBACK_IFNAME}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained sasrec on 2 processes") == 1     # rank 0 only
    got = ModelBundle.load(out).model.net_.state_dict()
    want = ModelBundle.load(cli_model[0]).model.net_.state_dict()
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_a_one_process_group_is_the_plain_run(monkeypatch):
    """World size 1 goes through the same loop (group detected, no DDP): bit-identical to
    training without a group."""
    import torch.distributed as td

    plain = single(SAMPLED | {"epochs": 2}, False)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", distributed.LOOPBACK_IFNAME)
    td.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{distributed.free_port()}", rank=0, world_size=1)
    try:
        grouped = single(SAMPLED | {"epochs": 2}, False)
    finally:
        td.destroy_process_group()
    for k in plain["weights"]:
        assert np.array_equal(grouped["weights"][k], plain["weights"][k]), k
    assert grouped["loss"] == plain["loss"]


def test_distributed_required_without_a_group_is_a_clear_error():
    from musicrec.models.trainer import Trainer, TrainerConfig

    net = torch.nn.Linear(2, 1)
    with pytest.raises(MusicrecError, match="process group"):
        Trainer(TrainerConfig(epochs=1, device="cpu", distributed=True)).fit(
            net, lambda n, b: n(b["x"]).mean(), {"x": torch.zeros(4, 2)})


def test_init_process_group_without_environment_is_a_clear_error(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(MusicrecError, match="torchrun"):
        distributed.init_process_group()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_on_cuda_matches_one_process():
    """NCCL on cuda:LOCAL_RANK (2 GPUs; with one GPU a 1-rank group, which checks the device path)."""
    nproc = min(2, torch.cuda.device_count())
    params = dict(EXACT, device="cuda", epochs=2)
    ranks = distributed.spawn(all_ranks_worker, nproc, params, False, backend="nccl")
    one = single(params, False)
    if nproc == 2:
        assert_same_on_every_rank(ranks)
    # CUDA kernels and NCCL reduce in another order: looser than on CPU
    assert_close_weights(ranks[0]["weights"], one["weights"], atol=1e-3)


def test_train_entry_alone_returns_a_json_summary(split_folder, tmp_path):
    """Without a process group the entry is a plain fit; its summary is JSON (the Ray launcher
    sends it back as a file)."""
    summary = train_model("sasrec", split_folder, str(tmp_path / "m"),
                                      {"embedding_dim": 8, "n_layers": 1, "max_len": 5, "epochs": 1,
                                       "n_negatives": 10, "device": "cpu"})
    json.dumps(summary)
    assert summary["world_size"] == 1 and summary["n_items"] == N_ITEMS


# ---------------------------------------------------------------- helpers
def make_split_folder(path) -> str:
    """The synthetic sessions as a session split folder: sessions 0-239 train, the last 60
    both valid and test (the trainer early-stops on valid)."""
    train = make_train()
    t0 = datetime(2021, 1, 1, tzinfo=timezone.utc)
    rows = [(s % 50, int(train.items.ids[i]), 1.0, t0 + timedelta(minutes=s * 100 + p), s)
            for s in range(train.n_sessions) for p, i in enumerate(train.session(s))]
    df = schema.conform(pl.DataFrame(rows, schema=["user_id", "item_id", "weight", "timestamp", "session_id"],
                                     orient="row"), schema.SPLIT_EVENTS)
    valid = df.filter(pl.col("session_id") >= 240)
    Split(train=df.filter(pl.col("session_id") < 240), valid=valid, test=valid,
          meta={"evaluation": "session"}).save(str(path))
    return str(path)
