import numpy as np
import pytest

from musicrec.names import NameIndex, normalise


def test_normalise_folds_case_accents_punctuation_and_leading_the():
    assert normalise("The Beatles") == "beatles"
    assert normalise("Björk") == "bjork"
    assert normalise("  Guns N' Roses ") == "guns n roses"
    assert normalise("Simon & Garfunkel") == "simon and garfunkel"


def test_find_is_forgiving_and_prefers_popular_duplicates():
    names = ["The Beatles", "Björk", "Beatles", "Radiohead", "Sigur Rós"]
    idx = NameIndex(names, ["1", "2", "3", "4", "5"], popularity=np.array([10, 5, 1, 7, 3]))
    assert idx.find("beatles") == 0          # same normalised name: the more popular one
    assert idx.find("bjork") == 1
    assert idx.find("radiohed") == 3         # typo
    assert idx.find("sigur ros") == 4
    assert idx.find("4") == 3                # original id
    assert idx.find("Metallica") is None
    assert "Radiohead" in idx.suggest("radio")


@pytest.mark.slow      # difflib over a large catalogue is the slow reference
def test_fuzzy_matches_are_difflibs_on_a_large_catalogue():
    """The pre-filtered matcher answers exactly as difflib.get_close_matches over every key."""
    import difflib
    import random
    import string

    from musicrec.names import CloseMatcher

    rng = random.Random(7)
    keys = sorted({"".join(rng.choice(string.ascii_lowercase + " 0123456789") for _ in range(rng.randint(1, 30)))
                   for _ in range(3000)})
    matcher = CloseMatcher(keys)
    words = ["", "a", "zz", "q" * 60]
    for _ in range(150):
        w = list(rng.choice(keys))
        for _ in range(rng.randint(0, 3)):
            w[rng.randrange(len(w))] = rng.choice(string.ascii_lowercase)
        words.append("".join(w))
    for w in words:
        for n, cutoff in ((5, 0.8), (3, 0.5), (1, 0.95)):
            assert matcher.close(w, n, cutoff) == difflib.get_close_matches(w, keys, n=n, cutoff=cutoff), (w, cutoff)


def test_suggest_lists_prefix_matches_first():
    idx = NameIndex(["Radiohead", "Radio Moscow", "Muse"], ["1", "2", "3"], popularity=np.array([5, 9, 1]))
    assert idx.suggest("radio")[:2] == ["Radio Moscow", "Radiohead"]
    assert idx.suggest("") == []
