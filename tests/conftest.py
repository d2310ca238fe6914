import os

import pytest

try:  # tiny test models train faster on one thread, and 2-core CI machines are easily oversubscribed
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture(scope="session")
def shared_data() -> str:
    """Path of ../shared/data (real public datasets); tests needing it skip when absent."""
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/data not present")
    return SHARED


@pytest.hookimpl(tryfirst=True)    # before `-m` deselects by these marks
def pytest_collection_modifyitems(items):
    """Lanes: every test that reads ../shared/data (the ``shared_data`` fixture, also through
    another fixture) is ``integration``; ``slow`` is set by hand on tests that start processes,
    Ray, a browser or build ANN indexes, and on the deep models' contract cases; a test that asks for a
    real-data fixture by name at run time (``request.getfixturevalue``) is marked ``integration`` by
    hand. ``pytest -m "not integration and not slow"`` is the fast lane."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
