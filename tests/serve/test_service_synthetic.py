"""The recommendation core on a small synthetic catalogue: runs without ``../shared/data``.

Three taste groups of listeners, each playing mostly its own ten artists, are written as a CSV
log, ingested, split and fitted with EASE, so what a right answer looks like is known: a listener
of group g is recommended group g's artists, a session of group g continues with them, and an
export of group-g plays gets group-g artists, with the unknown artist it names reported.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from serve_helpers import train_bundle

from musicrec import MusicrecError
from musicrec.ingest.readers import read
from musicrec.preprocess.split import make_split
from musicrec.serve.history import history_of
from musicrec.serve.service import NotFound, Service
from musicrec.store import Store

GROUPS = 3
PER_GROUP = 10


def _artist(g: int, j: int) -> str:
    return f"Band {chr(65 + g)}{j}"


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("synthetic")
    rng = random.Random(0)
    lines = ["user,artist,track,timestamp"]
    for u in range(90):
        g = u % GROUPS
        for n in range(rng.randint(6, 9)):
            gg = g if rng.random() < 0.9 else rng.randrange(GROUPS)
            j = rng.randrange(PER_GROUP)
            lines.append(f"u{u},{_artist(gg, j)},Song {j},2024-01-{1 + n:02d}T10:{u % 60:02d}:00Z")
    (root / "log.csv").write_text("\n".join(lines) + "\n")
    store = str(root / "store")
    Store(store).ingest(read("csv", str(root / "log.csv"), source="toy"))
    split = str(root / "split")
    make_split(store, "user-holdout", out=split, item_level="artist", seed=0)
    return split


@pytest.fixture(scope="module")
def service(split_dir, tmp_path_factory) -> Service:
    out = str(tmp_path_factory.mktemp("ease") / "ease")
    return Service.load(train_bundle("ease", split_dir, out, {"l2": 10.0}), one_off=True)


def test_the_ranker_gives_the_reason_of_the_model_that_put_an_item_first(split_dir, tmp_path):
    """Listener data: the ranker never proposes what was played; where EASE leads the reason is the
    similarity to a played artist, where popularity leads "popular now"."""
    params = {"candidates": "ease,most-popular", "n_candidates": 30, "n_trees": 30, "min_child_samples": 5}
    svc = Service.load(train_bundle("ranker", split_dir, str(tmp_path / "ranker"), params), one_off=True)
    plays = [_artist(0, 1), _artist(0, 2), _artist(0, 1)]
    cards = svc.recommend_session(plays, [], k=8)
    assert svc.model.task_ == "user" and len(cards) == 8
    assert not {c["name"] for c in cards} & set(plays)
    assert all(c["reason"] == "popular now" or c["reason"].startswith("similar to Band A") for c in cards)
    assert sum(c["reason"].startswith("similar to") for c in cards) >= 4


def test_loading_for_serving_warms_a_session_up(split_dir, tmp_path):
    """A served folder answers a listener and a session at load: the ranker's trees are compiled
    and walked before the first request (a one-off load, the CLI's, skips it)."""
    params = {"candidates": "ease,most-popular", "n_candidates": 30, "n_trees": 30, "min_child_samples": 5}
    folder = train_bundle("ranker", split_dir, str(tmp_path / "ranker"), params)
    assert getattr(Service.load(folder, one_off=True).model, "_forest", None) is None
    forest = Service.load(folder).model._forest
    assert forest[1] is not None


def _group(name: str) -> int:
    return ord(name.split()[1][0]) - 65


def test_a_listener_gets_their_group(service):
    users = service.bundle.users["source_id"].to_list()
    hits = []
    for u in users[:30]:
        g = int(u[1:]) % GROUPS
        cards = service.recommend_user(u, k=5)
        assert len(cards) == 5 and all(c["reason"] for c in cards)
        hits.append(np.mean([_group(c["name"]) == g for c in cards]))
    assert np.mean(hits) >= 0.8, hits


def test_a_session_by_name_continues_its_group(service):
    cards = service.recommend_session(["band a1", "Band A2", "BAND A3"], [], k=5)   # forgiving names
    assert [_group(c["name"]) for c in cards].count(0) >= 4
    assert not {c["name"] for c in cards} & {"Band A1", "Band A2", "Band A3"}           # seen items excluded
    with pytest.raises(NotFound, match="unknown artist"):
        service.recommend_session(["No Such Band"], [], k=5)


def test_similar_artists_share_a_group(service):
    item, cards = service.similar("Band B4", k=5)
    assert item["name"] == "Band B4" and [_group(c["name"]) for c in cards].count(1) >= 4


def test_an_export_gets_its_group_and_names_the_unknown(service, tmp_path):
    rows = [f"{_artist(2, j)},x,2024-02-01T10:0{j}:00Z" for j in range(4)] + ["Nobody Here,x,2024-02-01T11:00:00Z"]
    (tmp_path / "mine.csv").write_text("artist,track,timestamp\n" + "\n".join(rows) + "\n")
    found = history_of(service, tmp_path / "mine.csv")
    assert (found.n_plays, found.n_matched) == (5, 4) and found.unmatched == [("Nobody Here", 1)]
    cards = service.recommend_history(found.items, found.plays, k=5)
    assert [_group(c["name"]) for c in cards].count(2) >= 4
    (tmp_path / "none.csv").write_text("artist,track\nNobody Here,x\n")
    with pytest.raises(MusicrecError, match="none of the 1 plays"):
        history_of(service, tmp_path / "none.csv")
