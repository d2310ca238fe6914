"""Tag vocabulary, TF-IDF vectors, tag-similar artists and Spotify genre alignment on HetRec."""

import os

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.features.tags import (
    AUDIO_FEATURES, clean_tags, genre_alignment, similar_artists_by_tags, tag_key, tfidf_matrix,
)


@pytest.fixture(scope="module")
def hetrec(shared_data, tmp_path_factory):
    """{"tags", "artists"}: the store tables of HetRec Last.fm 2K (~186k tag assignments)."""
    from musicrec.store import Store, ingest_path

    store = str(tmp_path_factory.mktemp("tags") / "store")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), store)
    s = Store(store)
    return {"tags": s.table("tags"), "artists": s.table("artists")}


@pytest.fixture(scope="module")
def vocab(hetrec):
    return clean_tags(hetrec["tags"])


@pytest.fixture(scope="module")
def tm(hetrec, vocab):
    return tfidf_matrix(hetrec["tags"], vocab)


def test_tag_key_unifies_spellings():
    keys = pl.DataFrame({"t": ["Hip-Hop", " hip hop ", "hiphop", "R&B", "r n b", "rnb", "Rock'n'Roll",
                               "rock n roll", "rock & roll", "drum_and_bass", "dnb", "post-rock"]})
    out = keys.select(tag_key("t"))["t"].to_list()
    assert out[:3] == ["hiphop"] * 3
    assert out[3:6] == ["rnb"] * 3
    assert out[6:9] == ["rockandroll"] * 3
    assert out[9:11] == ["drumandbass"] * 2
    assert out[11] == "postrock"


def test_variants_merge_and_counts_add_up(hetrec, vocab):
    raw = hetrec["tags"].group_by("tag").agg(pl.len().alias("n"))
    n_of = dict(zip(raw["tag"].to_list(), raw["n"].to_list()))
    j = vocab.lookup(["hip-hop", "hip hop", "hiphop", "HIP HOP"])
    assert j[0] >= 0 and (j == j[0]).all()
    row = vocab.tags.row(int(j[0]), named=True)
    # merged: more assignments than the largest single spelling, at most their sum
    assert n_of["hip-hop"] < row["n_assignments"] <= n_of["hip-hop"] + n_of["hip hop"] + n_of["hiphop"]
    assert row["n_variants"] >= 3
    assert vocab.lookup(["rnb"])[0] == vocab.lookup(["r and b"])[0] >= 0
    assert vocab.stats["merged_tags"] < vocab.stats["raw_tags"]
    assert len(vocab) == vocab.tags["key"].n_unique() == vocab.stats["kept"]


def test_stoplist_and_rare_tags_are_dropped(hetrec, vocab):
    status = dict(zip(vocab.mapping["raw"].to_list(), vocab.mapping["status"].to_list()))
    for tag in ("seen live", "favorites", "favourite", "my favorite", "awesome"):
        assert status[tag] == "stoplist", tag
    assert (vocab.lookup(["seen live", "Favourites"]) == -1).all()
    # every kept tag meets both thresholds, counted independently from the raw assignments
    per_tag = (hetrec["tags"].join(vocab.mapping, left_on="tag", right_on="raw")
               .group_by("key").agg(pl.col("artist_id").n_unique().alias("a"), pl.col("user_id").n_unique().alias("u")))
    kept = per_tag.join(vocab.tags.select("key"), on="key", how="semi")
    assert kept.height == len(vocab)
    assert kept["a"].min() >= 5 and kept["u"].min() >= 3
    # a tag spread over many artists by a single listener is someone's private label: rare
    private = per_tag.filter((pl.col("u") == 1) & (pl.col("a") >= 20)).join(
        vocab.mapping.filter(pl.col("status") != "stoplist").select("key"), on="key", how="semi")
    assert private.height > 0
    assert (vocab.lookup(private["key"].to_list()) == -1).all()
    assert len(clean_tags(hetrec["tags"], min_artists=50)) < len(vocab)


