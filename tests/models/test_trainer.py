"""The generic trainer: learning, early stopping, checkpoints/resume, determinism, progress,
mixed precision. Toy networks keep each test well under a second on CPU."""

import json
import os

import numpy as np
import pytest
from resume_helper import EPOCHS, hit_rate, make_model, make_train

from musicrec import MusicrecError
from musicrec.models.checkpoint import CHECKPOINT
from musicrec.models.trainer import Trainer, TrainerConfig

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: fast on a shared CPU, and the same reduction order in every run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Toy(nn.Module):
    """Linear regression behind dropout, so training draws from torch's global RNG."""

    def __init__(self, dim: int = 4):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.lin = nn.Linear(dim, 1)

    def forward(self, x):
        return self.lin(self.drop(x)).squeeze(-1)


W_TRUE = [1.0, -2.0, 0.5, 3.0]


def toy_data(n: int = 200, dim: int = 4) -> dict:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, dim, generator=g)
    return {"x": x, "y": x[:, :4] @ torch.tensor(W_TRUE) + 0.5}


def toy_fit(epochs=6, dim=4, validate=None, on_epoch=None, calls=None, snapshots=None, **config):
    """Fit a fresh Toy (seeded init); the loss also draws noise from an extra generator, like
    negative sampling does. ``snapshots`` collects the weights after each epoch. Returns (net, result)."""
    torch.manual_seed(0)
    net = Toy(dim)
    if snapshots is not None:
        on_epoch = lambda epoch, value: snapshots.__setitem__(epoch, weights(net))  # noqa: E731
    noise = torch.Generator().manual_seed(1)

    def loss_fn(net, batch):
        if calls is not None:
            calls.append(len(batch["y"]))
        jitter = 0.01 * torch.randn(len(batch["y"]), generator=noise)
        return ((net(batch["x"]) - batch["y"] - jitter) ** 2).mean()

    cfg = TrainerConfig(**{"epochs": epochs, "batch_size": 32, "learning_rate": 0.05, "device": "cpu", **config})
    result = Trainer(cfg).fit(net, loss_fn, toy_data(dim=dim), validate=validate, on_epoch=on_epoch,
                              extra_rng={"noise": noise})
    return net, result


