"""FlatForest: LightGBM's trees walked as flat arrays give Booster.predict's numbers exactly."""

import lightgbm as lgb
import numpy as np
import pytest

from musicrec.models.forest import FlatForest


def _booster(x, y, **params):
    params = {"objective": "regression", "num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1,
              "num_threads": 1, "deterministic": True, **params}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=60)


def _data(seed=0, n=2000, f=6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[rng.random(x.shape) < 0.25] = 0.0        # many exact zeros, as the ranker's features have
    x[:, 2] = np.round(x[:, 2] * 3)            # a few distinct values: thresholds between them
    y = np.sin(x[:, 0]) + x[:, 1] * (x[:, 2] > 0) + 0.1 * rng.normal(size=n)
    return x, y


def test_same_scores_as_lightgbm_bit_for_bit():
    x, y = _data()
    booster = _booster(x, y)
    forest = FlatForest.from_booster(booster)
    assert forest is not None and len(forest.roots) == booster.num_trees()
    # lopsided trees: rows not at a leaf after a tree's first steps take the rest on their own
    assert (forest.first < forest.depth).any() and (forest.first > 0).all()
    probe, _ = _data(seed=1, n=500)
    # values on and beside every threshold, below 1e-35 (LightGBM reads them as 0), NaN and inf
    thresholds = forest.threshold[np.isfinite(forest.threshold)]
    feats = forest.feature[np.isfinite(forest.threshold)]
    edge = np.zeros((3 * len(thresholds), x.shape[1]), np.float32)
    for n, (f, t) in enumerate(zip(feats, thresholds)):
        for d, v in enumerate((np.float32(t), np.nextafter(np.float32(t), np.float32(-np.inf)),
                               np.nextafter(np.float32(t), np.float32(np.inf)))):
            edge[3 * n + d, f] = v
    odd = np.array([[1e-36, -1e-36, np.nan, np.inf, -np.inf, 0.0]] * 2, np.float32)
    odd[1] = odd[1, ::-1]
    for rows in (probe, edge, odd, probe[:1], probe[:0]):
        assert np.array_equal(forest.predict(rows), booster.predict(rows, num_threads=1)), rows[:2]
    # float64 rows too (LightGBM reads them as given)
    assert np.array_equal(forest.predict(probe.astype(np.float64) / 3),
                          booster.predict(probe.astype(np.float64) / 3, num_threads=1))


def test_a_ranker_booster_and_one_leaf_trees():
    x, y = _data(seed=2, n=600)
    group = np.full(60, 10)
    booster = lgb.train({"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 150, "verbose": -1},
                        lgb.Dataset(x, (y > 0.5).astype(float), group=group), num_boost_round=30)
    forest = FlatForest.from_booster(booster)
    assert forest is not None
    assert np.array_equal(forest.predict(x), booster.predict(x, num_threads=1))
    stumps = _booster(x, y, min_data_in_leaf=len(x))       # no split possible: one-leaf trees
    assert {t["num_leaves"] for t in stumps.dump_model()["tree_info"]} == {1}
    assert np.array_equal(FlatForest.from_booster(stumps).predict(x), stumps.predict(x, num_threads=1))


def test_what_the_walk_does_not_cover_is_left_to_lightgbm():
    x, y = _data(seed=3)
    with_nan = x.copy()
    with_nan[::7, 0] = np.nan                  # the splits learn where missing values go
    assert FlatForest.from_booster(_booster(with_nan, y)) is None
    cat = x.copy()
    cat[:, 3] = np.abs(np.round(cat[:, 3] * 2))
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5,
                         "min_data_per_group": 5, "cat_smooth": 1},
                        lgb.Dataset(cat, y + cat[:, 3], categorical_feature=[3]), num_boost_round=20)
    assert FlatForest.from_booster(booster) is None


def test_wrong_width_is_an_error():
    x, y = _data(seed=4)
    forest = FlatForest.from_booster(_booster(x, y))
    with pytest.raises(ValueError, match="6 features"):
        forest.predict(np.zeros((2, 5)))
