"""Sequential rules, SR (Kamehkhosh et al. 2017; Ludewig & Jannach, UMUAI 2018).

A rule ``a -> b`` gains weight ``w(d)`` each time ``b`` follows ``a`` within ``steps``
positions of the same training session (d = distance, ``w(d) = 1/d`` by default). The
next item after a prefix is predicted from the rules of its last item(s). The rules are
one sparse I x I matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from musicrec.features.interactions import Histories, Interactions, csr_row_product, csr_rows
from musicrec.models.base import Recommender
from musicrec.models.itemknn import top_per_row
from musicrec.models.recently_played import popularity_fallback

# weight of a rule by the distance d >= 1 between its two items (as in session-rec)
WEIGHTINGS = {
    "div": lambda d: 1.0 / d,
    "same": lambda d: np.ones_like(d, dtype=np.float64),
    "linear": lambda d: np.maximum(1.0 - 0.1 * d, 0.0),
    "quadratic": lambda d: 1.0 / (d * d),
}


@dataclass(frozen=True)
class SRConfig:
    steps: int = 10           # largest distance between the two items of a rule
    weighting: str = "div"    # rule weight by distance: "div" 1/d, "same" 1, "linear" 1-d/10, "quadratic" 1/d^2
    pruning: int = 20         # strongest rules kept per antecedent item (0 = keep all)
    last_n: int = 1           # prefix items that vote, the k-th from the end with weight 1/k


def rule_matrix(train: Interactions, steps: int, weighting: str) -> sp.csr_matrix:
    """Rule weights (I, I): entry (a, b) sums ``w(d)`` over b following a at distance d <= steps."""
    items = train.session_items
    session = np.repeat(np.arange(train.n_sessions), np.diff(train.session_indptr))
    rows, cols, vals = [], [], []
    for d in range(1, steps + 1):
        same = session[:-d] == session[d:]
        rows.append(items[:-d][same])
        cols.append(items[d:][same])
        vals.append(np.full(int(same.sum()), WEIGHTINGS[weighting](np.float64(d))))
    n = train.n_items
    rules = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n), dtype=np.float64)
    rules.sum_duplicates()
    rules.eliminate_zeros()
    return rules.astype(np.float32)


class SequentialRules(Recommender):
    """Score of item b after a prefix = sum over its last ``last_n`` items a of rule(a, b) / k.

    Items no rule reaches rank below, by popularity. ``item_similarity`` uses the rules in
    both directions, so explanations read "often played next to ...".

    Parameters
    ----------
    steps : int > 0
    weighting : {"div", "same", "linear", "quadratic"}
    pruning : int >= 0
    last_n : int > 0
        See ``SRConfig``.
    """

    name = "sr"
    sequential = True

    config = SRConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna search space (tuned on validation data)."""
        return {"steps": trial.suggest_int("steps", 1, 15)}

    def _fit(self, train: Interactions) -> None:
        self._validate()
        rules = rule_matrix(train, int(self.steps), self.weighting)
        if self.pruning > 0:
            rules = top_per_row(rules, int(self.pruning))
        self._set_rules(rules, popularity_fallback(train))

    def _set_rules(self, rules: sp.csr_matrix, fallback: np.ndarray) -> None:
        self.rules_ = rules.tocsr()
        self.symmetric_ = (self.rules_ + self.rules_.T).tocsr()
        self.fallback_ = fallback

    def score(self, histories: Histories) -> np.ndarray:
        """Rule scores from the last items of each sequence, shape (B, I): the rules of the k-th
        most recent item weigh 1/k (an item's weights summed, most recent first)."""
        self._check_fitted()
        rules = self.rules_
        queries = []        # per history: its distinct last items (ascending) and their weights
        for seq in histories.sequences:
            last = np.asarray(seq, dtype=np.int64)[::-1][: int(self.last_n)]
            items, at = np.unique(last, return_inverse=True)
            weights = np.zeros(len(items), np.float32)
            np.add.at(weights, at, (1.0 / np.arange(1, len(last) + 1)).astype(np.float32))
            queries.append((items, weights))
        if len(queries) == 1:       # a served history
            votes = csr_row_product(*queries[0], rules)[None, :]
        else:
            indptr = np.zeros(len(queries) + 1, np.int64)
            np.cumsum([len(q[0]) for q in queries], out=indptr[1:])
            query = sp.csr_matrix((np.concatenate([q[1] for q in queries] + [np.zeros(0, np.float32)]),
                                   np.concatenate([q[0] for q in queries] + [np.zeros(0, np.int64)]), indptr),
                                  shape=(len(queries), rules.shape[0]))
            votes = (query @ rules).toarray()
        return np.where(votes > 0, votes, self.fallback_).astype(np.float32)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Rule weights between each item and every other, both directions summed, (B, I)."""
        return csr_rows(self.symmetric_, items).toarray()      # scipy's row indexing costs more than a request

    def _state(self) -> dict[str, np.ndarray]:
        r = self.rules_
        return {"data": r.data, "indices": r.indices, "indptr": r.indptr, "fallback": self.fallback_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # arrays: a validate.StateArrays; the CSR arrays checked (ranges, row pointer) before use
        n = self.train_.n_items
        self._set_rules(arrays.csr("data", "indices", "indptr", (n, n)), arrays.array("fallback", "f", shape=(n,)))

    def _validate(self) -> None:
        """Hyperparameter checks, run by ``_fit`` and on a loaded folder's parameters."""
        self._check_int("steps", 1)
        self._check_int("pruning", 0)
        self._check_int("last_n", 1)
        self._check_choice("weighting", WEIGHTINGS)
