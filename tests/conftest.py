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
