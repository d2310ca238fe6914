"""Tuning in parallel: Optuna asks in the driver, the trials run as engine tasks (Ray here)."""

import json
import os

import polars as pl
import pytest

from musicrec import MusicrecError, schema
from musicrec.engine import LocalEngine
from musicrec.evaluate.protocols import evaluate
from musicrec.preprocess.split import user_holdout
from musicrec.train.fit import fit_model
from musicrec.train.tune import tune

FIXED = {"min_item_users": 5}     # EASE over items with >= 5 listeners: a small, exact inverse


@pytest.fixture(scope="module")
def small_split(shared_data, tmp_path_factory):
    """HetRec listeners 2..400 (artist counts), user-holdout with validation; saved to a folder."""
    raw = pl.read_csv(os.path.join(shared_data, "hetrec2011-lastfm-2k", "user_artists.dat"), separator="\t")
    events = schema.conform(raw.filter(pl.col("userID") <= 400).select(
        pl.col("userID").alias("user_id"), pl.col("artistID").alias("item_id"),
        pl.col("weight").cast(pl.Float64)), schema.SPLIT_EVENTS)
    split = user_holdout(events, seed=0)
    path = str(tmp_path_factory.mktemp("tune") / "split")
    split.save(path)
    return split, path


@pytest.fixture(scope="module")
def ray_engine():
    ray = pytest.importorskip("ray")
    from musicrec.engine import RayEngine

    engine = RayEngine(num_cpus=2)    # joins (and leaves running) an instance another test started
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def ray_result(small_split, ray_engine):
    split, path = small_split
    return tune("ease", split, n_trials=4, base_params=FIXED, seed=7, engine=ray_engine, parallel=2,
                split_url=path)


def test_four_trials_complete_on_ray(ray_result):
    assert len(ray_result.trials) == 4
    assert all(t["state"] == "complete" and t["value"] > 0 for t in ray_result.trials)
    assert [t["number"] for t in ray_result.trials] == [0, 1, 2, 3]
    # the batch spread out: four different l2 values
    assert len({t["params"]["l2"] for t in ray_result.trials}) == 4
    assert ray_result.best_value == max(t["value"] for t in ray_result.trials)


def test_best_value_is_what_a_local_refit_gets(small_split, ray_result):
    split, _ = small_split
    model, _ = fit_model("ease", split, ray_result.best_params)
    local = evaluate(model, split, ks=(10,), on="valid").metrics[ray_result.metric]
    assert ray_result.best_params["min_item_users"] == 5
    assert local == pytest.approx(ray_result.best_value, rel=1e-9, abs=1e-12)


def test_same_seed_same_trials_on_the_local_engine(small_split, ray_result):
    """Same sampler seed and batch size: the driver asks the same points; the values agree (up to
    floating-point noise between processes)."""
    split, _ = small_split
    local = tune("ease", split, n_trials=4, base_params=FIXED, seed=7, engine=LocalEngine(), parallel=2)
    assert [t["params"] for t in local.trials] == [t["params"] for t in ray_result.trials]
    assert [t["value"] for t in local.trials] == pytest.approx([t["value"] for t in ray_result.trials], rel=1e-9)
    assert local.best_params == ray_result.best_params


def test_a_bad_parameter_is_one_user_error_from_a_worker(small_split, ray_engine):
    split, path = small_split
    with pytest.raises(MusicrecError, match="min_item_users") as info:
        tune("ease", split, n_trials=2, base_params={"min_item_users": 0}, engine=ray_engine, parallel=2,
             split_url=path)
    assert "\n" not in str(info.value)


def test_cli_tune_on_ray(small_split, ray_engine, tmp_path):
    from typer.testing import CliRunner

    from musicrec.cli.main import _register, app

    _register()
    _, path = small_split
    out = str(tmp_path / "tuned")
    res = CliRunner().invoke(app, ["tune", "ease", "--split", path, "--trials", "4", "--engine", "ray",
                                   "--parallel", "2", "--param", "min_item_users=5", "--out", out])
    assert res.exit_code == 0, res.output
    trials = json.load(open(os.path.join(out, "trials.json")))["trials"]
    assert len(trials) == 4 and all(t["state"] == "complete" for t in trials)
    assert "4 of 4 trials completed" in res.output
