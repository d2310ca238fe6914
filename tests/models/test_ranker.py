"""The two-stage ranker: how it carves its learning data, what it learns, and its errors."""

import json
import os

import numpy as np
import pytest
from models_synthetic import GROUP_A, GROUP_B, N_ITEMS, N_USERS, next_in_group, tiny_interactions

from musicrec import MusicrecError
from musicrec.features.interactions import Histories
from musicrec.models.ranker import _carve_sessions, _carve_users
from musicrec.models.registry import create, load_model

SMALL = {"n_candidates": 20, "n_trees": 50, "min_child_samples": 5}


def test_carved_sessions_are_the_latest_and_leave_the_rest(synthetic):
    rest, queries, answers = _carve_sessions(synthetic, 0.1, 10_000, seed=0)
    n_carved = round(0.1 * synthetic.n_sessions)
    latest = np.argsort(synthetic.session_time)[-n_carved:]
    lengths = np.diff(synthetic.session_indptr)
    # every prefix of every carved session is a query whose answer is the next item
    assert len(queries) == len(answers) == int((lengths[latest] - 1).sum())
    for seq, answer in zip(queries.sequences, answers):
        assert answer.tolist() == [next_in_group(int(seq[-1]))] or seq[-1] >= 40 or len(seq) == 1
    assert rest.n_sessions == synthetic.n_sessions - n_carved
    assert rest.matrix.sum() == synthetic.session_items.size - lengths[latest].sum()
    assert rest.n_items == synthetic.n_items and (rest.items.ids == synthetic.items.ids).all()
    # a cap on queries samples them
    assert len(_carve_sessions(synthetic, 0.1, 30, seed=0)[1]) == 30


def test_carved_items_leave_the_listeners_history(synthetic):
    rest, queries, answers = _carve_users(synthetic, 0.3, 10_000, seed=0)
    assert rest.n_users == synthetic.n_users and len(queries) == len(answers) == N_USERS
    dense, kept = synthetic.matrix.toarray(), rest.matrix.toarray()
    for u, items in zip(queries.users, answers):
        assert len(items) == int(np.floor(0.3 * (dense[u] > 0).sum()))
        assert (kept[u, items] == 0).all() and (dense[u, items] > 0).all()
        assert (queries.matrix[list(queries.users).index(u)].toarray()[0, items] == 0).all()
    assert kept.sum() + sum(dense[u, a].sum() for u, a in zip(queries.users, answers)) == pytest.approx(dense.sum())


def test_folds_carve_disjoint_items(synthetic):
    first = _carve_users(synthetic, 0.2, 10_000, seed=0, fold=0)
    second = _carve_users(synthetic, 0.2, 10_000, seed=0, fold=1)
    assert first[1].users.tolist() == second[1].users.tolist()
    for a, b in zip(first[2], second[2]):
        assert len(a) == len(b) >= 1 and not set(a) & set(b)


def test_listeners_with_few_items_are_not_carved():
    train = tiny_interactions([[0, 1, 2], [3, 4, 5, 6, 7, 8]], users=[0, 1])
    rest, queries, answers = _carve_users(train, 0.2, 100, seed=0)
    assert queries.users.tolist() == [1] and len(answers[0]) == 1
    assert rest.matrix[0].nnz == 3


