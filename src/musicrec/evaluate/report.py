"""Reports of one or more ``EvalResult``s: Markdown, JSON, a metric-vs-K plot, per-user Parquet.

Layout written by ``write_report(results, out_dir)``::

    report.md            ranked metric table, significance of the best model vs each other, run info
    metrics.json         {model: {"metrics", "model", "info"}}
    metric_vs_k.png      one line per model for two headline metrics against K
    per_user/<model>.parquet

Every file is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import re

from musicrec import MusicrecError
from musicrec.evaluate.protocols import BEYOND_METRICS, EvalResult, _plain
from musicrec.evaluate.stats import paired_test

#: headline metrics per protocol: what the plot and the CLI table show first
HEADLINE = {"user": ("ndcg", "recall", "precision", "map"), "session": ("hitrate", "mrr", "ndcg")}
#: one-line definitions printed above the beyond-accuracy table
BEYOND_LEGEND = {
    "coverage": "`coverage`: share of the catalogue recommended to anyone",
    "novelty": "`novelty`: mean self-information (bits) of recommended items",
    "arp": "`arp`: mean share of training users who played them (popularity bias)",
    "diversity": "`diversity`: mean pairwise cosine distance of their tag vectors",
}
#: (metric, fallback name) of the significance table per protocol
SIGNIFICANCE = {"user": ("ndcg@10", "ndcg"), "session": ("mrr@20", "mrr")}


# ---------------------------------------------------------------- helpers
def _protocol(results: list[EvalResult]) -> str:
    if not results:
        raise MusicrecError("no evaluation results to report")
    protocols = {r.info.get("protocol", "user") for r in results}
    if len(protocols) > 1:
        raise MusicrecError(f"cannot report user and session protocols together: {sorted(protocols)}")
    return protocols.pop()


def _ks(results: list[EvalResult]) -> list[int]:
    ks = sorted({int(k) for r in results for k in r.info.get("ks", [])})
    return ks or sorted({int(key.split("@")[1]) for r in results for key in r.metrics})


def _first_key(results: list[EvalResult], name: str) -> str | None:
    """The metric ``name@k`` with the smallest k that any result has."""
    keys = [key for r in results for key in r.metrics if key.split("@")[0] == name]
    return min(keys, key=lambda key: int(key.split("@")[1])) if keys else None


def rank_results(results: list[EvalResult]) -> list[EvalResult]:
    """Results sorted best first by their first ndcg metric (e.g. ndcg@10); missing values last."""
    key = _first_key(results, "ndcg")
    if key is None:
        return list(results)
    return sorted(results, key=lambda r: -r.metrics.get(key, -math.inf))


def _metric_keys(results: list[EvalResult]) -> list[str]:
    """Union of the metric keys, in the order the results list them."""
    seen: dict[str, None] = {}
    for r in results:
        seen.update(dict.fromkeys(r.metrics))
    return list(seen)


def _unique(names: list[str], sep: str) -> list[str]:
    """``names`` with ``{sep}2``, ``{sep}3`` appended to repeats, so JSON keys and files do not clash."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}{sep}{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _fmt_seconds(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _write_json_obj(path: str, obj) -> None:
    _write_text(path, json.dumps(_plain(obj), indent=2) + "\n")


# ---------------------------------------------------------------- public
def results_to_markdown(results: list[EvalResult], metrics: list[str] | None = None) -> str:
    """A Markdown table, one row per model (best first), one column per metric (default: all)."""
    ranked = rank_results(results)
    keys = list(metrics) if metrics is not None else _metric_keys(ranked)
    rows = [[r.model] + [_fmt(r.metrics.get(key)) for key in keys] for r in ranked]
    return _md_table(["model"] + keys, rows)


