"""Two-tower retrieval model with a content path, for warm and cold-start items and users.

Item tower: ``v_i = m_i * e_i + f(c_i)``, with ``e_i`` a learned id embedding, ``c_i`` the item's
content vector (TF-IDF over cleaned listener tags, given to ``fit`` as
``content``) and ``f`` a linear map or a one-hidden-layer MLP. ``m_i`` is 1 for items with
training plays and 0 otherwise, so an item nobody has played is placed by its content alone.
While training, ``m_i`` is also zeroed at random (``id_dropout``) so the content path has to
carry the score by itself; that is what lets it rank cold items.

User tower: ``q = W * mean(v_j for j in history)``, the same for a known user, a new listener's
seed artists or a held-out user: nothing per user is learned, so cold users need no refit.
Score: ``q . v_i + b_i`` (the bias ``b_i`` is one more output of the item tower, so a cold
item's popularity prior comes from its content too). Training examples are the (user, item)
pairs of the training matrix: the user's other items (each dropped with probability
``history_dropout``, so short histories such as three seeds are seen too) must rank the item
against in-batch and popularity-sampled negatives (sampled softmax with the logQ correction,
Yi et al., RecSys 2019).

Without content (no ``content`` given, e.g. data without tags) the item tower is the id
embedding alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from musicrec import MusicrecError
from musicrec.features.interactions import Histories, Interactions
from musicrec.models.neural import NeuralRecommender, TrainingConfig


# ---------------------------------------------------------------- network
def _torch_sparse(matrix: sp.spmatrix) -> torch.Tensor:
    coo = sp.coo_matrix(matrix, dtype=np.float32)
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(coo.data), coo.shape, check_invariants=False).coalesce()


class TwoTowerNet(nn.Module):
    """Item vectors (I, D) from ids and content; queries (B, D) from weighted history rows."""

    def __init__(self, n_items: int, dim: int, warm: np.ndarray, content: sp.spmatrix | None, hidden: int):
        super().__init__()
        # column D is the item's bias (popularity prior); queries end in a constant 1
        self.item_emb = nn.Embedding(n_items, dim + 1)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        self.dim = dim
        self.query = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.query.weight)  # start as "mean of the history's item vectors"
        # 1 for items with training plays; not saved (rebuilt from the training matrix)
        self.register_buffer("warm", torch.as_tensor(warm, dtype=torch.float32), persistent=False)
        self.has_content = content is not None
        self.register_buffer("content", _torch_sparse(content) if self.has_content else None, persistent=False)
        if self.has_content:
            self.project_in = nn.Linear(content.shape[1], hidden or dim + 1)
            self.project_out = nn.Linear(hidden, dim + 1) if hidden else None
        self.id_dropout = 0.0

    def item_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(I, D + 1): the item tower of every item, its bias last; with ``rows`` (R,) item
        indices, the tower of those items only (R, D + 1) (scoring one listener needs their
        history's items, not the whole catalogue)."""
        mask = self.warm if rows is None else self.warm[rows]
        if self.training and self.id_dropout > 0 and self.has_content:
            mask = mask * (torch.rand_like(mask) >= self.id_dropout).float()
        v = (self.item_emb.weight if rows is None else self.item_emb(rows)) * mask[:, None]
        if self.has_content:
            content = self.content if rows is None else self.content.index_select(0, rows)
            # the content matrix is sparse: multiply it into the first layer's weights
            h = torch.sparse.mm(content, self.project_in.weight.T) + self.project_in.bias
            if self.project_out is not None:
                h = self.project_out(torch.relu(h))
            v = v + h
        return v

    def queries(self, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, I) sparse or dense rows summing to 1 (a mean over the history), (I, D + 1) item
        vectors -> (B, D + 1) queries ending in 1."""
        v = items[:, : self.dim]
        pooled = torch.sparse.mm(rows, v) if rows.is_sparse else rows @ v
        q = self.query(pooled)
        return torch.cat([q, q.new_ones(len(q), 1)], dim=1)


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class TwoTowerConfig(TrainingConfig):
    embedding_dim: int = 64        # D: size of item and query vectors
    content_hidden: int = 128      # hidden units of the content MLP; 0 = a linear projection
    id_dropout: float = 0.5        # chance an item's id embedding is dropped in a training step
    history_dropout: float = 0.3   # chance each other history item is left out of a training query
    n_negatives: int = 256         # popularity-sampled negatives per batch (plus in-batch ones)
    batch_size: int = 512          # (user, item) pairs per step
    learning_rate: float = 3e-3
    epochs: int = 20
    patience: int = 3


class TwoTower(NeuralRecommender):
    """Two-tower retrieval model (ids + tag content). Hyperparameters: see ``TwoTowerConfig``."""

    name = "two-tower"
    #: ``fit(content=...)`` takes the items' tag vectors (``train.fit`` passes the split's)
    uses_content = True

    config = TwoTowerConfig

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "embedding_dim": trial.suggest_categorical("embedding_dim", [32, 64, 128]),
            "id_dropout": trial.suggest_float("id_dropout", 0.0, 0.8),
            "history_dropout": trial.suggest_float("history_dropout", 0.0, 0.6),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
        }

    def _validate(self) -> None:
        super()._validate()
        self._check_int("embedding_dim", 1)
        self._check_int("content_hidden", 0)
        self._check_number("id_dropout", low=0, high=0.95)
        self._check_number("history_dropout", low=0, high=0.95)
        self._check_int("n_negatives", 0)

    def _build_net(self, n_items: int, n_users: int) -> TwoTowerNet:
        content = getattr(self, "content_", None)
        if content is not None and content.shape[0] != n_items:
            raise MusicrecError(f"{self.name}: item content has {content.shape[0]} rows, the catalogue {n_items} items")
        warm = np.diff(sp.csc_matrix(self.train_.matrix).indptr) > 0
        net = TwoTowerNet(n_items, self.embedding_dim, warm, content, self.content_hidden)
        net.id_dropout = float(self.id_dropout)
        return net

    # ------------------------------------------------------------ the task
    def _fit(self, train: Interactions) -> None:
        try:
            super()._fit(train)
        finally:
            self._rows = None

    def _training_data(self, train: Interactions) -> dict:
        rows = sp.csr_matrix(train.matrix, dtype=np.float32, copy=True)   # binarised below, not the caller's
        rows.data[:] = 1.0
        self._rows = rows
        coo = rows.tocoo()
        pop = np.asarray(rows.sum(axis=0)).ravel()
        # damped popularity over played items only: an unplayed (cold) item as a negative would
        # teach the content path that cold items are bad
        probs = np.where(pop > 0, np.power(pop, 0.75), 0.0)
        self._neg_probs = torch.tensor(probs / probs.sum(), dtype=torch.float32)
        # logQ correction (Yi et al. 2019): candidates are drawn roughly by popularity, so without
        # it the softmax under-scores popular items; subtract the log of their training frequency
        self._log_q = torch.tensor(np.log(np.maximum(pop, 1.0) / pop.sum()), dtype=torch.float32)
        # a torch generator, so checkpoints save it and a resumed run drops the same items
        self._hist_sampler = torch.Generator(device="cpu").manual_seed(self.seed + 2)
        return {"user": torch.from_numpy(coo.row.astype(np.int64)), "item": torch.from_numpy(coo.col.astype(np.int64))}

    def _train_rows(self, users: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """(B, I) sparse mean-rows over each user's other items, with history dropout."""
        sub = self._rows[users].tocoo()
        keep = sub.col != targets[sub.row]
        if self.history_dropout > 0:
            keep &= torch.rand(len(sub.col), generator=self._hist_sampler).numpy() >= self.history_dropout
        r, c = sub.row[keep], sub.col[keep]
        counts = np.bincount(r, minlength=len(users)).astype(np.float32)
        vals = 1.0 / counts[r]
        return _torch_sparse(sp.coo_matrix((vals, (r, c)), shape=(len(users), self._rows.shape[1])))

    def _loss(self, net, batch: dict):
        users, targets = batch["user"], batch["item"]
        t_np = targets.cpu().numpy()
        rows = self._train_rows(users.cpu().numpy(), t_np).to(targets.device)
        items = net.item_vectors()
        q = net.queries(rows, items)
        sampled = (torch.multinomial(self._neg_probs, self.n_negatives, replacement=True, generator=self._sampler)
                   if self.n_negatives > 0 else torch.zeros(0, dtype=torch.int64)).to(targets.device)
        cands, inverse = torch.unique(torch.cat([targets, sampled]), return_inverse=True)
        logits = q @ items[cands].T - self._log_q.to(q.device)[cands]
        return F.cross_entropy(logits, inverse[: len(targets)])

    # ------------------------------------------------------------ scoring
    def _queries(self, histories: Histories, batch_size: int, items=None):
        """Queries (b, D + 1): the mapped mean of each history's item vectors (zero for an empty
        one). Without ``items`` only the towers of the batch's own items are computed (for one
        listener: their history), not the whole catalogue's."""
        m = sp.csr_matrix(histories.matrix)
        for lo in range(0, m.shape[0], batch_size):
            block = m[lo:lo + batch_size]
            counts = np.diff(block.indptr)
            r = np.repeat(np.arange(block.shape[0]), counts)
            if items is None:
                cols, c = np.unique(block.indices, return_inverse=True)
                vectors = self.net_.item_vectors(torch.from_numpy(cols.astype(np.int64)).to(self.device_))
            else:
                c, vectors = block.indices, items
            mean = sp.coo_matrix(((1.0 / counts[r]).astype(np.float32), (r, c)), shape=(block.shape[0], len(vectors)))
            yield lo, self.net_.queries(_torch_sparse(mean).to(self.device_), vectors), None

    def _items(self) -> torch.Tensor:
        return self.net_.item_vectors()

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of item-tower vectors, (B, I)."""
        with torch.inference_mode():
            emb = F.normalize(self.net_.item_vectors(), dim=1)
            return (emb[torch.as_tensor(items)] @ emb.T).numpy().astype(np.float32)

    # ------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        content = getattr(self, "content_", None)
        if content is not None:
            state.update({"content.data": content.data, "content.indices": content.indices,
                          "content.indptr": content.indptr, "content.shape": np.array(content.shape, np.int64)})
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; the content matrix is checked (one row per item, indices in
        # range) and its width must be the saved first layer's, so building the network allocates
        # no more than the file holds
        if "content.shape" in arrays:
            n_rows, n_cols = (int(s) for s in arrays.array("content.shape", "i", shape=(2,)))
            if n_rows != self.train_.n_items:
                raise arrays.fail(f"content.shape has {n_rows} rows, interactions.npz {self.train_.n_items} items")
            weight = arrays.array("net.project_in.weight", "f", ndim=2)
            if n_cols != weight.shape[1]:
                raise arrays.fail(f"content.shape has {n_cols} columns, net.project_in.weight {weight.shape[1]}")
            self.content_ = arrays.csr("content.data", "content.indices", "content.indptr", (n_rows, n_cols))
        super()._set_state(arrays)