def test_user_task_learns_the_listeners_taste(synthetic):
    model = create("ranker", task="user", holdout=0.3, folds=2, candidates="itemknn,most-popular",
                   **SMALL).fit(synthetic)
    assert model.task_ == "user"
    users = np.arange(N_USERS)
    idx, _ = model.recommend_users(users, k=5)
    in_a, in_b = np.isin(idx, GROUP_A), np.isin(idx, GROUP_B)
    own = np.where((users < N_USERS // 2)[:, None], in_a, in_b)
    assert own.sum() / (in_a | in_b).sum() >= 0.9     # popular items count for neither group


def test_session_task_follows_the_transitions(synthetic):
    """Candidates: popularity (blind to the session) and SR (knows i -> i+1): the ranker learns to
    put SR's pick first, which popularity alone never does."""
    model = create("ranker", candidates="most-popular,sr", holdout=0.3,
                   **{**SMALL, "min_child_samples": 20}).fit(synthetic)
    assert model.task_ == "session"
    last = np.arange(40)
    top, _ = model.recommend(Histories.from_sequences([[i] for i in last], N_ITEMS), k=1, exclude_seen=False)
    assert np.mean(top[:, 0] == [next_in_group(i) for i in last]) >= 0.95
    popular, _ = create("most-popular").fit(synthetic).recommend(
        Histories.from_sequences([[i] for i in last], N_ITEMS), k=1, exclude_seen=False)
    assert np.mean(popular[:, 0] == [next_in_group(i) for i in last]) == 0
    importance = model.feature_importance()
    assert sum(v for k, v in importance.items() if k.startswith("sr:")) > 0.5


def test_a_deep_candidate_is_fitted_saved_and_scored(synthetic, tmp_path):
    params = json.dumps({"sasrec": {"epochs": 2, "embedding_dim": 16, "n_layers": 1, "max_len": 8}})
    model = create("ranker", candidates="sr,sasrec", candidate_params=params, holdout=0.3, **SMALL).fit(synthetic)
    deep = model.models_[model.names_.index("sasrec")]
    assert deep.best_epoch_ == 2 and deep.embedding_dim == 16     # its own settings, refitted on all data
    assert "sasrec:rank" in model.feature_importance()
    model.save(str(tmp_path / "r"))
    again = load_model(str(tmp_path / "r"))
    h = Histories.from_sequences([[3, 4], [40, 25]], N_ITEMS)
    np.testing.assert_allclose(again.score(h), model.score(h), rtol=1e-5)


def test_saved_as_text_and_arrays(synthetic, tmp_path):
    model = create("ranker", candidates="sr,most-popular", **SMALL).fit(synthetic)
    model.save(str(tmp_path / "r"))
    files = {os.path.relpath(os.path.join(d, f), tmp_path / "r") for d, _, fs in os.walk(tmp_path / "r") for f in fs}
    assert {"ranker.txt", "ranker.json", "config.json", "state.npz", "candidates/sr/config.json"} <= files
    assert (tmp_path / "r" / "ranker.txt").read_text().startswith("tree")
    again = load_model(str(tmp_path / "r"))
    h = Histories.from_sequences([[3, 4], [40, 25]], N_ITEMS)
    np.testing.assert_allclose(again.score(h), model.score(h), rtol=1e-6)


@pytest.mark.parametrize("params, message", [
    ({"candidates": "sr,no-such-model"}, "registered models"),
    ({"candidates": "sr,ranker"}, "registered models"),
    ({"candidates": "sr,sr"}, "distinct"),
    ({"candidate_params": "{not json"}, "JSON object"),
    ({"candidate_params": '{"sr": 3}'}, "parameter objects"),
    ({"holdout": 0.9}, "holdout"),
    ({"task": "user", "holdout": 0.3, "folds": 3}, "folds x holdout"),
])
def test_bad_parameters_are_one_line_errors(synthetic, params, message):
    with pytest.raises(MusicrecError, match=message):
        create("ranker", **params).fit(synthetic)


def test_nothing_to_learn_from_is_an_error():
    train = tiny_interactions([[0, 1], [2, 3]], users=[0, 1])
    with pytest.raises(MusicrecError, match="nothing to learn from"):
        create("ranker", task="user").fit(train)


def test_tags_rank_what_popularity_cannot(synthetic, tmp_path):
    """Popularity alone is blind to taste; with tag vectors (one tag per group) the ranker's
    tag-overlap feature puts each listener's own group first, and survives save / load."""
    tags = np.zeros((N_ITEMS, 3))
    tags[GROUP_A, 0], tags[GROUP_B, 1], tags[40:, 2] = 1.0, 1.0, 1.0
    params = dict(task="user", holdout=0.3, folds=2, candidates="most-popular", **{**SMALL, "n_candidates": N_ITEMS})
    users = np.arange(N_USERS)

    def own_share(model):
        idx, _ = model.recommend_users(users, k=5)
        in_a, in_b = np.isin(idx, GROUP_A), np.isin(idx, GROUP_B)
        return np.where((users < N_USERS // 2)[:, None], in_a, in_b).sum() / max((in_a | in_b).sum(), 1)

    with_tags = create("ranker", **params).fit(synthetic, content=tags)
    assert own_share(with_tags) >= 0.9
    assert own_share(create("ranker", **params).fit(synthetic)) < 0.7
    assert with_tags.feature_importance()["tag_overlap_with_history"] > 0.3
    with_tags.save(str(tmp_path / "r"))
    again = load_model(str(tmp_path / "r"))
    h = Histories.from_sequences([[3, 4], [25]], N_ITEMS)
    np.testing.assert_allclose(again.score(h), with_tags.score(h), rtol=1e-6)


def test_sources_name_the_strongest_evidence(synthetic):
    model = create("ranker", candidates="most-popular,sr", holdout=0.3,
                   **{**SMALL, "min_child_samples": 20}).fit(synthetic)
    h = Histories.from_sequences([[3, 4, 3]], N_ITEMS)
    assert model.sources(h, np.array([3, 4, 5, 40])) == [("repeat", 2), ("repeat", 1), ("follows", 0), ("popular", 0)]


@pytest.mark.parametrize("task,candidates", [("session", "sr,sknn,recently-played"), ("user", "itemknn,most-popular")])
def test_one_history_at_a_time_scores_as_the_batch(synthetic, task, candidates):
    """A served request scores one history (candidate models' rows in one top-k, kept for its
    reasons); the answers equal the batch's, and a kept result never leaks into another history."""
    model = create("ranker", task=task, candidates=candidates, holdout=0.3, folds=1, **SMALL).fit(synthetic)
    seqs = [[3, 4, 3], [40, 25], [7], [12, 13, 14, 15]]
    batch = model.score(Histories.from_sequences(seqs, N_ITEMS))
    for r, seq in enumerate(seqs):
        one = Histories.from_sequences([seq], N_ITEMS)
        np.testing.assert_array_equal(model.score(one), batch[r:r + 1])
        items = np.argsort(-batch[r])[:6]
        # sources right after score (the kept scores) and for a new object (scored afresh) agree
        assert model.sources(one, items) == model.sources(Histories.from_sequences([seq], N_ITEMS), items)
        # every item, kept tops or not (most are outside every model's top n_candidates)
        model.score(one)
        everything = np.arange(N_ITEMS)
        assert model.sources(one, everything) == model.sources(Histories.from_sequences([seq], N_ITEMS), everything)
    first = Histories.from_sequences([seqs[0]], N_ITEMS)
    model.score(Histories.from_sequences([seqs[1]], N_ITEMS))
    assert model.sources(first, np.array([3, 4, 41])) == model.sources(Histories.from_sequences([seqs[0]], N_ITEMS),
                                                                       np.array([3, 4, 41]))
    assert model.sources(first, np.array([3, 4]))[:2] == [("repeat", 2), ("repeat", 1)]


def test_item_similarity_of_some_columns_is_the_slice_of_whole_rows(synthetic):
    model = create("ranker", task="user", candidates="ease,most-popular", holdout=0.3, folds=1, **SMALL).fit(synthetic)
    items, columns = np.array([3, 40, 7]), np.array([0, 5, 41, 3])
    np.testing.assert_allclose(model.item_similarity(items, columns=columns),
                               np.asarray(model.item_similarity(items))[:, columns], rtol=1e-5, atol=1e-6)


def test_its_trees_walked_as_arrays_score_as_lightgbm(synthetic):
    """Scores go through FlatForest where it covers the booster: the very numbers LightGBM gives."""
    model = create("ranker", candidates="sr,sknn,recently-played", holdout=0.3, folds=1, **SMALL).fit(synthetic)
    h = Histories.from_sequences([[3, 4, 3], [40, 25], [7], [12, 13, 14, 15]], N_ITEMS)
    walked = model.score(h)
    assert model._forest[1] is not None
    model._forest = (model.booster_, None)          # what a model the walk does not cover uses
    np.testing.assert_array_equal(model.score(h), walked)
