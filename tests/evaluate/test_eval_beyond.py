import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from musicrec.evaluate.beyond import (
    arp_at_k,
    coverage_at_k,
    diversity_at_k,
    item_popularity,
    novelty_at_k,
    tag_matrix,
    unit_rows,
)
from musicrec.features.vocab import IdMap

# 4 users x 3 items: item 0 played by all 4 users, item 1 by 2, item 2 by 1 (counts do not matter)
MATRIX = sp.csr_matrix(np.array([[5, 1, 0], [1, 0, 0], [1, 9, 0], [2, 0, 3]], dtype=np.float32))
RANKED = np.array([[0, 1], [2, -1]])


def test_item_popularity_counts_users_not_plays():
    np.testing.assert_array_equal(item_popularity(MATRIX), [4, 2, 1])


def test_novelty_and_arp_by_hand():
    pop = item_popularity(MATRIX)
    # [0, 1]: (-log2(4/4) + -log2(2/4)) / 2 = (0 + 1) / 2;  [2, pad]: -log2(1/4) = 2
    np.testing.assert_allclose(novelty_at_k(RANKED, pop, 4, 2), [0.5, 2.0])
    # k = 1 keeps only the first item: [0] -> 0, [2] -> 2
    np.testing.assert_allclose(novelty_at_k(RANKED, pop, 4, 1), [0.0, 2.0])
    # arp: [0, 1]: (4/4 + 2/4) / 2 = 0.75;  [2]: 1/4
    np.testing.assert_allclose(arp_at_k(RANKED, pop, 4, 2), [0.75, 0.25])
    # a list of padding only has no value
    assert math.isnan(arp_at_k(np.array([[-1, -1]]), pop, 4, 2)[0])


def test_coverage_by_hand():
    # k = 1 shows items {0, 2} of 3; k = 2 shows {0, 1, 2}
    assert coverage_at_k(RANKED, 3, 1) == pytest.approx(2 / 3)
    assert coverage_at_k(RANKED, 3, 2) == pytest.approx(1.0)
    assert coverage_at_k(RANKED, 6, 2) == pytest.approx(0.5)


def test_tag_matrix_and_diversity_by_hand():
    items = IdMap.fit([10, 11, 12, 13])
    tags = pl.DataFrame({"item_id": [10, 11, 11, 12, 99, 11],
                         "tag": ["rock", "rock", "pop", "jazz", "rock", "pop"],
                         "weight": [1.0, 1.0, 0.5, 3.0, 1.0, 0.5]})
    m = tag_matrix(tags, items)
    assert m.shape == (4, 3)  # 99 is not a catalogue item; 13 has no tags -> zero row
    assert m[3].nnz == 0
    # item 11: rock 1 + pop (0.5 + 0.5 summed) -> (1, 1) / sqrt(2)
    dense = m.toarray()
    cols = {t: j for j, t in enumerate(["jazz", "pop", "rock"])}
    assert dense[1, cols["rock"]] == pytest.approx(1 / math.sqrt(2))
    assert dense[1, cols["pop"]] == pytest.approx(1 / math.sqrt(2))
    # list [10, 11, 12, 13]: cos(10,11) = 0.7071, cos(10,12) = cos(11,12) = 0; item 13 ignored
    # distances 0.2929, 1, 1 -> mean 0.76430
    div = diversity_at_k(np.array([[0, 1, 2, 3], [0, 3, -1, -1], [0, 0, -1, -1]]), m, 4)
    assert div[0] == pytest.approx((1 - 1 / math.sqrt(2) + 2) / 3)
    assert math.isnan(div[1])  # one tagged item only
    # k = 2 cuts the first list to [10, 11]: distance 1 - 0.7071
    assert diversity_at_k(np.array([[0, 1, 2, 3]]), m, 2)[0] == pytest.approx(1 - 1 / math.sqrt(2))
    assert tag_matrix(tags.filter(pl.col("item_id") == 99), items) is None


def test_diversity_matches_brute_force_pairs():
    rng = np.random.default_rng(0)
    feats = rng.random((30, 7)) * (rng.random((30, 7)) > 0.5)
    vectors = unit_rows(feats)
    ranked = np.stack([rng.permutation(30)[:6] for _ in range(20)])
    got = diversity_at_k(ranked, vectors, 6)
    dense = vectors.toarray()
    for row, value in zip(ranked, got):
        kept = [i for i in row if np.linalg.norm(dense[i]) > 0]
        dists = [1 - dense[a] @ dense[b] for j, a in enumerate(kept) for b in kept[j + 1:]]
        if len(kept) < 2:
            assert math.isnan(value)
        else:
            assert value == pytest.approx(np.mean(dists))
