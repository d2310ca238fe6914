import os

import pytest

SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture(scope="session")
def shared_data() -> str:
    """Path of ../shared/data (real public datasets); tests needing it skip when absent."""
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/data not present")
    return SHARED
