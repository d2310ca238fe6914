"""A model folder with everything needed to answer requests in the listener's own terms.

Layout written by ``ModelBundle.save`` (and ``musicrec train``)::

    config.json state.npz interactions.npz   # the model (``Recommender.save``)
    items.parquet   # schema.SPLIT_ITEMS of the training catalogue: names, original ids
    item_tags.parquet  # schema.SPLIT_ITEM_TAGS of those items (for item cards and reasons)
    users.parquet   # schema.SPLIT_USERS: original user ids
    bundle.json     # the split it was fitted on (path, store, protocol, item level, a fingerprint
                    # of the training rows: :func:`bundle_meta`), fit seconds, parameters

The folder may be a local path or an fsspec URL (``s3://bucket/model``); every file is written
atomically.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import polars as pl

from musicrec import MusicrecError, fsio, schema
from musicrec.models.base import Recommender
from musicrec.names import NameIndex
from musicrec.preprocess.splitset import Split, fingerprint


def bundle_meta(split: Split, split_url: str, include_valid: bool, fit_s: float | None = None,
                params: dict | None = None, **extra) -> dict:
    """The ``bundle.json`` of a model fitted on ``split`` (saved at ``split_url``).

    It records which split the model learned from, so that ``musicrec evaluate`` can refuse
    another one (:func:`check_split`): the split's folder, store, protocol and item level,
    whether validation rows were part of the fit (``include_valid``: asked for, and the split
    has some), and the number and
    :func:`~musicrec.preprocess.splitset.fingerprint` of the rows it was fitted on (train, or
    train + valid). ``extra`` keys are added as given.
    """
    meta = {
        **_split_record(split, split_url, include_valid),
        # what serving needs of the split, so that the folder stands alone: the store, resolved
        # now (a relative path means nothing on another machine), and when the data was cut
        "store_url": split_store_url(split_url), "data_cut": data_cut_time(split_url),
    }
    if fit_s is not None:
        meta["fit_s"] = round(fit_s, 3)
    if params is not None:
        meta["params"] = params
    return {**meta, **extra}


def _split_record(split: Split, split_url: str, include_valid: bool) -> dict:
    """Which split and which of its rows a model learns from (what :func:`check_split` compares)."""
    from musicrec.train.fit import training_events

    events = training_events(split, include_valid)
    return {
        "split": fsio.absolute(split_url), "store": split.meta.get("store"),
        "protocol": split.meta.get("protocol"), "item_level": split.meta.get("item_level", "artist"),
        "include_valid": bool(include_valid and split.valid is not None and split.valid.height > 0),
        "train_rows": events.height, "train_fingerprint": fingerprint(events),
    }


def _describe(record: dict) -> str:
    parts = "train + valid" if record.get("include_valid") else "train"
    rows = record.get("train_rows")
    return (f"{record.get('split')} ({record.get('protocol')} split of store {record.get('store')}, "
            f"{record.get('item_level')} level, {parts} {rows if rows is None else f'{rows:,}'} rows, "
            f"fingerprint {str(record.get('train_fingerprint'))[:12]})")


def check_split(meta: dict, split: Split, split_url: str) -> bool:
    """Check that ``split`` is the one a model folder's ``meta`` (``bundle.json``) was fitted on.

    Compares the fingerprint of the split's training rows (train, or train + valid when the
    model was fitted on both) with the recorded one, so a moved or copied split still matches
    and a split re-made with other parameters does not. Raises MusicrecError naming both
    splits when they differ; returns False when ``meta`` records no fingerprint (a folder made
    before musicrec recorded it: nothing to check), True when they match.
    """
    if not meta.get("train_fingerprint"):
        return False
    other = _split_record(split, split_url, bool(meta.get("include_valid")))
    if other["train_fingerprint"] == meta["train_fingerprint"]:
        return True
    raise MusicrecError(f"the model was trained on {_describe(meta)}, not on {_describe(other)}; evaluate it on "
                        "the split it was trained on, or pass --allow-other-split to score it on another one")


def split_store_url(split_dir: str | None) -> str | None:
    """The store a split was made from (its meta.json ``store``), or None when unknown or gone.

    A relative store path is tried from the working directory, then from the split's parent
    folder (where ``musicrec split`` usually ran).
    """
    meta_path = os.path.join(split_dir or "", "meta.json")
    if not split_dir or not os.path.isfile(meta_path):
        return None
    with open(meta_path, encoding="utf-8") as fh:
        url = json.load(fh).get("store")
    if not url:
        return None
    if "://" in url:
        return url
    from musicrec.store import Store

    for base in (os.getcwd(), os.path.dirname(os.path.abspath(split_dir))):
        path = os.path.join(base, url)
        if os.path.isdir(path) and Store(path).exists():
            return os.path.abspath(path)
    return None


def data_cut_time(split_dir: str | None) -> float:
    """When the split's training data was written (Unix seconds; 0 when unknown): plays posted
    before it may already be in the model."""
    path = os.path.join(split_dir or "", "train.parquet")
    return os.path.getmtime(path) if split_dir and os.path.isfile(path) else 0.0


def stored_store_url(meta: dict, split_dir: str | None = None) -> str | None:
    """The store a model folder's ``meta`` was trained from, when it still exists: the URL
    recorded at training (``store_url``), else (older folders) the one its split names."""
    from musicrec.store import Store

    url = meta.get("store_url")
    if url and ("://" in url or os.path.isdir(url)) and Store(url).exists():
        return url
    return split_store_url(split_dir) if not url else None


#: the types of ``bundle.json``'s known keys (each may also be null)
META_TYPES = {"split": str, "store": (str, int), "protocol": str, "item_level": str, "include_valid": bool,
              "train_rows": int, "train_fingerprint": str, "fit_s": (int, float), "params": dict,
              "store_url": str, "data_cut": (int, float)}


def read_meta(path: str) -> dict:
    """The ``bundle.json`` of model folder ``path`` ({} when it has none); MusicrecError naming the
    file when it is unreadable, not a JSON object, or a known key has the wrong type."""
    url = fsio.join(os.fspath(path), "bundle.json")
    try:
        meta = fsio.read_json(url) if fsio.isfile(url) else {}
    except (OSError, ValueError, RecursionError) as exc:
        raise MusicrecError(f"{url}: unreadable ({fsio.first_line(exc)})") from None
    if not isinstance(meta, dict):
        raise MusicrecError(f"{url}: not a JSON object")
    for key, types in META_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and types is not bool)):
            raise MusicrecError(f"{url}: {key} has the wrong type ({type(value).__name__})")
    if meta.get("item_level", "artist") not in ("artist", "track"):
        raise MusicrecError(f"{url}: item_level must be artist or track, got {meta['item_level']!r}")
    return meta


def _read_table(path: str, columns: dict, key: str) -> pl.DataFrame | None:
    """``fsio.read_parquet_if_any`` of a folder's items/users/tags file, conformed to ``columns``; MusicrecError
    naming the file when the ``key`` column is missing or a column cannot take its type."""
    df = fsio.read_parquet_if_any(path)
    if df is None:
        return None
    if key not in df.columns:
        raise MusicrecError(f"{path}: no {key} column (has {', '.join(df.columns) or 'none'})")
    try:
        return schema.conform(df, columns)
    except pl.exceptions.PolarsError as exc:
        text = str(exc).strip().splitlines()
        raise MusicrecError(f"{path}: a column has the wrong type ({text[0] if text else type(exc).__name__})") from None


def nothing_to_recommend(who: str, n_items: int, n_seen: int, exclude_seen: bool, model: str) -> MusicrecError:
    """The error for a request that leaves no item to recommend, saying why.

    ``who`` names the request ("listener '2'", "these seeds"); ``n_seen`` is how many distinct
    items of the ``n_items`` the model knows are in its history.
    """
    if exclude_seen and n_seen >= n_items:
        return MusicrecError(f"nothing to recommend for {who}: their history already holds all {n_items} items "
                             "this model knows, and played items are left out (--include-seen / "
                             "exclude_seen=false keeps them)")
    left = n_items - n_seen if exclude_seen else n_items
    return MusicrecError(f"nothing to recommend for {who}: model {model} gives no finite score to any of the "
                         f"{left} items it could recommend (their history tells it nothing)")


def _split_item_tags(meta: dict) -> pl.DataFrame:
    """The item tags of the split named in ``meta["split"]`` (empty when it is gone)."""
    if meta.get("split"):
        try:
            tags = fsio.read_parquet_if_any(fsio.join(str(meta["split"]), "item_tags.parquet"))
        except MusicrecError:   # the split moved or went away: tags are optional
            tags = None
        if tags is not None:
            return tags
    return schema.empty(schema.SPLIT_ITEM_TAGS)


def model_version(model_dir: str) -> str:
    """A short fingerprint of a model folder: its config and the size/time of its state."""
    h = hashlib.sha256()
    # network.json: an ONNX export (``musicrec compress export``) changes what scores
    for name in ("config.json", "bundle.json", "network.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                h.update(fh.read())
    state = os.path.join(model_dir, "state.npz")
    if os.path.isfile(state):
        st = os.stat(state)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


class ModelBundle:
    """A fitted model plus its item names, item tags and user ids.

    ``item_tags`` (``schema.SPLIT_ITEM_TAGS``) defaults to the tags of the split in
    ``meta["split"]``, so a bundle saved by ``musicrec train`` carries them.
    """

    def __init__(self, model: Recommender, items: pl.DataFrame, users: pl.DataFrame, meta: dict | None = None,
                 item_tags: pl.DataFrame | None = None):
        self.model = model
        self.meta = meta or {}
        train = model.train_
        items = schema.conform(items, schema.SPLIT_ITEMS)
        users = schema.conform(users, schema.SPLIT_USERS)
        # align item rows with model indices; unknown names fall back to the id
        ids = pl.DataFrame({"item_id": train.items.ids})
        self.items = ids.join(items.unique("item_id"), on="item_id", how="left").with_columns(
            pl.coalesce(pl.col("name"), pl.col("source_id"), pl.col("item_id").cast(pl.String)).alias("name"))
        self.users = pl.DataFrame({"user_id": train.users.ids}).join(users.unique("user_id"), on="user_id", how="left")
        self.item_level = self.meta.get("item_level", "artist")
        names = self.items["name"].to_list()
        artists = self.items["artist_name"].to_list()
        self.display = [n if (self.item_level != "track" or not a) else f"{n} — {a}" for n, a in zip(names, artists)]
        popularity = np.diff(train.matrix.tocsc().indptr)
        self.names = NameIndex(names, self.items["source_id"].to_list(), popularity)
        self._user_by_source = {s: i for i, s in enumerate(self.users["source_id"].to_list()) if s is not None}
        tags = _split_item_tags(self.meta) if item_tags is None else item_tags
        self.item_tags = schema.conform(tags, schema.SPLIT_ITEM_TAGS).join(ids, on="item_id", how="semi")
        self.popularity = popularity
        self._tag_index = None        # (TagVocab, TagMatrix over the model's items), built on first use

    # ------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write the model and its names, tags and meta into folder ``path`` (local or fsspec URL)."""
        path = os.fspath(path)
        self.model.save(path)
        fsio.write_parquet(self.items.select(list(schema.SPLIT_ITEMS)), fsio.join(path, "items.parquet"))
        fsio.write_parquet(self.users.select(list(schema.SPLIT_USERS)), fsio.join(path, "users.parquet"))
        fsio.write_parquet(self.item_tags, fsio.join(path, "item_tags.parquet"))
        fsio.atomic_write_json(fsio.join(path, "bundle.json"), self.meta)

    @classmethod
    def load(cls, path: str) -> "ModelBundle":
        """Read a model folder (local path or fsspec URL); MusicrecError when it is missing or unreadable."""
        from musicrec.models.registry import load_model

        path = os.fspath(path)
        try:
            # object stores have no folders: a model folder is there when its config.json is
            fs, root = fsio.filesystem(path)
            found = fs.isdir(root) if fsio.is_local(path) else fs.exists(root.rstrip("/") + "/config.json")
        except (OSError, ValueError) as exc:
            text = str(exc).strip().splitlines()
            raise MusicrecError(f"{path}: cannot read the model folder ({text[0] if text else type(exc).__name__})") from None
        if not found:
            raise MusicrecError(f"{path}: no such model folder")
        model = load_model(path)
        items = _read_table(fsio.join(path, "items.parquet"), schema.SPLIT_ITEMS, "item_id")
        users = _read_table(fsio.join(path, "users.parquet"), schema.SPLIT_USERS, "user_id")
        meta = read_meta(path)
        # an older folder without item_tags.parquet falls back to the split's tags
        tags = _read_table(fsio.join(path, "item_tags.parquet"), schema.SPLIT_ITEM_TAGS, "item_id")
        return cls(model, schema.empty(schema.SPLIT_ITEMS) if items is None else items,
                   schema.empty(schema.SPLIT_USERS) if users is None else users, meta, item_tags=tags)

    # ------------------------------------------------------------ resolving
    def user_index(self, user: str) -> int:
        """Training index of a user given by original id (e.g. "2") or store id."""
        if user in self._user_by_source:
            return self._user_by_source[user]
        if user.lstrip("-").isascii() and user.lstrip("-").isdigit() and abs(int(user)) < 2**63:
            u = int(self.model.train_.users.index([int(user)])[0])
            if u >= 0:
                return u
        raise MusicrecError(f"unknown user {user!r}: not in this model's training data")

    # ------------------------------------------------------------ what the answers are made of
    def tag_seeds(self, tags: list[str], n: int = 5) -> tuple[np.ndarray, list[str]]:
        """The ``n`` items that best stand for ``tags`` ("shoegaze", "post rock"; any spelling):
        item indices (n,), best first, and the matched tag names.

        An item's weight is the sum of its TF-IDF weights for the tags (cleaned vocabulary of the
        model's items, ``features.tags``) times log(1 + listeners), so well-known artists of the
        genre come first.
        """
        from musicrec.features.tags import item_tag_vectors

        if not tags:
            raise MusicrecError("give at least one tag")
        if self._tag_index is None:
            self._tag_index = item_tag_vectors(self.item_tags, self.model.train_.items.ids)
            if self._tag_index is None:
                raise MusicrecError("this model has no item tags to onboard from")
        vocab, index = self._tag_index
        cols = vocab.lookup(tags)
        unknown = [t for t, c in zip(tags, cols) if c < 0]
        if unknown:
            raise MusicrecError(f"unknown tag(s) {', '.join(map(repr, unknown))}; known tags include: "
                                f"{', '.join(vocab.names[:8])}")
        weight = np.asarray(index.matrix[:, cols].sum(axis=1)).ravel() * np.log1p(self.popularity)
        order = np.argsort(-weight, kind="stable")
        order = order[weight[order] > 0][:n]
        return order.astype(np.int64), [vocab.names[c] for c in cols]

    def similar_reasons(self, i: int, idx: np.ndarray) -> list[str]:
        """Why each item of ``idx`` is like item ``i``, in terms a listener can check: the training
        listeners who played both, and up to two (cleaned) tags both carry."""
        from musicrec.features.tags import item_tag_vectors

        m = self.model.train_.matrix
        listeners = m[:, [i]].nonzero()[0]
        common = np.asarray((m[listeners][:, idx] > 0).sum(axis=0)).ravel()
        if self._tag_index is None:
            self._tag_index = item_tag_vectors(self.item_tags, self.model.train_.items.ids)
        reasons = []
        for j, n in zip(idx, common):
            parts = [f"{n:,} listener{'s' if n != 1 else ''} in common"] if n else []
            if self._tag_index is not None:
                vocab, tags = self._tag_index
                a, b = tags.matrix[i], tags.matrix[int(j)]
                both = a.multiply(b).tocoo()
                top = both.col[np.argsort(-both.data, kind="stable")][:2]
                if len(top):
                    parts.append("both tagged " + ", ".join(vocab.names[c] for c in top))
            reasons.append("; ".join(parts) or "no listeners or tags in common")
        return reasons


