"""Where per-partition work runs: in this process (``local``) or as Ray tasks (``ray``).

The pipeline's scalable stages (merging plays into the store, cleaning and sessionising plays
before a split, tuning trials) are written as plain functions over one partition (one bucket of
users, one trial). An engine maps such a function over the partitions and returns the results
in input order, so the same code runs on one machine or on a Ray cluster and gives the same
output. Functions handed to :class:`RayEngine` must be importable module-level functions (Ray
ships them to workers by reference) and their arguments and results must be serialisable.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, Sequence

from musicrec import MusicrecError

ENGINES = ("local", "ray")


class _Closing:
    """``with engine:`` closes it on exit."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEngine(_Closing):
    """Runs every call in this process, one after the other."""

    name = "local"

    def map(self, fn: Callable, items: Sequence, **kwargs) -> list:
        """``[fn(item, **kwargs) for item in items]``."""
        return [fn(item, **kwargs) for item in items]

    def close(self) -> None:
        pass


class RayEngine(_Closing):
    """Runs each call as a Ray task.

    Parameters
    ----------
    address : str or None
        A running cluster (``"auto"``, ``"ray://head:10001"``); None starts a local Ray
        instance in this process (or joins ``$RAY_ADDRESS`` when set).
    num_cpus : int or None
        CPUs of a local instance (default: all); ignored when joining a cluster.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise MusicrecError("--engine ray needs Ray: pip install 'ray[data,train,tune]'") from None
        self._ray = ray
        self._owned = False
        self._remote = None
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            ray.init(address=address, **kwargs)
            self._owned = True

    def map(self, fn: Callable, items: Sequence, **kwargs) -> list:
        """``fn(item, **kwargs)`` for every item as Ray tasks; results in input order."""
        if self._remote is None:
            self._remote = self._ray.remote(_call)
        shared = self._ray.put(kwargs)  # stored once in the object store, not once per task
        return self._ray.get([self._remote.remote(fn, item, shared) for item in items])

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
            self._owned = False


def _call(fn: Callable, item, kwargs: dict):
    return fn(item, **kwargs)


def make_engine(name: str = "local", **options):
    """An engine by name (``"local"`` or ``"ray"``); options go to its constructor."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        return RayEngine(**options)
    raise MusicrecError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")


@contextlib.contextmanager
def using(engine=None) -> Iterator:
    """``with using(engine) as e:`` — an engine object for None (local), a name (``"local"``,
    ``"ray"``; closed on exit) or an engine (used as it is, left open)."""
    if engine is None or isinstance(engine, str):
        with make_engine(engine or "local") as owned:
            yield owned
    else:
        yield engine
