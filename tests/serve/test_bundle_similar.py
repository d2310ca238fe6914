"""``ModelBundle.similar`` (and so `musicrec similar`) says why each item is similar: listeners in
common, counted on the model's training rows, and tags both items carry."""

from __future__ import annotations

import re

import numpy as np

from musicrec.bundle import ModelBundle


def test_similar_items_come_with_listeners_in_common_and_shared_tags(ease_dir):
    bundle = ModelBundle.load(ease_dir)
    matched, recs = bundle.similar("the beatles", k=5)
    assert matched == "The Beatles" and len(recs) == 5
    m = bundle.model.train_.matrix.tocsc()
    i = bundle.item_index("the beatles")
    for rec in recs:
        j = bundle.item_index(rec.name)
        both = len(np.intersect1d(m[:, i].nonzero()[0], m[:, j].nonzero()[0]))
        found = re.match(r"([\d,]+) listeners? in common", rec.reason)
        assert found and int(found.group(1).replace(",", "")) == both > 0, rec.reason
    # HetRec's listeners tag the Beatles' neighbours much as the Beatles
    assert any("both tagged " in rec.reason for rec in recs)


def test_without_tags_or_common_listeners_the_reason_says_so(ease_dir):
    bundle = ModelBundle.load(ease_dir)
    bundle.item_tags = bundle.item_tags.head(0)
    i = bundle.item_index("the beatles")
    m = bundle.model.train_.matrix.tocsc()
    beatles = set(m[:, i].nonzero()[0])
    stranger = next(j for j in range(m.shape[1]) if j != i and not beatles & set(m[:, j].nonzero()[0]))
    assert bundle._similar_reasons(i, np.array([stranger])) == ["no listeners or tags in common"]
