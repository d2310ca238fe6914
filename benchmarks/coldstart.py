"""Cold-start benchmark on HetRec Last.fm 2K (artist level, seed 0; writes Markdown).

    python benchmarks/coldstart.py [--data ../shared/data] [--out benchmarks/results/coldstart.md]
                                   [--epochs 5]

* item-coldstart: 10% of artists have no training plays; test users rank only those cold
  artists. Two-tower (ids + tag TF-IDF content) vs most-popular (blind to unplayed items) vs a
  tag-profile kNN (a user's mean TF-IDF tag vector, cosine to each artist's).
* user-coldstart with 1, 3 and 5 seed artists: held-out users are scored from their seeds only.
  Two-tower, EASE, ALS (the tuned settings of benchmarks/results/classic.md), most-popular.
* user-holdout (warm): the same models' NDCG@10, for reference.

Small models and few epochs (early stopping on the validation part) so the whole run takes a
few minutes on two cores. Not a test; the numbers go to ``benchmarks/results/coldstart.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from musicrec import MusicrecError
from musicrec.evaluate.protocols import evaluate
from musicrec.models.base import Recommender
from musicrec.models.registry import MODELS
from musicrec.preprocess.split import make_split
from musicrec.store import ingest_path
from musicrec.train.fit import fit_model

HERE = os.path.dirname(os.path.abspath(__file__))
# tuned on the HetRec user-holdout split (benchmarks/results/classic.md)
ALS = {"factors": 32, "regularization": 1.3246974647468452, "alpha": 0.8620230049621144, "iterations": 15}
EASE = {"min_item_users": 2, "l2": 78.33535813207853}
CLEAN = "two-tower, held-out listeners' own tags removed"


class TagProfileKNN(Recommender):
    """Content baseline: cosine between a history's mean TF-IDF tag vector and each item's."""

    name = "tag-profile-knn"
    uses_content = True

    def __init__(self):
        pass

    def _fit(self, train):
        if not hasattr(self, "content_"):
            raise MusicrecError(f"{self.name}: needs item content (a split with item tags)")

    def score(self, histories):
        hist = sp.csr_matrix(histories.matrix, dtype=np.float32)
        hist.data[:] = 1.0
        profile = (hist @ self.content_).toarray()
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        return np.asarray((self.content_ @ profile.T).T, dtype=np.float32)


def run(name, split, params, ks=(10, 20)):
    model, fit_s = fit_model(name, split, params)
    result = evaluate(model, split, ks=ks, fit_s=fit_s)
    return result, fit_s


def run_with_content(name, split, params, content, ks=(10, 20)):
    """Like ``fit_model`` + ``evaluate``, with the given item content instead of the split's tags."""
    from musicrec.features.interactions import Interactions
    from musicrec.train.fit import catalogue, validation_fn

    model = MODELS[name](**params)
    train = Interactions.from_frame(split.train, items=catalogue(split, split.train))
    start = time.perf_counter()
    model.fit(train, valid=validation_fn(split, "ndcg@10"), content=content)
    fit_s = time.perf_counter() - start
    return evaluate(model, split, ks=ks, fit_s=fit_s), fit_s