def train_model(name: str, split: str, out: str, params: dict | None = None, include_valid: bool = False,
                resume: bool = False, progress: bool = False, checkpoint_dir: str | None = "auto") -> dict:
    """Fit registry model ``name`` on the split folder ``split`` in this process's rank of the
    running process group (alone when there is none) and write the model folder ``out`` from
    rank 0. Returns a JSON-able summary (fit seconds, best epoch, history) on every rank. What
    every launcher's workers run (``train.distributed``).

    ``checkpoint_dir`` "auto" is ``out/checkpoints`` for a local ``out`` and none for a URL
    (checkpoints are local files; resuming under DDP needs them where every rank reads them).
    """
    from musicrec.models.neural import NeuralRecommender
    from musicrec.models.registry import model_class
    from musicrec.train import distributed
    from musicrec.train.fit import fit_model

    if distributed.world_size() > 1 and not issubclass(model_class(name), NeuralRecommender):
        raise MusicrecError(f"{name} is not a deep model: only PyTorch models train data-parallel (use --nproc 1)")
    if checkpoint_dir == "auto":
        checkpoint_dir = distributed.default_checkpoints(out)
    sp = Split.load(split)
    fitted, fit_s = fit_model(name, sp, params, include_valid=include_valid, checkpoint_dir=checkpoint_dir,
                              resume=resume, progress=progress)
    if distributed.rank() == 0:
        ModelBundle(fitted, sp.items, sp.users, bundle_meta(sp, split, include_valid, fit_s=fit_s,
                                                            params=fitted.get_params(),
                                                            world_size=distributed.world_size())).save(out)
    return {"fit_s": round(fit_s, 3), "best_epoch": getattr(fitted, "best_epoch_", None),
            "history": getattr(fitted, "history_", []), "n_users": fitted.train_.n_users,
            "n_items": fitted.train_.n_items, "world_size": distributed.world_size()}
