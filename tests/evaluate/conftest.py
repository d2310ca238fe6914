"""Tiny hand-built splits for the evaluation tests."""

import polars as pl
import pytest
from eval_helpers import events

from musicrec.preprocess.splitset import Split


@pytest.fixture
def user_split():
    """4 training users x 6 items (ids 100..105); test has an unknown user (40), an unknown
    item (999), a test item already in training (u10: 100; u50: 100)."""
    train = events([(10, 100, 0, None), (10, 101, 1, None), (20, 102, 0, None),
                    (30, 100, 0, None), (30, 103, 1, None), (30, 104, 2, None), (30, 105, 3, None),
                    (50, 100, 0, None)])
    test = events([(10, 102, 10, None), (10, 104, 11, None), (10, 999, 12, None), (10, 100, 13, None),
                   (20, 101, 10, None), (30, 101, 10, None), (30, 102, 11, None), (40, 100, 10, None),
                   (50, 100, 10, None)])
    tags = pl.DataFrame({"item_id": [100, 101, 102, 999], "tag": ["rock", "rock", "pop", "jazz"],
                         "weight": [1.0, 2.0, 1.0, 1.0]})
    return Split(train=train, test=test, item_tags=tags, meta={"evaluation": "user"})


@pytest.fixture
def session_split():
    """Training: items 100, 101, 102. Test sessions: 7 = [101, 101, 102] (rows shuffled),
    8 = [100, 999 (unknown), 102, 101], 9 = [102] (too short)."""
    train = events([(1, 100, 0, 0), (1, 101, 1, 0), (1, 102, 2, 0)])
    test = events([(1, 102, 12, 7), (1, 101, 10, 7), (1, 101, 11, 7),
                   (2, 100, 20, 8), (2, 999, 21, 8), (2, 102, 22, 8), (2, 101, 23, 8),
                   (3, 102, 30, 9)])
    return Split(train=train, test=test, meta={"evaluation": "session"})
