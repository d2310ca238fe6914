"""Forgiving name matching: "beatles" finds "The Beatles", "bjork" finds "Björk".

Fuzzy matching is ``difflib.get_close_matches`` over the normalised names, with the same answers,
but only the names that can reach the cut-off are compared: ``difflib``'s ``ratio`` is at most its
``quick_ratio`` (2 × shared characters, counted with multiplicity, over both lengths), and that bound
is computed for the whole catalogue at once from a table of character counts (numpy), within the
window of lengths that can reach the cut-off at all. A typo against 17,000 artists costs about a
millisecond instead of about 20 (``tests/serve/test_names.py`` checks the answers are difflib's).
"""

from __future__ import annotations

import bisect
import difflib
import heapq
import re
import threading
import unicodedata

import numpy as np

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
#: every character a normalised name can hold
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 "
_CODE = np.full(128, len(ALPHABET), dtype=np.int64)
_CODE[[ord(c) for c in ALPHABET]] = np.arange(len(ALPHABET))


#: a credit of guests ("Artist feat. Guest", "(ft. Guest)"): not part of who the artist is
_FEATURING = re.compile(r"\s*[(\[]?\s*\b(?:feat\.?|ft\.|featuring)\s.*$", re.IGNORECASE)
#: release-edition suffixes of a track title: "Song - Remastered 2011", "Song (2009 Remaster)",
#: "Song - Mono Version"; they name the same recording (a remix or live take is kept apart)
_EDITION = re.compile(
    r"\s*(?:\s-\s|[(\[])\s*(?:(?:\d{4}\s+)?(?:digital(?:ly)?\s+)?re-?master(?:ed)?(?:\s+version)?(?:\s+\d{4})?"
    r"|(?:mono|stereo|single|album|original)\s+version|bonus\s+track)\s*[)\]]?\s*$", re.IGNORECASE)


def identity_key(name: str | None) -> str:
    """What two sources' spellings of one artist share: ``normalise`` after transliteration to
    ASCII (``anyascii``: "Мумий Тролль" -> "mumiy troll") and without a "feat." credit; '+' reads as
    'and'. "" for a name with nothing left."""
    from anyascii import anyascii

    text = _FEATURING.sub("", name or "")
    return normalise(anyascii(text).replace("+", "&"))


def track_identity_key(artist: str | None, title: str | None) -> str:
    """``"<artist key>|<title key>"`` of a track: the title without an edition suffix
    ("- Remastered 2011") or a "feat." credit. "" when the title has nothing left."""
    title = _EDITION.sub("", title or "")
    t = identity_key(title)
    return f"{identity_key(artist)}|{t}" if t else ""


