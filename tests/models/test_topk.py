"""models.base.topk: the best k per row, ties towards the lower index, also at the k-th place."""

import numpy as np
import pytest

from musicrec.models.base import topk


def reference(scores: np.ndarray, k: int):
    """Full stable sort by score descending (index ascending among equals)."""
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def test_tie_at_the_kth_place_goes_to_the_lower_index():
    scores = np.array([[1.0, 3.0, 2.0, 2.0, 2.0, 0.5]], dtype=np.float32)
    idx, vals = topk(scores, 3)
    assert idx.tolist() == [[1, 2, 3]]
    assert vals.tolist() == [[3.0, 2.0, 2.0]]


@pytest.mark.parametrize("seed", range(5))
def test_many_ties_and_excluded_items_match_a_full_stable_sort(seed):
    rng = np.random.default_rng(seed)
    # few distinct values (popularity counts): ties everywhere, some items excluded (-inf)
    scores = rng.integers(0, 6, size=(7, 300)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    for k in (1, 10, 70, 300):
        want_idx, want_vals = reference(scores, k)
        # 7 rows take the numpy path; stacked to 70 rows, torch.topk's (when torch is loaded)
        for block, reps in ((scores, 1), (np.tile(scores, (10, 1)), 10)):
            idx, vals = topk(block, k)
            np.testing.assert_array_equal(idx, np.tile(want_idx, (reps, 1)))
            np.testing.assert_array_equal(vals, np.tile(want_vals, (reps, 1)))


@pytest.mark.parametrize("seed", range(3))
def test_nan_never_ranks_above_a_number_in_a_few_rows(seed):
    """A served request's few rows (numpy's path; torch.topk, for big blocks, puts NaN first)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(5, 200)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = np.nan
    for k in (1, 10, 100):
        np.testing.assert_array_equal(topk(scores, k)[0], reference(scores, k)[0])