def significance_markdown(results: list[EvalResult]) -> str:
    """Paired tests of the best model against each other one, as a Markdown table (empty for one model)."""
    ranked = rank_results(results)
    if len(ranked) < 2:
        return ""
    preferred, fallback = SIGNIFICANCE[_protocol(results)]
    metric = preferred if all(preferred in r.per_user.columns for r in ranked) else _first_key(ranked, fallback)
    best = ranked[0]
    rows = []
    for other in ranked[1:]:
        t = paired_test(best, other, metric)
        rows.append([other.model, _fmt(t["mean_a"]), _fmt(t["mean_b"]), f"{t['diff']:+.4f}",
                     _fmt_p(t["p_value"]), _fmt_p(t["p_wilcoxon"]), str(t["n"])])
    header = ["vs model", f"{best.model} {metric}", f"other {metric}", "diff", "p (paired t)", "p (Wilcoxon)", "n"]
    return (f"Best model **{best.model}** against each other model on `{metric}`, paired over the "
            "same users/prefixes (two-sided; not corrected for multiple comparisons).\n\n"
            + _md_table(header, rows))


def format_table(results: list[EvalResult], ks=None, metrics=None):
    """A ``rich.table.Table`` of the headline metrics (plus coverage and novelty) at each k, best model first.

    ``metrics`` (e.g. ["ndcg@10", "recall@20"]) picks the columns instead; a "fit s" column is
    added when results carry ``info["fit_s"]``.
    """
    from rich.table import Table

    protocol = _protocol(results)
    ks = sorted(ks) if ks else _ks(results)
    ranked = rank_results(results)
    if len(ranked) == 1 and not metrics:
        return _vertical_table(ranked[0], protocol)
    # compact by default so it fits an 80-column terminal: headline metrics at each k + coverage
    keys = [f"{n}@{k}" for n in HEADLINE[protocol][:2] for k in ks] + [f"coverage@{ks[0]}"]
    keys = list(metrics) if metrics else keys
    keys = [key for key in keys if any(key in r.metrics for r in ranked)]
    with_fit = any("fit_s" in r.info for r in ranked)
    table = Table(title=f"{protocol} protocol, full ranking")
    table.add_column("model", style="bold")
    for key in keys:
        table.add_column(key, justify="right")
    if with_fit:
        table.add_column("fit s", justify="right")
    for r in ranked:
        fit = [f"{r.info['fit_s']:.1f}" if "fit_s" in r.info else "–"] if with_fit else []
        table.add_row(r.model, *[_fmt(r.metrics.get(key)) for key in keys], *fit)
    return table


def _vertical_table(result: EvalResult, protocol: str):
    """One model: every metric on its own row."""
    from rich.table import Table

    table = Table(title=f"{result.model}: {protocol} protocol, full ranking")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, _fmt(value))
    return table


def write_json(result: EvalResult, path: str) -> None:
    """Write ``{"metrics": {...}, "model": ..., "info": {...}}`` to ``path`` (atomically)."""
    _write_json_obj(path, result.to_json())


