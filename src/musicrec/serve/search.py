"""Finding catalogue items by what a listener types: exact, prefix, substring, then fuzzy."""

from __future__ import annotations

import threading

import numpy as np
import polars as pl

from musicrec.names import NameIndex, normalise


class CatalogueSearch:
    """Items by name (or, for tracks, artist), more popular first within each kind of match.

    Parameters
    ----------
    names, artists : list[str | None]
        Per item (I,): its name and its artist's name (the name itself at artist level).
    popularity : (I,) int64
        Listeners per item.
    fuzzy : NameIndex
        Close-match lookup over the names, asked when the plain matches run short.
    """

    def __init__(self, names: list, artists: list, popularity: np.ndarray, fuzzy: NameIndex):
        self.names, self.artist_names, self.popularity, self.fuzzy = names, artists, popularity, fuzzy
        self._frame: pl.DataFrame | None = None
        self._artists: np.ndarray | None = None
        self._lock = threading.Lock()

    def find(self, q: str, limit: int = 10) -> list[int]:
        """Item indices matching ``q``: exact, then prefix, then substring name matches, then
        artist matches, then one fuzzy match; at most ``limit``."""
        key = normalise(q)
        if not key:
            return []
        rank = (pl.when(pl.col("name") == key).then(0)
                .when(pl.col("name").str.starts_with(key)).then(1)
                .when(pl.col("name").str.contains(key, literal=True)).then(2)
                .when(pl.col("artist") == key).then(3)
                .when(pl.col("artist").str.contains(key, literal=True)).then(4))
        hits = (self._index().with_columns(rank=rank).filter(pl.col("rank").is_not_null())
                .sort(["rank", "pop", "idx"], descending=[False, True, False]).head(limit)["idx"].to_list())
        if len(hits) < limit:
            fuzzy = self.fuzzy.find(q)
            if fuzzy is not None and fuzzy not in hits:
                hits.append(fuzzy)
        return hits

    def artists(self) -> np.ndarray:
        """``normalise``d artist name per item (I,) object ("" when unknown)."""
        if self._artists is None:
            by_name = {a: normalise(a) for a in set(self.artist_names) if a}
            self._artists = np.array([by_name.get(a, "") for a in self.artist_names], dtype=object)
        return self._artists

    def _index(self) -> pl.DataFrame:
        # built on first use: normalising a million names takes seconds
        with self._lock:
            if self._frame is None:
                self._frame = pl.DataFrame({
                    "idx": np.arange(len(self.names)), "name": [normalise(n) for n in self.names],
                    "artist": self.artists().tolist(), "pop": self.popularity})
            return self._frame
