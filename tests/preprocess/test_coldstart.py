"""Item and user cold-start split protocols on HetRec Last.fm 2K (artist level)."""

import os

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.preprocess.coldstart import item_coldstart, seed_frame, user_coldstart
from musicrec.preprocess.split import PROTOCOLS, make_split
from musicrec.preprocess.splitset import Split


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory) -> str:
    from musicrec.store import ingest_path

    path = str(tmp_path_factory.mktemp("coldstart") / "store")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), path)
    return path


@pytest.fixture(scope="module")
def events(store):
    """All HetRec events, as make_split hands them to a protocol (user-holdout keeps them all in parts)."""
    sp = make_split(store, "user-holdout", valid_frac=0.0)
    return pl.concat([sp.train, sp.test]).sort("user_id", "item_id")


def ids(df, col):
    return set(df[col].to_list())


# --------------------------------------------------------------------- item cold start
def test_item_coldstart_holds_items_out_of_train(events):
    sp = item_coldstart(events, test_frac=0.1, valid_frac=0.05, seed=0)
    cold_test, cold_valid = set(sp.meta["cold_items"]["test"]), set(sp.meta["cold_items"]["valid"])
    n_items = events["item_id"].n_unique()
    assert sp.meta["n_items"] == n_items
    assert abs(len(cold_test) - 0.1 * n_items) <= 1 and abs(len(cold_valid) - 0.05 * n_items) <= 1
    assert not cold_test & cold_valid
    assert not ids(sp.train, "item_id") & (cold_test | cold_valid)
    assert ids(sp.test, "item_id") <= cold_test and ids(sp.valid, "item_id") <= cold_valid
    # every event of a cold item is in its part unless its user has no training history
    n_cold = events.filter(pl.col("item_id").is_in(list(cold_test))).height
    assert sp.test.height + sp.meta["removed_no_history"]["test"] == n_cold
    assert sp.train.height + sp.test.height + sp.valid.height + sum(sp.meta["removed_no_history"].values()) \
        == events.height
    assert ids(sp.test, "user_id") <= ids(sp.train, "user_id")
    assert sp.evaluation == "user" and sp.meta["candidates"] == "cold"


def test_item_coldstart_is_seeded_and_order_free(events):
    a = item_coldstart(events, seed=1)
    b = item_coldstart(events.sample(fraction=1.0, shuffle=True, seed=5), seed=1)
    c = item_coldstart(events, seed=2)
    assert a.meta["cold_items"] == b.meta["cold_items"]
    assert a.meta["cold_items"]["test"] != c.meta["cold_items"]["test"]
    assert item_coldstart(events, valid_frac=0).valid is None


# --------------------------------------------------------------------- user cold start
@pytest.mark.parametrize("n_seeds", [1, 3, 5])
def test_user_coldstart_seeds_and_targets(events, n_seeds):
    sp = user_coldstart(events, n_seeds=n_seeds, seed=0)
    held = set(sp.meta["cold_users"]["test"]) | set(sp.meta["cold_users"]["valid"])
    eligible = events.group_by("user_id").agg(pl.col("item_id").n_unique().alias("n")).filter(pl.col("n") >= 6)
    assert abs(len(sp.meta["cold_users"]["test"]) - 0.1 * eligible.height) <= 1
    assert not ids(sp.train, "user_id") & held
    seeds = seed_frame(sp)
    per_user = seeds.group_by("user_id").len()
    assert (per_user["len"] == n_seeds).all()
    assert ids(sp.test, "user_id") | ids(sp.valid, "user_id") == set(per_user["user_id"].to_list())
    assert len(held) - per_user.height == sp.meta["dropped_users"] <= 2
    seed_pairs = set(zip(seeds["user_id"].to_list(), seeds["item_id"].to_list()))
    for part in (sp.test, sp.valid):
        assert not seed_pairs & set(zip(part["user_id"].to_list(), part["item_id"].to_list()))
    # seeds and targets are items a model trained on train can score
    assert ids(seeds, "item_id") <= ids(sp.train, "item_id")
    assert ids(sp.test, "item_id") <= ids(sp.train, "item_id")


def test_user_coldstart_same_users_nested_seeds(events):
    splits = {n: user_coldstart(events, n_seeds=n, seed=3) for n in (1, 3, 5)}
    assert splits[1].meta["cold_users"] == splits[5].meta["cold_users"]
    pairs = {n: set(zip(*(seed_frame(s)[c].to_list() for c in ("user_id", "item_id")))) for n, s in splits.items()}
    # a user with too few known items for 5 seeds is dropped there; the others' seeds nest
    both = {u for u, _ in pairs[5]}
    assert {p for p in pairs[1] if p[0] in both} <= {p for p in pairs[3] if p[0] in both} <= pairs[5]
    assert len(both) >= 0.95 * len({u for u, _ in pairs[1]})
    other = user_coldstart(events, n_seeds=3, seed=4)
    assert other.meta["cold_users"]["test"] != splits[3].meta["cold_users"]["test"]


def test_user_coldstart_checks_parameters(events):
    with pytest.raises(MusicrecError, match="n_seeds"):
        user_coldstart(events, n_seeds=0)
    with pytest.raises(MusicrecError, match="min_items"):
        user_coldstart(events, n_seeds=5, min_items=5)
    with pytest.raises(MusicrecError, match="test_frac"):
        item_coldstart(events, test_frac=0.6, valid_frac=0.5)
    with pytest.raises(MusicrecError, match="no seeds"):
        seed_frame(item_coldstart(events))


# --------------------------------------------------------------------- through make_split
def test_protocols_registered_and_saved(store, tmp_path):
    assert PROTOCOLS["item-coldstart"] is item_coldstart and PROTOCOLS["user-coldstart"] is user_coldstart
    sp = make_split(store, "user-coldstart", out=str(tmp_path / "uc"), n_seeds=5, seed=7)
    back = Split.load(str(tmp_path / "uc"))
    assert back.meta["seeds"] == sp.meta["seeds"] and back.meta["params"]["n_seeds"] == 5
    assert seed_frame(back).group_by("user_id").len()["len"].unique().to_list() == [5]
    ic = make_split(store, "item-coldstart", out=str(tmp_path / "ic"), seed=7)
    back = Split.load(str(tmp_path / "ic"))
    assert back.meta["cold_items"] == ic.meta["cold_items"] and back.meta["candidates"] == "cold"
    # the catalogue tables cover the cold test items, so content features can place them
    assert ids(back.test, "item_id") <= ids(back.items, "item_id")
    assert np.isin(back.test["item_id"].unique().to_numpy(), back.item_tags["item_id"].to_numpy()).mean() > 0.5
    with pytest.raises(MusicrecError, match="does not take"):
        make_split(store, "item-coldstart", n_seeds=3)