def weights(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- learning
def test_learns_the_linear_map_and_records_history():
    net, result = toy_fit(epochs=40)
    data = toy_data()
    with torch.no_grad():
        mse = float(((net(data["x"]) - data["y"]) ** 2).mean())
    assert mse < 0.2 * float(data["y"].var())      # dropout regularises, so not an exact fit
    assert [h["epoch"] for h in result.history] == list(range(1, 41))
    assert set(result.history[0]) == {"epoch", "loss", "value", "seconds", "examples_per_s"}
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert result.history[0]["examples_per_s"] > 0
    assert (result.best_epoch, result.best_value, result.resumed_from) == (40, None, 0)
    assert not net.training


def test_early_stopping_keeps_the_best_epochs_weights():
    values = iter([0.1, 0.5, 0.4, 0.3, 0.9, 0.9])
    snapshots = {}
    net, result = toy_fit(validate=lambda: next(values), patience=2, snapshots=snapshots)
    # epoch 2 is best; epochs 3 and 4 do not improve -> patience 2 stops after epoch 4
    assert [h["value"] for h in result.history] == [0.1, 0.5, 0.4, 0.3]
    assert (result.best_epoch, result.best_value) == (2, 0.5)
    assert_same_weights(weights(net), snapshots[2])
    assert not torch.equal(snapshots[2]["lin.weight"], snapshots[4]["lin.weight"])


def test_diverging_loss_raises_a_clear_error():
    def exploding(net, batch):     # what an overflowing loss looks like
        return (net(batch["x"]) ** 2).mean() * float("inf")

    with pytest.raises(MusicrecError, match="diverged: the loss is (inf|nan) in epoch 1.*learning_rate"):
        Trainer(TrainerConfig(epochs=3, device="cpu")).fit(Toy(), exploding, toy_data())


def test_on_epoch_exception_propagates_after_the_epochs_checkpoint(tmp_path):
    class Pruned(Exception):
        pass

    def prune(epoch, value):
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        toy_fit(on_epoch=prune, checkpoint_dir=str(tmp_path))
    assert json.loads((tmp_path / CHECKPOINT).read_text())["epoch"] == 2


def test_config_errors():
    with pytest.raises(MusicrecError, match="checkpoint_dir"):
        toy_fit(resume=True)
    with pytest.raises(MusicrecError, match="amp_dtype"):
        toy_fit(amp_dtype="float8")


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_identical_weights_and_losses():
    net_a, res_a = toy_fit()
    net_b, res_b = toy_fit()
    assert_same_weights(weights(net_a), weights(net_b))
    assert [h["loss"] for h in res_a.history] == [h["loss"] for h in res_b.history]
    net_c, _ = toy_fit(seed=1)          # another shuffling order
    assert not torch.equal(net_a.lin.weight, net_c.lin.weight)


def test_estimator_same_seed_identical_other_seed_differs():
    train = make_train()
    a, b, c = (make_model(epochs=2, seed=s).fit(train) for s in (0, 0, 1))
    assert_same_weights(weights(a.net_), weights(b.net_))
    assert [h["loss"] for h in a.history_] == [h["loss"] for h in b.history_]
    assert a.history_[0]["loss"] != c.history_[0]["loss"]


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_files_are_numpy_and_json(tmp_path):
    net, _ = toy_fit(epochs=3, checkpoint_dir=str(tmp_path))
    meta = json.loads((tmp_path / CHECKPOINT).read_text())
    assert (meta["epoch"], meta["arrays"], meta["stale"], len(meta["history"])) == (3, "ckpt-0003.npz", 0, 3)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "ckpt-0003.npz"]   # older epochs and temp files gone
    with np.load(tmp_path / "ckpt-0003.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["net.lin.weight"], net.lin.weight.detach().numpy())
        assert npz["opt.0.exp_avg"].shape == (1, 4) and npz["opt.0.exp_avg_sq"].shape == (1, 4)
        assert float(npz["opt.0.step"]) == 3 * 7                      # 200 rows / 32 = 7 steps per epoch
        for rng in ("rng.shuffle", "rng.extra.noise", "rng.torch"):
            assert npz[rng].dtype == np.uint8


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full, full_res = toy_fit(epochs=6)
    toy_fit(epochs=3, checkpoint_dir=str(tmp_path))
    torch.manual_seed(12345)            # a new process would start from another global RNG state
    resumed, res = toy_fit(epochs=6, checkpoint_dir=str(tmp_path), resume=True)
    assert res.resumed_from == 3
    assert_same_weights(weights(resumed), weights(full))
    assert [h["loss"] for h in res.history] == [h["loss"] for h in full_res.history]


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    net, res = toy_fit(epochs=2, checkpoint_dir=str(tmp_path / "new"), resume=True)
    assert res.resumed_from == 0 and len(res.history) == 2
    assert_same_weights(weights(net), weights(toy_fit(epochs=2)[0]))


def test_resuming_a_finished_run_returns_its_result_without_training(tmp_path):
    values = iter([0.1, 0.5, 0.4, 0.3])
    net, first = toy_fit(validate=lambda: next(values), patience=2, checkpoint_dir=str(tmp_path))
    calls = []
    again, second = toy_fit(epochs=20, validate=lambda: 1.0, patience=2, checkpoint_dir=str(tmp_path),
                            resume=True, calls=calls)
    assert calls == []                  # stopped early: more epochs allowed does not restart it
    assert (second.best_epoch, second.best_value, second.history) == (2, 0.5, first.history)
    assert_same_weights(weights(again), weights(net))


@pytest.mark.parametrize("change, message", [({"learning_rate": 0.01}, "learning_rate"),
                                              ({"dim": 5}, "weights.lin.weight"),
                                              ({"seed": 3}, "seed")])
def test_resume_rejects_a_checkpoint_of_another_run(tmp_path, change, message):
    toy_fit(epochs=1, checkpoint_dir=str(tmp_path))
    with pytest.raises(MusicrecError, match=f"different run.*{message}"):
        toy_fit(epochs=2, checkpoint_dir=str(tmp_path), resume=True, **change)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    toy_fit(epochs=1, checkpoint_dir=str(tmp_path))
    os.remove(tmp_path / "ckpt-0001.npz")
    with pytest.raises(MusicrecError, match="cannot read the checkpoint"):
        toy_fit(epochs=2, checkpoint_dir=str(tmp_path), resume=True)


def test_estimator_resume_matches_uninterrupted_fit(tmp_path):
    """SASRec with dropout and sampled negatives: the estimator's sampler is checkpointed too."""
    train = make_train()
    full = make_model(epochs=4).fit(train, valid=hit_rate)
    make_model(epochs=2).fit(train, valid=hit_rate, checkpoint_dir=str(tmp_path))
    resumed = make_model(epochs=4).fit(train, valid=hit_rate, checkpoint_dir=str(tmp_path), resume=True)
    assert_same_weights(weights(resumed.net_), weights(full.net_))
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]
    assert resumed.best_epoch_ == full.best_epoch_
    with pytest.raises(MusicrecError, match="different run.*dropout"):
        make_model(epochs=4, dropout=0.3).fit(train, checkpoint_dir=str(tmp_path), resume=True)


