import numpy as np

from musicrec.serve.names import NameIndex, normalise


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
