"""Evaluation and fitting on the cold-start splits (real HetRec Last.fm 2K, artist level)."""

import os

import numpy as np
import pytest

from musicrec import MusicrecError
from musicrec.evaluate.protocols import evaluate
from musicrec.models.base import Recommender
from musicrec.models.registry import MODELS
from musicrec.preprocess.split import make_split
from musicrec.train.fit import fit_model


class TagProfileKNN(Recommender):
    """Content baseline: a history's mean TF-IDF tag vector, cosine to every item's."""

    name = "tag-profile-knn"
    uses_content = True

    def __init__(self):
        pass

    def _fit(self, train):
        if not hasattr(self, "content_"):
            raise MusicrecError(f"{self.name}: needs item content")

    def score(self, histories):
        hist = histories.matrix.copy()
        hist.data[:] = 1.0
        profile = (hist @ self.content_).toarray()
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        return np.asarray(profile @ self.content_.T.toarray(), dtype=np.float32)


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory) -> str:
    from musicrec.store import ingest_path

    path = str(tmp_path_factory.mktemp("coldeval") / "store")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), path)
    return path


@pytest.fixture(scope="module")
def item_split(store):
    return make_split(store, "item-coldstart", seed=0)


@pytest.fixture(scope="module")
def user_split(store):
    # 5-core on items: ~2.8k artists instead of ~16k keeps EASE's Gram inverse fast
    return make_split(store, "user-coldstart", seed=0, n_seeds=3, k_core_item=5)


@pytest.fixture
def content_model(monkeypatch):
    monkeypatch.setitem(MODELS, TagProfileKNN.name, TagProfileKNN)
    return TagProfileKNN.name


def test_item_coldstart_ranks_only_cold_items(item_split, content_model):
    cold = set(item_split.meta["cold_items"]["test"])
    pop, _ = fit_model("most-popular", item_split)
    knn, _ = fit_model(content_model, item_split)
    # the catalogue includes the cold items (no plays) and the content covers it
    assert cold <= set(pop.train_.items.ids.tolist())
    assert pop.train_.matrix[:, pop.train_.items.index(sorted(cold))].nnz == 0
    assert knn.content_.shape[0] == knn.train_.n_items

    r_pop = evaluate(pop, item_split, ks=(10, 20))
    r_knn = evaluate(knn, item_split, ks=(10, 20))
    assert r_pop.info["n_candidates"] == len(cold)
    assert r_pop.info["n_users"] == item_split.test["user_id"].n_unique()
    # popularity is blind to items without plays; tags are not
    assert r_pop.metrics["ndcg@10"] < 0.02
    assert r_knn.metrics["ndcg@10"] > r_pop.metrics["ndcg@10"] + 0.02
    assert r_knn.metrics["recall@20"] > r_pop.metrics["recall@20"]

    # every recommended item is a test cold item (the per-user coverage counts only them)
    assert r_knn.metrics["coverage@20"] <= len(cold) / knn.train_.n_items + 1e-9
    # the valid part ranks its own cold items
    r_valid = evaluate(knn, item_split, ks=(10,), on="valid")
    assert r_valid.info["n_candidates"] == len(item_split.meta["cold_items"]["valid"])


def test_two_tower_ranks_cold_items_from_content(item_split, tmp_path):
    from musicrec.models.registry import load_model

    model, _ = fit_model("two-tower", item_split, {"embedding_dim": 32, "epochs": 2, "batch_size": 1024})
    assert model.content_.shape[0] == model.train_.n_items
    pop, _ = fit_model("most-popular", item_split)
    r_tt, r_pop = evaluate(model, item_split, ks=(10,)), evaluate(pop, item_split, ks=(10,))
    assert r_tt.metrics["ndcg@10"] > r_pop.metrics["ndcg@10"] + 0.02
    # what `musicrec evaluate MODEL_DIR --split ...` does: load in a fresh model, same numbers
    model.save(str(tmp_path / "tt"))
    again = evaluate(load_model(str(tmp_path / "tt")), item_split, ks=(10,))
    assert again.metrics == pytest.approx(r_tt.metrics)


def test_item_coldstart_needs_cold_items_in_catalogue(item_split):
    from musicrec.features.interactions import Interactions
    from musicrec.models.most_popular import MostPopular

    model = MostPopular().fit(Interactions.from_frame(item_split.train))  # warm catalogue only
    with pytest.raises(MusicrecError, match="cold test items"):
        evaluate(model, item_split)


def test_user_coldstart_scores_from_seeds(user_split):
    results = {name: evaluate(fit_model(name, user_split, params)[0], user_split, ks=(10,))
               for name, params in [("most-popular", {}), ("ease", {}),
                                    ("als", {"factors": 32, "iterations": 10})]}
    pop = results["most-popular"]
    assert pop.info["history"] == "seeds"
    test_users = set(user_split.test["user_id"].to_list())
    assert set(pop.per_user["user_id"].to_list()) <= test_users
    assert pop.info["n_users"] >= 0.95 * len(test_users)
    # three seeds carry taste: the collaborative models beat the popularity ranking
    assert results["ease"].metrics["ndcg@10"] > pop.metrics["ndcg@10"]
    assert results["als"].metrics["ndcg@10"] > pop.metrics["ndcg@10"]


def test_user_coldstart_excludes_seeds(user_split):
    """A model that scores the seeds highest recommends nothing from them."""
    from musicrec.models.most_popular import MostPopular
    from musicrec.preprocess.coldstart import seed_frame

    class EchoSeeds(MostPopular):
        def score(self, histories):
            return np.asarray(histories.matrix.toarray() * 1e6 + super().score(histories), dtype=np.float32)

    model, _ = fit_model("most-popular", user_split)
    echo = EchoSeeds().fit(model.train_)
    a = evaluate(model, user_split, ks=(10,))
    b = evaluate(echo, user_split, ks=(10,))
    assert a.metrics == pytest.approx(b.metrics)
    # without exclusion the seeds (never relevant: they are not test rows) fill the top
    c = evaluate(echo, user_split, ks=(10,), exclude_seen=False)
    assert c.metrics["ndcg@10"] < a.metrics["ndcg@10"]
    seeds = seed_frame(user_split)
    assert seeds.join(user_split.test, on=["user_id", "item_id"], how="inner").height == 0
