"""Sequential tuning: one callback per trial, and a time budget that stops starting trials."""

import time

import pytest

from musicrec.preprocess.split import user_holdout
from musicrec.train.tune import tune
from tests.models.models_synthetic import synthetic_events


@pytest.fixture(scope="module")
def split():
    return user_holdout(synthetic_events(), test_frac=0.2, valid_frac=0.2, seed=0, min_items=3)


def test_on_trial_is_called_once_per_trial_in_order(split):
    seen = []
    result = tune("itemknn", split, n_trials=4, seed=0,
                  on_trial=lambda entry, done, n, best: seen.append((done, n, entry["state"], best)))
    assert [s[0] for s in seen] == [1, 2, 3, 4] and all(s[1] == 4 for s in seen)
    assert all(s[2] == "complete" for s in seen)
    values = [t["value"] for t in result.trials]
    # "best so far" is the running maximum of the completed values
    assert [s[3] for s in seen] == [max(values[:i + 1]) for i in range(4)]


def test_budget_stops_starting_trials(split, monkeypatch):
    import musicrec.train.tune as tune_mod

    real = tune_mod.fit_and_score

    def slow(*args, **kwargs):      # each trial takes at least 0.3 s
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_mod, "fit_and_score", slow)
    start = time.perf_counter()
    result = tune("itemknn", split, n_trials=50, seed=0, timeout_s=0.5)
    # trials start at ~0 s and ~0.3 s; none starts after 0.5 s, so 2 (3 at most on a stalled machine)
    assert 1 < len(result.trials) <= 3
    assert time.perf_counter() - start < 0.5 + 2 * 0.3 + 5


@pytest.mark.parametrize("ks, metric", [((0, 10), None), ((10,), "ndcg@-1"), ((10,), "ndcg@0")])
def test_bad_cutoffs_fail_before_any_trial(split, ks, metric):
    from musicrec import MusicrecError
    from musicrec.pipeline import compare

    calls = []
    with pytest.raises(MusicrecError, match="k must be"):
        tune("itemknn", split, n_trials=2, ks=ks, metric=metric, on_trial=lambda *a: calls.append(a))
    assert calls == []
    if metric is None:
        with pytest.raises(MusicrecError, match="k must be"):
            compare(split, ("most-popular",), ks=ks)
