"""Small real models for the serving tests, built once per test session in temporary folders.

HetRec Last.fm 2K (artist level, user-holdout, items with >= 20 listeners: ~800 artists) for
EASE and ALS; 30Music (track level, session-lastday, tracks with >= 10 listeners: ~600 tracks)
for a one-epoch GRU4Rec and for the every-model test. Each model trains in about a second.
"""

from __future__ import annotations

import os
import shutil

import pytest
from serve_helpers import train_bundle


@pytest.fixture(scope="session")
def hetrec(shared_data, tmp_path_factory) -> dict:
    """{"store", "split"}: HetRec Last.fm 2K ingested and split (artist level)."""
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path

    root = tmp_path_factory.mktemp("hetrec")
    store, split = str(root / "store"), str(root / "split")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), store)
    make_split(store, "user-holdout", out=split, seed=0, k_core_item=20)
    return {"store": store, "split": split, "root": root}


@pytest.fixture(scope="session")
def thirty(shared_data, tmp_path_factory) -> dict:
    """{"store", "split"}: 30Music sessions ingested and split by last day (track level)."""
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path

    root = tmp_path_factory.mktemp("thirty")
    store, split = str(root / "store"), str(root / "split")
    ingest_path("30music", os.path.join(shared_data, "30music-200ks-test-slices"), store)
    make_split(store, "session-lastday", out=split, item_level="track", k_core_item=10)
    return {"store": store, "split": split, "root": root}


@pytest.fixture(scope="session")
def ease_dir(hetrec) -> str:
    return train_bundle("ease", hetrec["split"], str(hetrec["root"] / "ease"))


@pytest.fixture(scope="session")
def als_dir(hetrec) -> str:
    return train_bundle("als", hetrec["split"], str(hetrec["root"] / "als"), {"factors": 16, "iterations": 3})


@pytest.fixture(scope="session")
def gru_dir(thirty) -> str:
    return train_bundle("gru4rec", thirty["split"], str(thirty["root"] / "gru4rec"))


@pytest.fixture
def store_copy(hetrec, tmp_path) -> str:
    """A private copy of the HetRec store, for tests that append plays."""
    dst = str(tmp_path / "store")
    shutil.copytree(hetrec["store"], dst)
    return dst