def content_without_heldout(store: str, split) -> sp.csr_matrix:
    """TF-IDF tag vectors of the split's catalogue from the store's tags minus every tag a listener
    wrote on an artist that is one of *their* held-out (test or valid) items. HetRec's tags come
    from the same listeners whose plays are held out, and people tag what they play: their own
    tags on a cold artist leak the answer. Other listeners' tags on it stay (fair content)."""
    import polars as pl

    from musicrec.features.tags import clean_tags, tfidf_matrix
    from musicrec.preprocess.split import open_store
    from musicrec.train.fit import catalogue

    held = pl.concat([p.select("user_id", pl.col("item_id").alias("artist_id"))
                      for p in (split.test, split.valid) if p is not None]).unique()
    tags = open_store(store).table("tags")   # store user and artist ids, as in artist-level events
    tags = tags.join(held, on=["user_id", "artist_id"], how="anti")
    items = catalogue(split, split.train)
    return tfidf_matrix(tags, clean_tags(tags), artists=items.ids).matrix


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "coldstart.md"))
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args(argv)
    MODELS[TagProfileKNN.name] = TagProfileKNN
    two_tower = {"embedding_dim": 64, "epochs": args.epochs, "batch_size": 512, "learning_rate": 3e-3, "patience": 2}
    start = time.perf_counter()
    lines, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        ingest_path("hetrec-lastfm-2k", os.path.join(args.data, "hetrec2011-lastfm-2k"), store)

        # ---- item cold start
        split = make_split(store, "item-coldstart", seed=0)
        lines += ["## Item cold start (rank the 10% of artists without training plays)", "",
                  f"{len(split.meta['cold_items']['test'])} cold test artists, "
                  f"{split.test['user_id'].n_unique()} test users, {split.test.height} test pairs.", "",
                  "| model | NDCG@10 | Recall@20 | fit s |", "|---|---|---|---|"]
        for name, params in [("two-tower", two_tower), ("tag-profile-knn", {}), ("most-popular", {})]:
            r, fit_s = run(name, split, params)
            lines.append(f"| {name} | {r.metrics['ndcg@10']:.4f} | {r.metrics['recall@20']:.4f} | {fit_s:.1f} |")
            print(lines[-1], flush=True)
        clean = content_without_heldout(store, split)
        for name, params in [("two-tower", two_tower), ("tag-profile-knn", {})]:
            r, fit_s = run_with_content(name, split, params, clean)
            lines.append(f"| {name}, held-out listeners' own tags removed | {r.metrics['ndcg@10']:.4f} | "
                         f"{r.metrics['recall@20']:.4f} | {fit_s:.1f} |")
            print(lines[-1], flush=True)
        lines += ["", "Content = TF-IDF over cleaned tags (`features.tags`) of the split's items. HetRec's tags "
                  "are written by its own listeners, who tag what they play: the rows *held-out listeners' own tags "
                  "removed* rebuild the content from the store's tags without any tag a listener wrote on one of "
                  "their own held-out artists (and apply `min_users`), the fair number for a new artist."]

        # ---- user cold start
        models = [("two-tower", two_tower), ("ease", EASE), ("als", ALS), ("most-popular", {})]
        table = {}
        for n_seeds in (1, 3, 5):
            split = make_split(store, "user-coldstart", seed=0, n_seeds=n_seeds)
            notes.append(f"{n_seeds} seed(s): {split.test['user_id'].n_unique()} test users, "
                         f"{split.test.height} test pairs")
            for name, params in models:
                r, _ = run(name, split, params, ks=(10,))
                table[name, n_seeds] = r.metrics["ndcg@10"]
                print(name, n_seeds, round(table[name, n_seeds], 4), flush=True)
            r, _ = run_with_content("two-tower", split, two_tower, content_without_heldout(store, split), ks=(10,))
            table[CLEAN, n_seeds] = r.metrics["ndcg@10"]
            print(CLEAN, n_seeds, round(table[CLEAN, n_seeds], 4), flush=True)
        # ---- warm reference
        split = make_split(store, "user-holdout", seed=0)
        for name, params in models:
            r, _ = run(name, split, params, ks=(10,))
            table[name, "warm"] = r.metrics["ndcg@10"]
            print(name, "warm", round(table[name, "warm"], 4), flush=True)

    lines += ["", "## User cold start (held-out users scored from n seed artists) and warm reference", "",
              "NDCG@10.", "", "| model | 1 seed | 3 seeds | 5 seeds | warm user-holdout |", "|---|---|---|---|---|"]
    for name, _ in models:
        lines.append(f"| {name} | " + " | ".join(f"{table[name, s]:.4f}" for s in (1, 3, 5, "warm")) + " |")
        if name == "two-tower":
            lines.append(f"| {CLEAN} | " + " | ".join(f"{table[CLEAN, s]:.4f}" for s in (1, 3, 5)) + " | |")
    lines += ["", *(f"- {n}" for n in notes)]
    total = time.perf_counter() - start
    header = ["# Cold start on HetRec Last.fm 2K (artist level, seed 0)", "",
              f"`python benchmarks/coldstart.py --epochs {args.epochs}`; two-tower {two_tower} (early stopping "
              f"on validation), EASE {EASE}, ALS {ALS}. Total {total:.0f} s on {os.cpu_count()} CPU(s), "
              f"{platform.processor() or platform.machine()}.", ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp_out = args.out + ".tmp"
    with open(tmp_out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(header + lines) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
