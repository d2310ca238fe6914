"""Paired significance tests between two models evaluated on the same users or prefixes."""

from __future__ import annotations

import warnings

import numpy as np

from musicrec import MusicrecError
from musicrec.evaluate.protocols import EvalResult


def id_columns(result: EvalResult) -> list[str]:
    """Columns of ``result.per_user`` that identify a row (``info["id_columns"]``)."""
    cols = result.info.get("id_columns")
    if not cols:
        cols = ["session_id", "position"] if "position" in result.per_user.columns else ["user_id"]
    return list(cols)


def paired_test(a: EvalResult, b: EvalResult, metric: str = "ndcg@10") -> dict:
    """Compare ``metric`` of two results row by row.

    Rows are aligned on the id columns (inner join: only users/prefixes both evaluated);
    rows where either value is NaN (e.g. diversity of a list with < 2 tagged items) are
    dropped. The two-sided paired t-test (``scipy.stats.ttest_rel``) gives ``p_value``;
    the Wilcoxon signed-rank test, which does not assume normal differences (per-user
    metrics are far from normal: many zeros), gives ``p_wilcoxon``.

    Returns
    -------
    dict
        ``metric, model_a, model_b, mean_a, mean_b, diff (= mean_a - mean_b), p_value,
        p_wilcoxon, test, n``. p-values are 1.0 when every difference is 0 and NaN when
        n < 2.
    """
    ids = id_columns(a)
    if id_columns(b) != ids:
        raise MusicrecError(f"cannot pair {a.model} and {b.model}: different protocols ({ids} vs {id_columns(b)})")
    for r in (a, b):
        if metric not in r.per_user.columns:
            per_row = [c for c in r.per_user.columns if "@" in c]
            raise MusicrecError(f"{r.model} has no per-row metric {metric!r}; available: {', '.join(per_row)}")
    joined = a.per_user.select(*ids, metric).join(b.per_user.select(*ids, metric), on=ids, how="inner",
                                                  suffix="_b")
    x = joined[metric].to_numpy().astype(np.float64)
    y = joined[f"{metric}_b"].to_numpy().astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    diff = x - y
    p_t = p_w = float("nan")
    if n >= 2 and np.all(diff == 0):
        p_t = p_w = 1.0  # identical results: no evidence of any difference (scipy would give NaN or raise)
    elif n >= 2:
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_t = float(stats.ttest_rel(x, y).pvalue)
            try:
                p_w = float(stats.wilcoxon(x, y).pvalue)
            except ValueError:  # scipy refuses some degenerate inputs
                p_w = float("nan")
    return {
        "metric": metric, "model_a": a.model, "model_b": b.model,
        "mean_a": float(x.mean()) if n else float("nan"),
        "mean_b": float(y.mean()) if n else float("nan"),
        "diff": float(diff.mean()) if n else float("nan"),
        "p_value": p_t, "p_wilcoxon": p_w, "test": "paired two-sided t-test (scipy.stats.ttest_rel)", "n": int(n),
    }
