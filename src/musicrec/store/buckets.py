"""Plays buckets: a listener's plays all live in bucket ``user_bucket(user_id, n)``."""

from __future__ import annotations

import numpy as np
import polars as pl


def user_bucket(user_ids, n_buckets: int) -> np.ndarray:
    """Bucket of each user id: the splitmix64 finaliser of the id, mod ``n_buckets``.

    A fixed function of the id alone (no per-process hash seed), so every process, machine and
    version puts a listener in the same bucket. Null ids go to bucket ``user_bucket(0)``.

    Parameters
    ----------
    user_ids : array-like of int, shape (n,)
    n_buckets : int

    Returns
    -------
    ndarray of int64, shape (n,), values in ``[0, n_buckets)``
    """
    s = pl.Series(user_ids, dtype=pl.Int64) if not isinstance(user_ids, pl.Series) else user_ids.cast(pl.Int64)
    x = s.fill_null(0).to_numpy().astype(np.uint64)   # two's complement for negative ids
    with np.errstate(over="ignore"):                   # the multiplications wrap mod 2**64 on purpose
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_buckets)).astype(np.int64)


def by_bucket(plays: pl.DataFrame, n_buckets: int) -> dict[int, pl.DataFrame]:
    """``plays`` split by :func:`user_bucket` (bucket -> its rows, in their order); empty
    buckets are left out."""
    tagged = plays.with_columns(_b=pl.Series(user_bucket(plays["user_id"], n_buckets)))
    parts = tagged.partition_by("_b", as_dict=True, maintain_order=True)
    return {key[0]: part.drop("_b") for key, part in parts.items()}
