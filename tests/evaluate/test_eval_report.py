import json
import os

import polars as pl
import pytest
from eval_helpers import FixedScores, fitted

from musicrec import MusicrecError
from musicrec.evaluate import evaluate, format_table, results_to_markdown, write_json, write_report


@pytest.fixture
def two_results(user_split):
    good = evaluate(fitted(FixedScores(order=[101, 102, 104]), user_split), user_split, ks=(2, 4), name="good")
    bad = evaluate(fitted(FixedScores(order=[105, 103]), user_split), user_split, ks=(2, 4), name="bad")
    return [bad, good]


def test_write_report_files(two_results, tmp_path):
    out = tmp_path / "rep"
    path = write_report(two_results, str(out), title="Tiny eval", extra_md="Dataset: hand-made.")
    assert path == str(out / "report.md")
    md = (out / "report.md").read_text()
    assert md.startswith("# Tiny eval") and "Dataset: hand-made." in md
    assert "| model | precision@2 | precision@4 |" in md
    assert "## Beyond accuracy" in md and "| model | coverage@2 | coverage@4 | novelty@2 |" in md
    # ranked best first by ndcg@2, in the metric table and the significance table
    assert md.index("| good |") < md.index("| bad |")
    assert "## Significance" in md and "`ndcg@2`" in md  # ndcg@10 absent -> first ndcg metric
    png = (out / "metric_vs_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"good", "bad"}
    assert metrics["good"]["metrics"]["ndcg@2"] == pytest.approx(two_results[1].metrics["ndcg@2"])
    per_user = pl.read_parquet(out / "per_user" / "good.parquet")
    assert per_user.height == 3 and "ndcg@4" in per_user.columns
    leftovers = [f for _, _, files in os.walk(out) for f in files if ".tmp" in f]
    assert leftovers == []


def test_duplicate_names_do_not_overwrite(user_split, tmp_path):
    model = fitted(FixedScores(order=[101]), user_split)
    results = [evaluate(model, user_split, ks=(2,)), evaluate(model, user_split, ks=(2,))]
    write_report(results, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "per_user")) == ["fixed-2.parquet", "fixed.parquet"]
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {"fixed", "fixed#2"}


def test_session_report_uses_hitrate_and_mrr(session_split, tmp_path):
    a = evaluate(fitted(FixedScores(order=[101, 100, 102]), session_split), session_split, ks=(1, 3), name="a")
    b = evaluate(fitted(FixedScores(order=[102, 100, 101]), session_split), session_split, ks=(1, 3), name="b")
    md = open(write_report([a, b], str(tmp_path))).read()
    assert "`mrr@1`" in md and "4 prefixes of 2 test sessions" in md
    assert "hitrate@3" in md


def test_markdown_table_and_rich_table(two_results):
    md = results_to_markdown(two_results, metrics=["ndcg@2", "coverage@2"])
    lines = md.splitlines()
    assert lines[0] == "| model | ndcg@2 | coverage@2 |"
    assert lines[2].startswith("| good |") and len(lines) == 4
    table = format_table(two_results, ks=[2, 4])
    assert table.row_count == 2
    assert [c.header for c in table.columns][:3] == ["model", "ndcg@2", "ndcg@4"]


def test_write_json_shape(two_results, tmp_path):
    path = tmp_path / "r.json"
    write_json(two_results[1], str(path))
    data = json.loads(path.read_text())
    assert set(data) == {"metrics", "model", "info"} and data["model"] == "good"
    assert list(data["metrics"])[:2] == ["precision@2", "precision@4"]


def test_mixed_protocols_rejected(two_results, session_split):
    s = evaluate(fitted(FixedScores(order=[101]), session_split), session_split, ks=(2,))
    with pytest.raises(MusicrecError, match="protocols"):
        format_table([two_results[0], s])
