from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from musicrec.features.interactions import Histories, Interactions, csr_row_product
from musicrec.features.vocab import IdMap

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def events():
    rows = [  # user, item, weight, seconds, session
        (7, 30, 1.0, 30, 2), (7, 10, 2.0, 10, 1), (7, 20, 1.0, 20, 1), (9, 10, 1.0, 5, 3), (7, 30, 1.0, 40, 2),
    ]
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "weight": [r[2] for r in rows],
         "timestamp": [T0 + timedelta(seconds=r[3]) for r in rows], "session_id": [r[4] for r in rows]},
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")})


def test_idmap_roundtrip_and_missing():
    m = IdMap.fit([30, 10, 20, 10])
    np.testing.assert_array_equal(m.ids, [10, 20, 30])
    np.testing.assert_array_equal(m.index([20, 99, 10]), [1, -1, 0])
    assert 30 in m and 31 not in m


def test_matrix_sequences_and_sessions(tmp_path):
    x = Interactions.from_frame(events())
    np.testing.assert_array_equal(x.users.ids, [7, 9])
    np.testing.assert_array_equal(x.items.ids, [10, 20, 30])
    np.testing.assert_array_equal(x.matrix.toarray(), [[2, 1, 2], [1, 0, 0]])   # counts summed
    np.testing.assert_array_equal(x.user_sequences[0], [0, 1, 2, 2])             # time order, repeats kept
    assert x.n_sessions == 3
    np.testing.assert_array_equal(x.session(0), [0, 1])
    np.testing.assert_array_equal(x.session(1), [2, 2])
    assert x.session_time[1] == (T0 + timedelta(seconds=40)).timestamp()
    x.save(str(tmp_path))
    y = Interactions.load(str(tmp_path))
    np.testing.assert_array_equal(y.matrix.toarray(), x.matrix.toarray())
    np.testing.assert_array_equal(y.session_items, x.session_items)


def test_from_frame_with_fixed_items_drops_unknown():
    x = Interactions.from_frame(events(), items=IdMap(np.array([10, 20])))
    assert x.matrix.shape == (2, 2) and x.matrix.sum() == 4


def test_histories_from_sequences_counts_repeats():
    h = Histories.from_sequences([[2, 0, 2], [1]], n_items=3)
    np.testing.assert_array_equal(h.matrix.toarray(), [[1, 0, 2], [0, 1, 0]])
    np.testing.assert_array_equal(h.users, [-1, -1])


@pytest.mark.parametrize("row_dtype,matrix_dtype", [(np.float32, np.float32), (np.float32, np.float64),
                                                     (np.float64, np.float32)])
def test_one_row_product_gives_scipys_numbers(row_dtype, matrix_dtype):
    rng = np.random.default_rng(0)
    matrix = sp.random(60, 80, density=0.3, format="csr", random_state=1, dtype=matrix_dtype)
    matrix.data = (matrix.data * 7.3).astype(matrix_dtype)
    for n in (0, 1, 5, 40):
        cols = rng.choice(60, size=n, replace=False)      # stored order need not be sorted
        vals = rng.random(n).astype(row_dtype) / 3
        row = sp.csr_matrix((vals, cols, np.array([0, n])), shape=(1, 60))
        want = (row @ matrix).toarray()[0]
        got = csr_row_product(cols, vals, matrix)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
