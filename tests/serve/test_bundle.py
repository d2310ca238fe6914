"""ModelBundle answers for new listeners and sessions given by name."""

import pytest
from serve_helpers import train_bundle

from musicrec import MusicrecError
from musicrec.bundle import ModelBundle


@pytest.fixture(scope="module")
def recent_dir(hetrec, tmp_path_factory):
    """recently-played on HetRec: it ranks a listener's own items first, so seeds show whether
    they were excluded."""
    return train_bundle("recently-played", hetrec["split"], str(tmp_path_factory.mktemp("recent") / "model"))


def test_seeds_are_excluded_unless_asked_for(recent_dir):
    bundle = ModelBundle.load(recent_dir)
    seeds = ["radiohead", "muse"]
    wanted = {bundle.item_index(s) for s in seeds}
    names = {bundle.display[i] for i in wanted}
    excluded = {r.name for r in bundle.recommend_seeds(seeds, k=5)}
    assert excluded and not excluded & names
    included = [r.name for r in bundle.recommend_seeds(seeds, k=5, exclude_seen=False)]
    assert set(included[:2]) == names


def test_unknown_seed_is_a_user_error(recent_dir):
    with pytest.raises(MusicrecError, match="no artist matches"):
        ModelBundle.load(recent_dir).recommend_seeds(["zzzz qqqq xxxx"], k=5)


def test_tag_onboarding_recommends_the_genre(recent_dir):
    bundle = ModelBundle.load(recent_dir)
    seeds, names = bundle.tag_seeds(["Heavy Metal"], n=5)
    assert names == ["heavy metal"] and len(seeds) == 5
    tagged = set(bundle.item_tags.filter(bundle.item_tags["tag"] == "heavy metal")["item_id"].to_list())
    assert {int(bundle.items["item_id"][int(i)]) for i in seeds} <= tagged
    recs = bundle.recommend_tags(["heavy metal"], k=5)
    assert len(recs) == 5 and all("heavy metal favourite" in r.reason for r in recs)
    with pytest.raises(MusicrecError, match="unknown tag"):
        bundle.recommend_tags(["zzqx no such genre"])
