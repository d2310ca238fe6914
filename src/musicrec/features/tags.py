"""Tag and genre features: a cleaned tag vocabulary, TF-IDF artist x tag vectors,
tag-based similar artists, and Spotify genre alignment.

Listener tags (HetRec's ``user_taggedartists``: ~186k assignments, ~9.7k distinct strings) are
noisy: one genre is spelt many ways (``hip-hop``, ``hip hop``, ``hiphop``), many tags say
nothing about the music (``seen live``, ``favorites``) and most are used once. The pipeline::

    vocab = clean_tags(store.table("tags"))         # or a Split's item_tags
    tm = tfidf_matrix(store.table("tags"), vocab)   # (A, T) unit rows + IdMap of artists
    idx, sim = similar_artists_by_tags(tm.matrix, tm.artists.index([artist_id]), k=10)
    genres = genre_alignment(vocab, ".../data_by_genres.csv")

Everything is vectorised over Polars frames; the Python-level work is per *distinct* tag
string, never per assignment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec import MusicrecError
from musicrec.features.vocab import IdMap

#: Tags that describe the listener, not the music (compared after normalisation, see
#: :func:`tag_key`). Moods ("sad", "mellow") and places ("british") stay: they are about the music.
STOPLIST = (
    "seen live", "favorite", "favorites", "my favorite", "my favorites", "love", "loved", "love it",
    "i love it", "awesome", "amazing", "cool", "best", "the best", "<3", "love at first listen",
    "albums i own", "check out", "spotify",
)
#: Key prefixes (normalised, no spaces) of listener-centric tag families:
#: "favorite songs", "favourite artists", "seen live 2008", "best song ever", "my top artists".
STOP_PREFIXES = ("favorite", "myfavorite", "ultimatefavorite", "seenlive", "bestsong", "mytop", "ilove")
#: Spellings that normalisation alone does not unify: key -> key.
ALIASES = {
    "randb": "rnb", "rhythmandblues": "rnb",
    "dnb": "drumandbass", "dandb": "drumandbass",
    "femalevocalist": "femalevocalists", "malevocalist": "malevocalists",
}
#: Audio-feature columns of Spotify's ``data_by_genres.csv`` averaged per matched tag.
AUDIO_FEATURES = ("danceability", "energy", "valence", "acousticness", "instrumentalness",
                  "liveness", "speechiness", "loudness", "tempo", "popularity")


# ----------------------------------------------------------------------------- normalisation
def _spaced(col: pl.Expr) -> pl.Expr:
    """Lower-case, '&' / "'n'" / ' n ' -> ' and ', separators -> one space, stripped."""
    e = col.str.to_lowercase().str.strip_chars()
    e = e.str.replace_all("’", "'", literal=True)
    e = e.str.replace_all(r"\s*&\s*", " and ")
    e = e.str.replace_all(r"\s*'n'\s*|\s+'n\s+|\s+n'\s+|\s+n\s+", " and ")   # rock'n'roll, rock n roll
    e = e.str.replace_all(r"[-_/.,:;+'\"]+", " ")
    return e.str.replace_all(r"\s+", " ").str.strip_chars()


def tag_key(col: pl.Expr | str = "tag") -> pl.Expr:
    """Merge key of a tag string: normalised spelling without spaces, British spelling of
    "favourite" unified, then :data:`ALIASES`. ``hip-hop``, ``Hip Hop``, ``hiphop`` -> ``hiphop``;
    ``R&B``, ``r n b``, ``rnb`` -> ``rnb``."""
    col = pl.col(col) if isinstance(col, str) else col
    key = _spaced(col).str.replace_all(" ", "", literal=True).str.replace_all("favourite", "favorite", literal=True)
    return key.replace(ALIASES)


def _stop_keys(stoplist) -> list[str]:
    return pl.DataFrame({"t": list(stoplist)}, schema={"t": pl.String}).select(tag_key("t"))["t"].to_list()


# ----------------------------------------------------------------------------- vocabulary
@dataclass
class TagVocab:
    """A cleaned tag vocabulary.

    Attributes
    ----------
    tags : DataFrame
        One row per kept tag, row ``j`` = tag index ``j`` (matrix column): ``tag`` (display
        name: the most used spelling), ``key`` (merge key), ``n_artists``, ``n_users`` (null
        without user ids), ``n_assignments``, ``n_variants``. Sorted by ``n_assignments``
        descending, then ``tag``.
    mapping : DataFrame
        Every raw tag string: ``raw``, ``key``, ``tag`` (display name, null when dropped),
        ``status`` ("kept" | "stoplist" | "rare").
    stats : dict
        ``raw_tags`` (distinct strings), ``merged_tags`` (distinct keys), ``stoplist``,
        ``rare`` (keys dropped), ``kept``, ``min_artists``, ``min_users``.
    """

    tags: pl.DataFrame
    mapping: pl.DataFrame
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.tags.height

    @property
    def names(self) -> list[str]:
        return self.tags["tag"].to_list()

    def lookup(self, raw_tags) -> np.ndarray:
        """Tag indices of free-text tags (any spelling), -1 when not in the vocabulary; shape kept."""
        keys = pl.DataFrame({"raw": list(raw_tags)}, schema={"raw": pl.String}).select(tag_key("raw").alias("key"))
        index = self.tags.select("key", pl.int_range(pl.len()).alias("j"))
        j = keys.join(index, on="key", how="left", maintain_order="left")["j"].fill_null(-1)
        return j.to_numpy().astype(np.int64)


def _item_column(frame: pl.DataFrame) -> str:
    for col in ("artist_id", "item_id"):
        if col in frame.columns:
            return col
    raise MusicrecError(f"a tag frame needs an artist_id or item_id column; got {', '.join(frame.columns)}")


def _assignments(frame: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """(item, key, user, weight) rows with merge keys, one row per user per (item, key) so a
    listener who wrote both "hip hop" and "hip-hop" on an artist counts once."""
    if "tag" not in frame.columns:
        raise MusicrecError(f"a tag frame needs a tag column; got {', '.join(frame.columns)}")
    item = _item_column(frame)
    has_user = "user_id" in frame.columns
    df = frame.select(
        pl.col(item).alias("item"), pl.col("tag").alias("raw"),
        (pl.col("user_id") if has_user else pl.lit(None, pl.Int64)).alias("user"),
        (pl.col("weight").fill_null(1.0) if "weight" in frame.columns else pl.lit(1.0)).alias("weight"),
    ).filter(pl.col("item").is_not_null() & pl.col("raw").is_not_null())
    df = df.join(mapping.select("raw", "key"), on="raw", how="inner")
    by_user = df.filter(pl.col("user").is_not_null()).group_by("item", "key", "user").agg(pl.col("weight").max())
    anonymous = df.filter(pl.col("user").is_null()).select("item", "key", "user", "weight")
    return pl.concat([by_user.select("item", "key", "user", "weight"), anonymous])


def clean_tags(frame: pl.DataFrame, min_artists: int = 5, min_users: int = 3, stoplist=STOPLIST,
               stop_prefixes=STOP_PREFIXES) -> TagVocab:
    """Build a cleaned tag vocabulary.

    Parameters
    ----------
    frame : DataFrame
        A store's ``tags`` table (``artist_id, tag, user_id, weight``) or a Split's
        ``item_tags`` (``item_id, tag, weight``; no user ids, so ``min_users`` is not applied).
    min_artists : int
        Keep a merged tag only if it is on at least this many distinct artists/items.
    min_users : int
        ... and was used by at least this many distinct listeners (drops one person's
        private labels such as "best songs of the 70s").
    stoplist, stop_prefixes
        Listener-centric tags to drop (exact, and key prefixes); see :data:`STOPLIST`.
    """
    if min_artists < 1 or min_users < 1:
        raise MusicrecError(f"min_artists and min_users must be >= 1, got {min_artists}, {min_users}")
    raw = frame.select(pl.col("tag").alias("raw")).drop_nulls().unique()
    display = pl.col("raw").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    mapping = raw.with_columns(tag_key("raw").alias("key"), display.alias("_display"))
    mapping = mapping.filter(pl.col("key") != "")
    df = _assignments(frame, mapping)
    has_users = df["user"].null_count() < df.height
    per_key = df.group_by("key").agg(
        pl.col("item").n_unique().alias("n_artists"),
        (pl.col("user").drop_nulls().n_unique() if has_users else pl.lit(None, pl.UInt32)).alias("n_users"),
        pl.len().alias("n_assignments"),
    )
    # display name of a key: its most used spelling (ties: alphabetical)
    spelling = (frame.select(pl.col("tag").alias("raw")).drop_nulls()
                .join(mapping, on="raw", how="inner")
                .group_by("key", "_display").agg(pl.len().alias("_n"))
                .sort(["key", "_n", "_display"], descending=[False, True, False])
                .group_by("key", maintain_order=True)
                .agg(pl.col("_display").first().alias("tag"), pl.len().alias("n_variants")))
    per_key = per_key.join(spelling, on="key", how="left")
    stop_keys = _stop_keys(stoplist)
    is_stop = pl.col("key").is_in(stop_keys) | pl.any_horizontal(
        [pl.col("key").str.starts_with(p) for p in stop_prefixes] or [pl.lit(False)])
    rare = pl.col("n_artists") < min_artists
    if has_users:
        rare = rare | (pl.col("n_users") < min_users)
    per_key = per_key.with_columns(
        pl.when(is_stop).then(pl.lit("stoplist")).when(rare).then(pl.lit("rare")).otherwise(pl.lit("kept")).alias("status"))
    tags = (per_key.filter(pl.col("status") == "kept")
            .select("tag", "key", "n_artists", "n_users", "n_assignments", "n_variants")
            .sort(["n_assignments", "tag"], descending=[True, False]))
    mapping = (mapping.join(per_key.select("key", "status", "tag"), on="key", how="left")
               .with_columns(pl.col("status").fill_null("rare"))
               .with_columns(pl.when(pl.col("status") == "kept").then(pl.col("tag")).alias("tag"))
               .select("raw", "key", "tag", "status").sort("raw"))
    counts = per_key["status"].value_counts()
    count = dict(zip(counts["status"].to_list(), counts["count"].to_list()))
    stats = dict(raw_tags=raw.height, merged_tags=per_key.height, stoplist=count.get("stoplist", 0),
                 rare=count.get("rare", 0), kept=tags.height, min_artists=min_artists,
                 min_users=min_users if has_users else None)
    return TagVocab(tags=tags, mapping=mapping, stats=stats)


# ----------------------------------------------------------------------------- TF-IDF
@dataclass
class TagMatrix:
    """TF-IDF artist x tag vectors.

    Attributes
    ----------
    matrix : csr_matrix, shape (A, T), float32
        Row ``i`` = artist ``artists.ids[i]``, column ``j`` = ``vocab.tags[j]``; rows L2-normalised
        (all-zero for artists without a kept tag).
    artists : IdMap
        Row index of store artist ids (or split item ids).
    tags : list of str
        Column names (display names of the vocabulary).
    idf : ndarray, shape (T,), float32
    """

    matrix: sp.csr_matrix
    artists: IdMap
    tags: list
    idf: np.ndarray


def tfidf_matrix(frame: pl.DataFrame, vocab: TagVocab, artists=None) -> TagMatrix:
    """TF-IDF vectors of artists over ``vocab``.

    tf = 1 + ln(n) with n the number of listeners who gave the tag (summed weights without
    user ids); idf = ln((1 + A) / (1 + df)) + 1 over the A artists that have a kept tag
    (scikit-learn's smoothed idf). ``artists`` (ids) fixes the rows, e.g. a model's item
    vocabulary; ids without tags get zero rows, tagged artists not listed are left out.
    """
    df = _assignments(frame, vocab.mapping.filter(pl.col("status") == "kept"))
    index = vocab.tags.select("key", pl.int_range(pl.len(), dtype=pl.Int64).alias("j"))
    counts = (df.join(index, on="key", how="inner")
              .group_by("item", "j").agg(pl.col("weight").sum().alias("n")))
    n_tags = len(vocab)
    doc_freq = np.bincount(counts["j"].to_numpy(), minlength=n_tags)
    n_docs = counts["item"].n_unique()
    idf = (np.log((1.0 + n_docs) / (1.0 + doc_freq)) + 1.0).astype(np.float32)
    rows = IdMap.fit(counts["item"].to_numpy()) if artists is None else IdMap(np.asarray(artists, dtype=np.int64))
    i = rows.index(counts["item"].to_numpy())
    keep = i >= 0
    j = counts["j"].to_numpy()[keep]
    tf = 1.0 + np.log(np.maximum(counts["n"].to_numpy()[keep], 1.0))
    m = sp.csr_matrix(((tf * idf[j]).astype(np.float32), (i[keep], j)), shape=(len(rows), n_tags), dtype=np.float32)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    m = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ m
    return TagMatrix(matrix=sp.csr_matrix(m, dtype=np.float32), artists=rows, tags=vocab.names, idf=idf)


def item_tag_vectors(item_tags: pl.DataFrame, ids) -> tuple[TagVocab, TagMatrix] | None:
    """The cleaned vocabulary of ``item_tags`` (a split's or a model folder's) and TF-IDF rows for the
    items ``ids`` (a model's catalogue, in index order); None when no tag survives cleaning."""
    if item_tags.height == 0:
        return None
    vocab = clean_tags(item_tags)
    if len(vocab) == 0:
        return None
    return vocab, tfidf_matrix(item_tags, vocab, artists=ids)


def similar_artists_by_tags(matrix, artist_index, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` artists whose tag vectors are most cosine-similar to each query artist.

    Parameters
    ----------
    matrix : csr_matrix (A, T) with unit rows, or a :class:`TagMatrix`
    artist_index : int or array of int, shape (B,)
        Row indices (``TagMatrix.artists.index(ids)``).
    k : int

    Returns
    -------
    indices : ndarray, shape (B, k), int64 -- row indices, best first; -1 where fewer than
        ``k`` artists share a tag with the query. The query itself is excluded.
    scores : ndarray, shape (B, k), float32 -- cosine similarities (0 where index is -1).
    """
    m = matrix.matrix if isinstance(matrix, TagMatrix) else sp.csr_matrix(matrix)
    q = np.atleast_1d(np.asarray(artist_index, dtype=np.int64))
    if k < 1:
        raise MusicrecError(f"k must be >= 1, got {k}")
    if len(q) and (q.min() < 0 or q.max() >= m.shape[0]):
        raise MusicrecError(f"artist index out of range [0, {m.shape[0]}): unknown artist?")
    scores = (m[q] @ m.T).toarray().astype(np.float32)          # (B, A)
    scores[np.arange(len(q)), q] = -np.inf
    k_eff = min(k, m.shape[0])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff else np.zeros((len(q), 0), np.int64)
    top = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -top), axis=1) if len(q) else np.zeros_like(part)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    val = np.take_along_axis(top, order, axis=1)
    empty = ~(val > 0)
    idx[empty], val[empty] = -1, 0.0
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        val = np.pad(val, ((0, 0), (0, k - k_eff)))
    return idx, val.astype(np.float32)


# ----------------------------------------------------------------------------- genres
@dataclass
class GenreAlignment:
    """Cleaned tags matched to Spotify genre names.

    Attributes
    ----------
    features : DataFrame
        One row per matched tag: ``tag``, ``genre`` (Spotify's name), ``match`` ("exact" |
        "variant"), ``n_assignments``, then the mean audio features of :data:`AUDIO_FEATURES`
        (Spotify's 0-1 scales; ``loudness`` in dB, ``tempo`` in BPM, ``popularity`` 0-100).
    n_tags, n_matched : int
    match_rate : float
        ``n_matched / n_tags``.
    weighted_match_rate : float
        Share of tag assignments whose tag is matched.
    """

    features: pl.DataFrame
    n_tags: int
    n_matched: int
    match_rate: float
    weighted_match_rate: float


def genre_alignment(vocab: TagVocab, spotify_genres_csv: str, features=AUDIO_FEATURES) -> GenreAlignment:
    """Match cleaned tags to the genres of Spotify's ``data_by_genres.csv``.

    Both sides are compared by :func:`tag_key`. First exact keys; then, for tags still
    unmatched, a few safe variants: singular/plural ("female vocalist" / "...s") and a
    "music" suffix ("christian" / "christian music"). When several Spotify names share a key,
    the shortest (then alphabetical) wins.
    """
    if not os.path.isfile(spotify_genres_csv):
        raise MusicrecError(f"{spotify_genres_csv}: no such file (Spotify data_by_genres.csv)")
    try:
        genres = pl.read_csv(spotify_genres_csv, infer_schema_length=10_000)
    except pl.exceptions.PolarsError as exc:
        raise MusicrecError(f"{spotify_genres_csv}: not a readable CSV ({exc})") from None
    missing = [c for c in ("genres", *features) if c not in genres.columns]
    if missing:
        raise MusicrecError(f"{spotify_genres_csv}: missing column(s) {', '.join(missing)}")
    genres = (genres.select(pl.col("genres").alias("genre"), *[pl.col(c).cast(pl.Float64) for c in features])
              .filter(pl.col("genre").is_not_null() & (pl.col("genre") != "[]"))
              .with_columns(tag_key("genre").alias("gkey"))
              .filter(pl.col("gkey") != "")
              .sort([pl.col("genre").str.len_chars(), "genre"])
              .unique("gkey", keep="first", maintain_order=True))

    tags = vocab.tags.select("tag", "key", "n_assignments")
    exact = tags.join(genres, left_on="key", right_on="gkey", how="inner").with_columns(pl.lit("exact").alias("match"))
    rest = tags.join(exact.select("key"), on="key", how="anti")
    candidates = pl.concat([
        rest.with_columns(pl.col("key").str.strip_suffix("s").alias("gkey"), pl.lit(0).alias("_rank")),
        rest.with_columns((pl.col("key") + "s").alias("gkey"), pl.lit(1).alias("_rank")),
        rest.with_columns((pl.col("key") + "music").alias("gkey"), pl.lit(2).alias("_rank")),
        rest.with_columns(pl.col("key").str.strip_suffix("music").alias("gkey"), pl.lit(3).alias("_rank")),
    ]).filter(pl.col("gkey") != pl.col("key"))
    variant = (candidates.join(genres, on="gkey", how="inner")
               .sort(["key", "_rank"]).unique("key", keep="first", maintain_order=True)
               .drop("gkey", "_rank").with_columns(pl.lit("variant").alias("match")))
    cols = ["tag", "genre", "match", "n_assignments", *features]
    matched = (pl.concat([exact.select(cols), variant.select(cols)])
               .sort(["n_assignments", "tag"], descending=[True, False]))
    n_tags = len(vocab)
    total = float(vocab.tags["n_assignments"].sum()) if n_tags else 0.0
    return GenreAlignment(
        features=matched, n_tags=n_tags, n_matched=matched.height,
        match_rate=matched.height / n_tags if n_tags else 0.0,
        weighted_match_rate=float(matched["n_assignments"].sum()) / total if total else 0.0,
    )
