"""Similar items (the API's, the page's and `musicrec similar`) say why each item is similar:
listeners in common, counted on the model's training rows, and tags both items carry."""

from __future__ import annotations

import re

import numpy as np

from musicrec.bundle import ModelBundle
from musicrec.serve.service import Service


def test_similar_items_come_with_listeners_in_common_and_shared_tags(ease_dir):
    svc = Service.load(ease_dir, one_off=True)
    item, cards = svc.similar("the beatles", k=5)
    assert item["name"] == "The Beatles" and len(cards) == 5
    m = svc.train.matrix.tocsc()
    i = svc.resolve_item("the beatles")
    for card in cards:
        j = svc.resolve_item(card["item_id"])
        both = len(np.intersect1d(m[:, i].nonzero()[0], m[:, j].nonzero()[0]))
        found = re.match(r"([\d,]+) listeners? in common", card["reason"])
        assert found and int(found.group(1).replace(",", "")) == both > 0, card["reason"]
    # HetRec's listeners tag the Beatles' neighbours much as the Beatles
    assert any("both tagged " in card["reason"] for card in cards)


def test_without_tags_or_common_listeners_the_reason_says_so(ease_dir):
    bundle = ModelBundle.load(ease_dir)
    bundle.item_tags = bundle.item_tags.head(0)
    i = bundle.names.find("the beatles")
    m = bundle.model.train_.matrix.tocsc()
    beatles = set(m[:, i].nonzero()[0])
    stranger = next(j for j in range(m.shape[1]) if j != i and not beatles & set(m[:, j].nonzero()[0]))
    assert bundle.similar_reasons(i, np.array([stranger])) == ["no listeners or tags in common"]
