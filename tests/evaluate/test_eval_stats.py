import math

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.evaluate import EvalResult, paired_test


def result(name, users, values, metric="ndcg@10"):
    per_user = pl.DataFrame({"user_id": users, metric: values})
    return EvalResult(model=name, metrics={metric: float(np.mean(values))}, per_user=per_user,
                      info={"protocol": "user", "id_columns": ["user_id"]})


def test_clearly_better_model_has_small_p():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, size=60)
    a = result("good", np.arange(60), base + 0.2 + rng.normal(0, 0.02, 60))
    b = result("bad", np.arange(60), base)
    t = paired_test(a, b)
    assert t["n"] == 60 and t["diff"] == pytest.approx(0.2, abs=0.01)
    assert t["p_value"] < 1e-10 and t["p_wilcoxon"] < 1e-6
    assert t["mean_a"] > t["mean_b"] and "ttest_rel" in t["test"]


def test_identical_results_give_p_one():
    a = result("a", [1, 2, 3], [0.1, 0.5, 0.0])
    t = paired_test(a, result("b", [1, 2, 3], [0.1, 0.5, 0.0]))
    assert t["p_value"] == 1.0 and t["p_wilcoxon"] == 1.0 and t["diff"] == 0.0


def test_rows_are_aligned_on_ids_not_position():
    # same values per user, listed in a different order, with one user only in b
    a = result("a", [1, 2, 3], [0.1, 0.2, 0.3])
    b = result("b", [3, 9, 1, 2], [0.3, 0.9, 0.1, 0.2])
    t = paired_test(a, b)
    assert t["n"] == 3 and t["diff"] == 0.0 and t["p_value"] == 1.0


def test_too_few_rows_and_nan_rows():
    t = paired_test(result("a", [1, 2], [0.5, np.nan]), result("b", [1, 2], [0.1, 0.3]))
    assert t["n"] == 1 and math.isnan(t["p_value"])


def test_missing_metric_is_a_user_error():
    with pytest.raises(MusicrecError, match="ndcg@20"):
        paired_test(result("a", [1], [0.1]), result("b", [1], [0.1]), metric="ndcg@20")
