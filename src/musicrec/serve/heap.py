"""The serving process and Python's cycle collector.

A loaded model is ~265k Python objects (names, tags, ids, the framework's); a full collection
walks them all: ~110 ms on a 2-core machine (measured for the HetRec and 30Music rankers and
HetRec EASE), a stall that every request arriving meanwhile waits out, which is what p99 latency
sees. ``musicrec serve`` freezes what is alive once the model is loaded (``gc.freeze``: the
collector no longer looks at those objects; they are still freed when no longer referenced), so a
full collection only walks what requests left behind.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect, then freeze every object alive now."""
    gc.collect()
    gc.freeze()


def resettle() -> None:
    """After a reload: everything back in the collector's sight (the previous model's cycles are
    collected, once, ~0.1 s), then the new model frozen."""
    gc.unfreeze()
    settle()


def release() -> None:
    """Everything back in the collector's sight (the server is stopping)."""
    gc.unfreeze()
