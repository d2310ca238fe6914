"""Forgiving name matching: "beatles" finds "The Beatles", "bjork" finds "Björk"."""

from __future__ import annotations

import difflib
import re
import unicodedata

import numpy as np

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise(name: str) -> str:
    """Lower-case, accents and punctuation removed, '&' read as 'and', a leading 'the' dropped."""
    text = unicodedata.normalize("NFKD", name or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold().replace("&", " and ")
    text = _NON_ALNUM.sub(" ", text).strip()
    if text.startswith("the "):
        text = text[4:]
    return text


class NameIndex:
    """Look up item indices by display name or original id.

    Parameters
    ----------
    names : sequence of str, length I
        Display name of each item index.
    source_ids : sequence of str, length I
        Original ids (e.g. "51", an MBID); matched exactly.
    popularity : ndarray, shape (I,)
        Breaks ties between items of the same name (the more popular wins).
    """

    def __init__(self, names, source_ids, popularity) -> None:
        self.names = list(names)
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self._by_id = {str(s): i for i, s in enumerate(source_ids) if s is not None}
        self._by_norm: dict[str, int] = {}
        for i, n in enumerate(self.names):
            key = normalise(n)
            if key and (key not in self._by_norm or self.popularity[i] > self.popularity[self._by_norm[key]]):
                self._by_norm[key] = i
        self._keys = list(self._by_norm)

    def find(self, query: str) -> int | None:
        """Best item index for ``query``, or None."""
        if query in self._by_id:
            return self._by_id[query]
        key = normalise(query)
        if not key:
            return None
        if key in self._by_norm:
            return self._by_norm[key]
        close = difflib.get_close_matches(key, self._keys, n=5, cutoff=0.8)
        if close:
            return max((self._by_norm[c] for c in close), key=lambda i: self.popularity[i])
        return None

    def suggest(self, query: str, n: int = 3) -> list[str]:
        key = normalise(query)
        starts = [k for k in self._keys if key and k.startswith(key)]
        close = difflib.get_close_matches(key, self._keys, n=n, cutoff=0.5)
        picks = sorted(set(starts), key=lambda k: -self.popularity[self._by_norm[k]])[:n] + close
        out: list[str] = []
        for k in picks:
            name = self.names[self._by_norm[k]]
            if name not in out:
                out.append(name)
        return out[:n]
