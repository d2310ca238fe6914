"""Evaluation: pure metric functions, full-ranking protocols, significance tests and reports.

``evaluate(model, split)`` scores every item of the training catalogue for each test user
(or session prefix) and returns an ``EvalResult``; ``write_report`` turns several results
into Markdown, JSON, a plot and per-user Parquet files.
"""

from musicrec.evaluate.metrics import (
    METRIC_NAMES,
    average_precision_at_k,
    f1_at_k,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from musicrec.evaluate.protocols import EvalResult, evaluate
from musicrec.evaluate.report import format_table, results_to_markdown, write_json, write_report
from musicrec.evaluate.stats import paired_test

__all__ = [
    "METRIC_NAMES", "EvalResult", "average_precision_at_k", "evaluate", "f1_at_k", "format_table",
    "hit_rate_at_k", "mrr_at_k", "ndcg_at_k", "paired_test", "precision_at_k", "ranking_metrics",
    "recall_at_k", "results_to_markdown", "write_json", "write_report",
]
