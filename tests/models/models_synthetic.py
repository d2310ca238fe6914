"""Synthetic listening data with a known answer, shared by the model tests.

Two disjoint taste groups: users 0..49 play items 0..19 (group A), users 50..99 play
items 20..39 (group B); items 40..43 are popular with everyone. Every user has two
sessions, each a popular item followed by a run of consecutive group items, so within a
session item ``i`` is always followed by ``i + 1`` (19 by 0, 39 by 20). User and item ids equal their
indices (the vocabularies are the sorted ids 0..99 and 0..43).
"""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from musicrec import schema
from musicrec.features.interactions import Interactions

N_USERS, GROUP_ITEMS, N_POPULAR, RUN = 100, 20, 4, 5
GROUP_A = np.arange(0, GROUP_ITEMS)
GROUP_B = np.arange(GROUP_ITEMS, 2 * GROUP_ITEMS)
POPULAR = np.arange(2 * GROUP_ITEMS, 2 * GROUP_ITEMS + N_POPULAR)
N_ITEMS = 2 * GROUP_ITEMS + N_POPULAR


def user_sessions(u: int) -> list[list[int]]:
    """Sessions of user ``u`` in listening order.

    Each session is one popular item, then ``RUN`` consecutive items of the user's group
    from a random start, wrapping around (..., 18, 19, 0, 1 in group A).
    """
    rng = np.random.default_rng(u)
    base = 0 if u < N_USERS // 2 else GROUP_ITEMS
    sessions = []
    for k, start in enumerate(rng.integers(0, GROUP_ITEMS, size=2)):
        run = base + (start + np.arange(RUN)) % GROUP_ITEMS
        sessions.append([int(POPULAR[(u + k) % N_POPULAR])] + [int(i) for i in run])
    return sessions


def next_in_group(i: int) -> int:
    """The item that always follows ``i`` in a session."""
    base = i - i % GROUP_ITEMS
    return base + (i - base + 1) % GROUP_ITEMS


def synthetic_events() -> pl.DataFrame:
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    rows = []
    for u in range(N_USERS):
        for k, session in enumerate(user_sessions(u)):
            for pos, item in enumerate(session):
                # later users listen later, so sessions have distinct recency
                rows.append((u, item, 1.0 + (pos % 3), t0 + timedelta(hours=2 * u + k, minutes=pos), 2 * u + k))
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "weight", "timestamp", "session_id"], orient="row")
    return schema.conform(df, schema.SPLIT_EVENTS)


def tiny_interactions(sessions: list[list[int]], users: list[int] | None = None,
                      weights: list[list[float]] | None = None) -> Interactions:
    """Interactions of hand-written sessions (item ids 0..I-1, all used, so ids == indices).

    Session ``s`` belongs to user ``users[s]`` (default: its own user ``s``) and is more
    recent than every earlier session; ``weights`` are play counts (default 1).
    """
    t0 = datetime(2021, 1, 1, tzinfo=timezone.utc)
    users = list(range(len(sessions))) if users is None else users
    rows = []
    for s, items in enumerate(sessions):
        for pos, item in enumerate(items):
            w = 1.0 if weights is None else float(weights[s][pos])
            rows.append((users[s], item, w, t0 + timedelta(days=s, minutes=pos), s))
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "weight", "timestamp", "session_id"], orient="row")
    return Interactions.from_frame(schema.conform(df, schema.SPLIT_EVENTS))
