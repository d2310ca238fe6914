"""Fixtures of the model tests; the data itself is built in ``models_synthetic``."""

import pytest
from models_synthetic import N_ITEMS, N_USERS, synthetic_events

from musicrec.features.interactions import Interactions


@pytest.fixture(scope="session")
def synthetic() -> Interactions:
    train = Interactions.from_frame(synthetic_events())
    assert train.n_users == N_USERS and train.n_items == N_ITEMS  # ids == indices
    return train
