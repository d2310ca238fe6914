"""Reasons and diversity computed from the restricted similarity block equal those from whole rows."""

from __future__ import annotations

from musicrec.models.base import Recommender
from musicrec.serve.service import Service


def test_base_signature_accepts_columns():
    import inspect

    assert "columns" in inspect.signature(Recommender.item_similarity).parameters


def test_reasons_equal_those_from_the_full_matrix(ease_dir):
    fast = Service.load(ease_dir)
    full = Service.load(ease_dir)
    full._similarity_takes_columns = False        # whole rows, then sliced: the old path
    assert fast._similarity_takes_columns
    for n in (0, 3, 17, 101):
        user = fast.bundle.users["source_id"][n]
        assert fast.recommend_user(user, k=10) == full.recommend_user(user, k=10)
        assert fast.recommend_user(user, k=10, diversity=0.5) == full.recommend_user(user, k=10, diversity=0.5)