def plot_metric_vs_k(results: list[EvalResult], path: str) -> None:
    """PNG with one panel per headline metric (ndcg, recall; hitrate, mrr for sessions), one line per model."""
    # Figure + Agg canvas directly: no pyplot, so no global backend switch in the caller's process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    protocol = _protocol(results)
    names = ("ndcg", "recall") if protocol == "user" else ("hitrate", "mrr")
    ks = _ks(results)
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for pos, name in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), pos)
        for r in rank_results(results):
            xs = [k for k in ks if f"{name}@{k}" in r.metrics]
            ax.plot(xs, [r.metrics[f"{name}@{k}"] for k in xs], marker="o", label=r.model)
        ax.set_xlabel("K (list length)")
        ax.set_ylabel(f"{name}@K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    fig.suptitle(f"{protocol} protocol: metric vs K")
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def write_report(results: list[EvalResult], out_dir: str, title: str = "musicrec evaluation",
                 extra_md: str = "") -> str:
    """Write report.md, metrics.json, metric_vs_k.png and per_user/<model>.parquet; return report.md's path."""
    protocol = _protocol(results)
    ranked = rank_results(results)
    keys = _unique([r.model for r in results], "#")
    stems = _unique([re.sub(r"[^A-Za-z0-9._-]+", "_", r.model) for r in results], "-")
    os.makedirs(os.path.join(out_dir, "per_user"), exist_ok=True)

    _write_json_obj(os.path.join(out_dir, "metrics.json"), {key: r.to_json() for key, r in zip(keys, results)})
    for stem, r in zip(stems, results):
        path = os.path.join(out_dir, "per_user", f"{stem}.parquet")
        tmp = f"{path}.tmp-{os.getpid()}"
        r.per_user.write_parquet(tmp)
        os.replace(tmp, path)
    plot_metric_vs_k(results, os.path.join(out_dir, "metric_vs_k.png"))

    first = ranked[0].info
    n_items = first.get("n_items", "?")
    if protocol == "user" and first.get("relevant", "reachable") == "all":
        scope = (f"{first.get('n_users', '?')} test users evaluated "
                 f"({first.get('n_users_unknown', 0)} unknown to training and "
                 f"{first.get('n_users_no_relevant', 0)} without a new held-out item skipped); every held-out "
                 f"item is relevant ({first.get('n_relevant_unreachable', 0)} of {first.get('n_relevant', '?')} "
                 "not in the training catalogue: never hit, still counted); "
                 f"{'training and validation' if first.get('on', 'test') == 'test' else 'training'} items "
                 f"{'excluded from' if first.get('exclude_seen', True) else 'kept in'} the ranking.")
    elif protocol == "user":
        scope = (f"{first.get('n_users', '?')} test users evaluated "
                 f"({first.get('n_users_unknown', 0)} unknown to training and "
                 f"{first.get('n_users_no_relevant', 0)} without a relevant catalogue item skipped); "
                 "only training-catalogue items relevant (--relevant reachable); training items "
                 f"{'excluded from' if first.get('exclude_seen', True) else 'kept in'} the ranking.")
    else:
        scope = (f"{first.get('n_prefixes', '?')} prefixes of {first.get('n_sessions', '?')} test sessions "
                 f"({first.get('n_sessions_too_short', 0)} sessions with < 2 catalogue items skipped); "
                 "items already in the session are not excluded.")
    run_rows = [[r.model, str(r.info.get("n_users", r.info.get("n_prefixes", "?"))),
                 _fmt_seconds(r.info.get("fit_s")), _fmt_seconds(r.info.get("eval_s"))] for r in ranked]
    parts = [
        f"# {title}", "",
        f"**Protocol:** {protocol}, evaluated on `{first.get('on', 'test')}`. Full ranking over all "
        f"{n_items} training items (no sampled negatives). {scope}", "",
    ]
    if extra_md:
        parts += [extra_md.strip(), ""]
    keys = _metric_keys(ranked)
    beyond_keys = [key for key in keys if key.split("@")[0] in BEYOND_METRICS]
    accuracy_keys = [key for key in keys if key not in beyond_keys]
    parts += ["## Accuracy", "", f"Mean over evaluated {'users' if protocol == 'user' else 'prefixes'}; "
              f"models sorted by `{_first_key(ranked, 'ndcg')}`, best first.", "",
              results_to_markdown(ranked, accuracy_keys), ""]
    if beyond_keys:
        present = {key.split("@")[0] for key in beyond_keys}
        legend = "; ".join(text for name, text in BEYOND_LEGEND.items() if name in present)
        parts += ["## Beyond accuracy", "", legend + ".", "", results_to_markdown(ranked, beyond_keys), ""]
    significance = significance_markdown(ranked)
    if significance:
        parts += ["## Significance", "", significance, ""]
    parts += ["## Metric vs K", "", "![metric vs K](metric_vs_k.png)", "",
              "## Runs", "", _md_table(["model", "evaluated", "fit (s)", "eval (s)"], run_rows), ""]
    report = os.path.join(out_dir, "report.md")
    _write_text(report, "\n".join(parts))
    return report