def test_tfidf_rows_are_unit_length(hetrec, vocab, tm):
    m = tm.matrix
    assert m.shape == (len(tm.artists), len(vocab)) and m.dtype == np.float32
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    assert np.allclose(norms[np.diff(m.indptr) > 0], 1.0, atol=1e-5)
    assert (m.data > 0).all()
    # rows follow a given id order; unknown ids get zero rows
    ids = np.array([tm.artists.ids[5], -7, tm.artists.ids[0]])
    aligned = tfidf_matrix(hetrec["tags"], vocab, artists=ids)
    assert aligned.matrix.shape == (3, len(vocab))
    assert aligned.matrix[1].nnz == 0
    assert np.allclose(aligned.matrix[0].toarray(), m[5].toarray())


@pytest.mark.parametrize("name", ["Metallica", "Eminem"])
def test_similar_artists_share_the_top_tag(hetrec, vocab, tm, name):
    artist = hetrec["artists"].filter(pl.col("name") == name)["artist_id"][0]
    row = int(tm.artists.index([artist])[0])
    # the artist's most given (kept) tag, counted from the raw assignments
    given = (hetrec["tags"].filter(pl.col("artist_id") == artist)
             .join(vocab.mapping.filter(pl.col("status") == "kept"), left_on="tag", right_on="raw")
             .group_by("key").len().sort(["len", "key"], descending=[True, False]))
    top = int(vocab.lookup([given["key"][0]])[0])
    idx, scores = similar_artists_by_tags(tm.matrix, row, k=10)
    assert idx.shape == (1, 10) and row not in idx[0] and (idx >= 0).all()
    assert (np.diff(scores[0]) <= 1e-6).all() and scores[0, 0] <= 1 + 1e-5
    share = (tm.matrix[idx[0]][:, top].toarray().ravel() > 0).mean()
    base = (tm.matrix[:, top].toarray().ravel() > 0).mean()
    assert share >= 0.8 and base < 0.2, (vocab.names[top], share, base)


def test_genre_alignment_matches_frequent_tags(shared_data, vocab):
    csv = os.path.join(shared_data, "spotify-1921-2020-aggregates", "data_by_genres.csv")
    g = genre_alignment(vocab, csv)
    assert g.n_tags == len(vocab) and g.n_matched == g.features.height
    assert 0.25 < g.match_rate < 1 and g.weighted_match_rate > 0.45   # measured 0.34 / 0.54
    top100 = vocab.tags.head(100).join(g.features.select("tag"), on="tag", how="semi").height
    assert top100 >= 55                                                 # measured 62
    pairs = dict(zip(g.features["tag"].to_list(), g.features["genre"].to_list()))
    assert pairs["hip-hop"] == "hip hop" and pairs["rnb"] == "r&b" and pairs["metal"] == "metal"
    feats = g.features.select(AUDIO_FEATURES).to_numpy()
    assert np.isfinite(feats).all()
    assert (g.features["tag"].n_unique() == g.features.height)
    # hip hop is more speech than ambient, metal more energetic than ambient
    by = {t: r for t, r in zip(g.features["tag"].to_list(), g.features.iter_rows(named=True))}
    assert by["hip-hop"]["speechiness"] > by["ambient"]["speechiness"]
    assert by["metal"]["energy"] > by["ambient"]["energy"]


def test_genre_alignment_bad_file(tmp_path, vocab):
    with pytest.raises(MusicrecError, match="no such file"):
        genre_alignment(vocab, str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("genres,energy\nrock,0.5\n")
    with pytest.raises(MusicrecError, match="missing column"):
        genre_alignment(vocab, str(bad))


def test_split_item_tags_work_without_users(vocab):
    frame = pl.DataFrame({"item_id": [1, 1, 2, 2, 3], "tag": ["Hip Hop", "hip-hop", "hiphop", "rock", "rock"],
                          "weight": [2.0, 1.0, 1.0, 1.0, 1.0]})
    small = clean_tags(frame, min_artists=2, min_users=1)
    assert small.names == ["hip hop", "rock"] and small.stats["min_users"] is None
    m = tfidf_matrix(frame, small)
    assert m.matrix.shape == (3, 2) and m.matrix[2, 0] == 0
