"""Answers for new listeners and sessions given by name (seeds, tags), through the one core."""

import pytest
from serve_helpers import train_bundle

from musicrec import MusicrecError
from musicrec.bundle import ModelBundle
from musicrec.serve.service import Service


@pytest.fixture(scope="module")
def recent_dir(hetrec, tmp_path_factory):
    """recently-played on HetRec: it ranks a listener's own items first, so seeds show whether
    they were excluded."""
    return train_bundle("recently-played", hetrec["split"], str(tmp_path_factory.mktemp("recent") / "model"))


def test_seeds_are_excluded_unless_asked_for(recent_dir):
    svc = Service.load(recent_dir, one_off=True)
    seeds = ["radiohead", "muse"]
    names = {svc.names[svc.resolve_item(s)] for s in seeds}
    assert names == {"Radiohead", "Muse"}
    excluded = {c["name"] for c in svc.recommend_session([], seeds, k=5)}
    assert excluded and not excluded & names
    included = [c["name"] for c in svc.recommend_session([], seeds, k=5, exclude_seen=False)]
    assert set(included[:2]) == names


def test_unknown_seed_is_a_user_error(recent_dir):
    with pytest.raises(MusicrecError, match="unknown artist 'zzzz qqqq xxxx'"):
        Service.load(recent_dir, one_off=True).recommend_session([], ["zzzz qqqq xxxx"], k=5)


def test_tag_onboarding_recommends_the_genre(recent_dir):
    bundle = ModelBundle.load(recent_dir)
    seeds, names = bundle.tag_seeds(["Heavy Metal"], n=5)
    assert names == ["heavy metal"] and len(seeds) == 5
    tagged = set(bundle.item_tags.filter(bundle.item_tags["tag"] == "heavy metal")["item_id"].to_list())
    assert {int(bundle.items["item_id"][int(i)]) for i in seeds} <= tagged
    svc = Service(bundle, recent_dir, one_off=True)
    cards = svc.recommend_session([], [], k=5, exclude_seen=False, seed_tags=["heavy metal"])
    assert len(cards) == 5 and {c["item_id"] for c in cards} <= tagged
    with pytest.raises(MusicrecError, match="unknown tag"):
        svc.recommend_session([], [], k=5, seed_tags=["zzqx no such genre"])
