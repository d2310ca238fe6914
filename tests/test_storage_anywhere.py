"""Splits and model folders on any fsspec URL (``memory://`` here; S3 in tests/test_s3.py), and
one-line errors for missing or damaged files."""

import os
import uuid

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError, fsio, schema
from musicrec.bundle import ModelBundle
from musicrec.features.interactions import Interactions
from musicrec.models.registry import create, load_model
from musicrec.preprocess.split import user_holdout
from musicrec.preprocess.splitset import Split


@pytest.fixture
def split():
    rows = [(u, i, 1.0 + (u * i) % 3) for u in range(1, 30) for i in range(1, 40) if (u + i) % 3]
    events = pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "weight": pl.Float64},
                          orient="row")
    sp = user_holdout(schema.conform(events, schema.SPLIT_EVENTS), seed=0, min_items=2)
    sp.items = schema.conform(pl.DataFrame({"item_id": list(range(1, 40)),
                                            "name": [f"artist {i}" for i in range(1, 40)]}), schema.SPLIT_ITEMS)
    return sp


@pytest.fixture
def mem():
    return f"memory://musicrec-{uuid.uuid4().hex[:8]}"


def frames(sp):
    return [getattr(sp, n) for n in ("train", "valid", "test", "items", "item_tags", "users")]


def test_split_round_trip_on_a_url_and_replacement_as_a_whole(split, mem, tmp_path):
    split.save(f"{mem}/split")
    split.save(str(tmp_path / "split"))
    remote, local = Split.load(f"{mem}/split"), Split.load(str(tmp_path / "split"))
    assert all(a.equals(b) for a, b in zip(frames(remote), frames(local)))
    assert remote.meta == local.meta and remote.meta["counts"]["train"] == split.train.height
    # a split without validation replaces the folder: no stale valid.parquet is read back
    for where in (f"{mem}/split", str(tmp_path / "split")):
        Split(train=split.train, test=split.test, meta={"protocol": "again"}).save(where)
        again = Split.load(where)
        assert again.valid is None and again.meta["protocol"] == "again"


def test_model_folder_on_a_url(split, mem, tmp_path):
    train = Interactions.from_frame(split.train)
    model = create("itemknn", neighbors=10).fit(train)
    ModelBundle(model, split.items, split.users, {"item_level": "artist"}).save(f"{mem}/model")
    ModelBundle(model, split.items, split.users, {"item_level": "artist"}).save(str(tmp_path / "model"))
    for name in ("state.npz", "interactions.npz"):
        a, b = fsio.load_arrays(f"{mem}/model/{name}"), fsio.load_arrays(str(tmp_path / "model" / name))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    remote, local = ModelBundle.load(f"{mem}/model"), ModelBundle.load(str(tmp_path / "model"))
    assert remote.items.equals(local.items)
    users = np.arange(5)
    assert np.array_equal(remote.model.recommend_users(users, k=5)[0], local.model.recommend_users(users, k=5)[0])
    assert load_model(f"{mem}/model").get_params() == model.get_params()


def _one_line(exc_info, fragment):
    text = str(exc_info.value)
    assert "\n" not in text and fragment in text, text


def test_missing_and_damaged_files_are_one_line_errors(split, mem, tmp_path):
    with pytest.raises(MusicrecError) as e:
        Split.load(f"{mem}/nothing")
    _one_line(e, "not a split folder")
    path = str(tmp_path / "split")
    split.save(path)
    with open(os.path.join(path, "train.parquet"), "wb") as fh:
        fh.write(b"not parquet at all")
    with pytest.raises(MusicrecError) as e:
        Split.load(path)
    _one_line(e, "unreadable split")
    split.save(path)
    with open(os.path.join(path, "meta.json"), "w") as fh:
        fh.write("{broken")
    with pytest.raises(MusicrecError) as e:
        Split.load(path)
    _one_line(e, "unreadable split")

    model_dir = str(tmp_path / "model")
    create("most-popular").fit(Interactions.from_frame(split.train)).save(model_dir)
    with open(os.path.join(model_dir, "state.npz"), "wb") as fh:
        fh.write(b"garbage")
    with pytest.raises(MusicrecError) as e:
        load_model(model_dir)
    _one_line(e, "state.npz")
    os.remove(os.path.join(model_dir, "state.npz"))
    with pytest.raises(MusicrecError) as e:
        load_model(model_dir)
    _one_line(e, "no such file")
    with pytest.raises(MusicrecError) as e:
        ModelBundle.load(f"{mem}/no-model")
    _one_line(e, "no such model folder")
    with pytest.raises(MusicrecError) as e:
        load_model(str(tmp_path))
    _one_line(e, "not a model directory")
