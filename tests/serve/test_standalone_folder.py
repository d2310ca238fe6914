"""A model folder stands alone: copied elsewhere, with its split and its store deleted, it
serves and recommends exactly as before (everything serving needs was written into it)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from serve_helpers import train_bundle

from musicrec.serve.service import Service


def answers(svc: Service) -> dict:
    users = svc.bundle.users["source_id"].to_list()[:5]
    items = svc.bundle.items["item_id"].to_list()
    return {
        "users": [svc.recommend_user(u, k=10) for u in users],
        "rules": [svc.recommend_user(u, k=5, max_per_artist=1, diversity=0.3) for u in users[:2]],
        "session": svc.recommend_session([str(i) for i in items[:3]], [], k=10),
        "seeds": svc.recommend_session([], [svc.names[0]], k=5),
        "similar": [svc.similar(str(i), k=5) for i in items[:3]],
        "search": svc.search(svc.names[1][:4]),
        "data_cut": svc.data_cut,
    }


@pytest.mark.parametrize("model", ["ease", "als"])
def test_a_copied_folder_answers_the_same_without_its_split_and_store(model, hetrec, tmp_path):
    split, store = tmp_path / "split", tmp_path / "store"
    shutil.copytree(hetrec["split"], split)
    shutil.copytree(hetrec["store"], store)
    meta = (split / "meta.json").read_text()
    (split / "meta.json").write_text(meta.replace(hetrec["store"], str(store)))
    folder = train_bundle(model, str(split), str(tmp_path / "model"))
    before = Service.load(folder)
    assert before.writer is not None and before.data_cut > 0     # the store and the cut were found
    want = answers(before)

    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(folder, moved)
    shutil.rmtree(folder)
    shutil.rmtree(split)
    shutil.rmtree(store)
    after = Service.load(str(moved))
    got = answers(after)
    assert got["data_cut"] == want["data_cut"]
    for key in ("users", "rules", "session", "seeds", "similar", "search"):
        assert got[key] == want[key], key
    assert after.writer is None               # no store to post plays to: said at /health, not a crash
    assert np.isfinite(got["users"][0][0]["score"])
