import numpy as np
from models_synthetic import tiny_interactions

from musicrec.features.interactions import Histories
from musicrec.models.recently_played import RecentlyPlayed


def test_decay_by_hand():
    # popularity: item 0 has 3 users, item 4 has 2, items 1..3 one each
    train = tiny_interactions([[0, 1], [0, 4], [0, 4, 2, 3]])
    model = RecentlyPlayed(decay=0.5).fit(train)
    scores = model.score(Histories.from_sequences([[1, 2, 1, 3]], 5))[0]
    # steps from the end: 3 -> 0, 1 -> 1 and 3, 2 -> 2
    np.testing.assert_allclose(scores[[1, 2, 3]], [0.5 + 0.125, 0.25, 1.0])
    # unplayed items rank below, by popularity: 0 (3 users) before 4 (2 users)
    assert scores[4] < scores[0] < 0


def test_recommends_played_items_when_seen_are_kept():
    model = RecentlyPlayed(decay=1.0).fit(tiny_interactions([[0, 1], [2, 3]]))
    idx, _ = model.recommend(Histories.from_sequences([[3, 1, 1]], 4), k=2, exclude_seen=False)
    np.testing.assert_array_equal(idx[0], [1, 3])