def normalise(name: str) -> str:
    """Lower-case, accents and punctuation removed, '&' read as 'and', a leading 'the' dropped."""
    text = unicodedata.normalize("NFKD", name or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold().replace("&", " and ")
    text = _NON_ALNUM.sub(" ", text).strip()
    if text.startswith("the "):
        text = text[4:]
    return text


def _counts(keys: list[str], chunk: int = 65536) -> np.ndarray:
    """Character counts (N, len(ALPHABET) + 1) of each key; the last column counts anything else."""
    width = len(ALPHABET) + 1
    parts = []
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        lengths = np.fromiter((len(k) for k in part), dtype=np.int64, count=len(part))
        codes = np.frombuffer("".join(part).encode("ascii", "replace"), dtype=np.uint8)
        rows = np.repeat(np.arange(len(part)), lengths)
        parts.append(np.bincount(rows * width + _CODE[np.minimum(codes, 127)],
                                 minlength=len(part) * width).reshape(len(part), width))
    if not parts:
        return np.zeros((0, width), dtype=np.uint8)
    big = max(int(p.max()) for p in parts) >= 256
    return np.concatenate([p.astype(np.uint32 if big else np.uint8) for p in parts])


class CloseMatcher:
    """``difflib.get_close_matches(word, keys, n, cutoff)`` answered from the few keys whose
    ``quick_ratio`` (an upper bound of ``ratio``) reaches ``cutoff``."""

    def __init__(self, keys: list[str]) -> None:
        order = sorted(range(len(keys)), key=lambda i: len(keys[i]))
        self.keys = [keys[i] for i in order]
        self.lengths = np.fromiter((len(k) for k in self.keys), dtype=np.int64, count=len(self.keys))
        self.counts = _counts(self.keys)

    def _bounds(self, word: str, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``keys``, their quick_ratio with ``word``) of the keys where it is >= ``cutoff``."""
        la = len(word)
        if not la or not len(self.keys):
            return np.zeros(0, np.int64), np.zeros(0)    # keys are never empty: an empty word matches none
        # real_quick_ratio 2·min(la, lb)/(la + lb) >= cutoff bounds lb; a little slack for rounding
        c = min(max(cutoff, 1e-3), 1.0)
        lo = bisect.bisect_left(self.lengths, int(np.floor(la * c / (2 - c))) - 1)
        hi = bisect.bisect_right(self.lengths, int(np.ceil(la * (2 - c) / c)) + 1)
        query = _counts([word])[0].astype(np.int64)
        shared = np.minimum(self.counts[lo:hi], query).sum(axis=1, dtype=np.int64)
        bound = 2.0 * shared / (la + self.lengths[lo:hi])
        keep = np.flatnonzero(bound >= cutoff - 1e-9)
        return lo + keep, bound[keep]

    def close(self, word: str, n: int, cutoff: float) -> list[str]:
        """Exactly ``difflib.get_close_matches(word, keys, n, cutoff)``: candidates in falling order of
        their bound, stopping once ``n`` matches score above the next candidate's bound."""
        if cutoff <= 0 or n <= 0:
            return difflib.get_close_matches(word, self.keys, n=n, cutoff=cutoff) if n > 0 else []
        at, bound = self._bounds(word, cutoff)
        best: list[tuple[float, str]] = []          # min-heap of the n best (ratio, key)
        s = difflib.SequenceMatcher()
        s.set_seq2(word)
        for j in np.argsort(-bound, kind="stable"):
            if len(best) == n and bound[j] < best[0][0] - 1e-12:
                break
            x = self.keys[at[j]]
            s.set_seq1(x)
            if s.real_quick_ratio() >= cutoff and s.quick_ratio() >= cutoff:
                r = s.ratio()
                if r >= cutoff:
                    (heapq.heappush if len(best) < n else heapq.heappushpop)(best, (r, x))
        return [x for _, x in sorted(best, reverse=True)]


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
        self._sorted_keys = sorted(self._keys)
        self._matcher: CloseMatcher | None = None      # built on the first fuzzy look-up
        self._matcher_lock = threading.Lock()

    def _close(self, key: str, n: int, cutoff: float) -> list[str]:
        with self._matcher_lock:
            if self._matcher is None:
                self._matcher = CloseMatcher(self._keys)
        return self._matcher.close(key, n, cutoff)

    def find(self, query: str) -> int | None:
        """Best item index for ``query``, or None."""
        if query in self._by_id:
            return self._by_id[query]
        key = normalise(query)
        if not key:
            return None
        if key in self._by_norm:
            return self._by_norm[key]
        close = self._close(key, 5, 0.8)
        if close:
            return max((self._by_norm[c] for c in close), key=lambda i: self.popularity[i])
        return None

    def suggest(self, query: str, n: int = 3) -> list[str]:
        key = normalise(query)
        starts: list[str] = []
        if key:
            at = bisect.bisect_left(self._sorted_keys, key)
            while at < len(self._sorted_keys) and self._sorted_keys[at].startswith(key):
                starts.append(self._sorted_keys[at])
                at += 1
        close = self._close(key, n, 0.5)
        picks = sorted(starts, key=lambda k: (-self.popularity[self._by_norm[k]], self._by_norm[k]))[:n] + close
        out: list[str] = []
        for k in picks:
            name = self.names[self._by_norm[k]]
            if name not in out:
                out.append(name)
        return out[:n]