def test_estimator_on_epoch_pruning_propagates_and_resets_fit_options(tmp_path):
    optuna = pytest.importorskip("optuna")
    seen = []

    def report(epoch, value):
        seen.append((epoch, value))
        if epoch == 2:
            raise optuna.TrialPruned()

    model = make_model(epochs=EPOCHS)
    with pytest.raises(optuna.TrialPruned):
        model.fit(make_train(), valid=hit_rate, on_epoch=report, checkpoint_dir=str(tmp_path), progress=True)
    assert [e for e, _ in seen] == [1, 2] and all(0 <= v <= 1 for _, v in seen)
    assert (model._valid, model._on_epoch, model._checkpoint_dir, model._resume, model._progress) == (
        None, None, None, False, False)
    model.fit(make_train(), valid=None)          # the next fit runs without the old callbacks
    assert model.best_epoch_ == EPOCHS and all(h["value"] is None for h in model.history_)


# ---------------------------------------------------------------- progress and precision
def test_progress_reports_epoch_loss_and_throughput_on_stderr(capsys):
    toy_fit(epochs=2, progress=True, validate=lambda: 0.25)
    out, err = capsys.readouterr()
    assert out == ""
    assert "epoch 1/2: loss" in err and "epoch 2/2: loss" in err
    assert "valid 0.2500" in err and "ex/s" in err


def test_amp_is_a_no_op_on_cpu():
    seen = []

    def loss_fn(net, batch):
        seen.append(torch.is_autocast_enabled("cuda") or torch.is_autocast_enabled("cpu"))
        return (net(batch["x"]) ** 2).mean()

    torch.manual_seed(0)
    Trainer(TrainerConfig(epochs=1, batch_size=100, device="cpu", amp=True)).fit(Toy(), loss_fn, toy_data())
    assert seen == [False, False]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_cuda_mixed_precision_trains_and_resumes(tmp_path, amp_dtype):
    seen = []

    def loss_fn(net, batch):
        seen.append((torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")))
        return ((net(batch["x"]) - batch["y"]) ** 2).mean()

    def fit(epochs, resume=False):
        torch.manual_seed(0)
        net = Toy()
        cfg = TrainerConfig(epochs=epochs, batch_size=32, learning_rate=0.05, device="cuda", amp_dtype=amp_dtype,
                            checkpoint_dir=str(tmp_path), resume=resume)
        return net, Trainer(cfg).fit(net, loss_fn, toy_data())

    net, result = fit(3)
    assert seen and all(s == (True, getattr(torch, amp_dtype)) for s in seen)
    assert next(net.parameters()).device.type == "cuda" and next(net.parameters()).dtype == torch.float32
    losses = [h["loss"] for h in result.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    with np.load(tmp_path / "ckpt-0003.npz", allow_pickle=False) as npz:
        assert "rng.cuda" in npz.files
    meta = json.loads((tmp_path / CHECKPOINT).read_text())
    assert bool(meta["scaler"]) == (amp_dtype == "float16")       # loss scaling only for float16
    net, resumed = fit(5, resume=True)
    assert resumed.resumed_from == 3 and len(resumed.history) == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_estimator_fits_and_scores_on_cpu_after(tmp_path):
    train = make_train()
    model = make_model(device="cuda", epochs=3).fit(train, valid=hit_rate, checkpoint_dir=str(tmp_path))
    assert next(model.net_.parameters()).device.type == "cpu"
    assert np.isfinite([h["loss"] for h in model.history_]).all()
    resumed = make_model(device="cuda", epochs=4).fit(train, valid=hit_rate, checkpoint_dir=str(tmp_path), resume=True)
    assert len(resumed.history_) == 4 and resumed.history_[:3] == model.history_
