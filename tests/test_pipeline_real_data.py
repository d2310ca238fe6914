"""Integration tests on ../shared/data: the quickstart and the session pipeline, run as a user would.

Metrics here are computed on held-out test data, never on training data.
"""

import json
import os
import subprocess
import sys

import pytest


def musicrec(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "musicrec.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "160", **(env or {})}, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, shared_data):
    base = tmp_path_factory.mktemp("qs")
    proc = musicrec("quickstart", "--from", shared_data, "--out", str(base / "report"), "--trials", "3",
                    env={"MUSICREC_HOME": str(base / "home")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, proc


def test_quickstart_reports_ranked_models(quickstart):
    base, proc = quickstart
    # one progress line per tuning trial, for every tunable model
    for name in ("itemknn", "ease", "als", "bpr"):
        assert f"{name} trial 1/3:" in proc.stdout, proc.stdout[-2000:]
    report = base / "report"
    for name in ("report.md", "metrics.json", "metric_vs_k.png"):
        assert (report / name).stat().st_size > 0
    metrics = {m: r["metrics"] for m, r in json.loads((report / "metrics.json").read_text()).items()}
    assert set(metrics) == {"most-popular", "itemknn", "ease", "als", "bpr"}
    # tuned EASE must beat popularity clearly on held-out test data
    assert metrics["ease"]["ndcg@10"] > 2 * metrics["most-popular"]["ndcg@10"]
    assert metrics["als"]["ndcg@10"] > metrics["most-popular"]["ndcg@10"]
    assert "similar to " in proc.stdout and " you played" in proc.stdout    # the reasons the server gives
    assert "ndcg@10" in proc.stdout


def test_quickstart_model_serves_in_a_fresh_process(quickstart):
    base, _ = quickstart
    model = str(next((base / "report" / "models").iterdir()))
    proc = musicrec("recommend", model, "--user", "2", "-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    cards = json.loads(proc.stdout)
    assert len(cards) == 5 and all(c["reason"] for c in cards)
    proc = musicrec("recommend", model, "--seed", "radiohead", "--seed", "bjork", "-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert any("Radiohead" in c["reason"] for c in json.loads(proc.stdout))  # the reason names the seed
    proc = musicrec("similar", model, "the beatles")
    assert proc.returncode == 0, proc.stderr
    assert "similar to The Beatles" in proc.stdout and "in common" in proc.stdout


@pytest.mark.parametrize("args, fragment", [
    (["recommend", "MODEL", "--user", "no-such-user"], "unknown user"),
    (["similar", "MODEL", "zzzzqqqq xxx"], "unknown artist"),
    (["recommend", "MODEL"], "either --user"),
    (["recommend", "/nonexistent/model", "--user", "2"], "no such model folder"),
])
def test_user_mistakes_give_one_line_errors(quickstart, args, fragment):
    base, _ = quickstart
    model = str(next((base / "report" / "models").iterdir()))
    proc = musicrec(*[model if a == "MODEL" else a for a in args])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], proc.stderr


def test_30music_session_models_beat_popularity(tmp_path, shared_data):
    store, split = str(tmp_path / "store"), str(tmp_path / "split")
    assert musicrec("ingest", "30music", os.path.join(shared_data, "30music-200ks-test-slices"),
                    "--store", store).returncode == 0
    proc = musicrec("split", store, "--protocol", "session-lastday", "--out", split)
    assert proc.returncode == 0, proc.stderr
    scores = {}
    for name in ("most-popular", "sknn", "sr"):
        model = str(tmp_path / name)
        proc = musicrec("train", name, "--split", split, "--out", model, "--include-valid")
        assert proc.returncode == 0, proc.stderr
        out = str(tmp_path / f"{name}.json")
        proc = musicrec("evaluate", model, "--split", split, "--k", "10", "20", "--json", out)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(open(out).read())
        assert {"hitrate@10", "hitrate@20", "mrr@10", "mrr@20"} <= set(result["metrics"])
        scores[name] = result["metrics"]["mrr@20"]
    assert scores["sknn"] > 3 * scores["most-popular"]
    assert scores["sr"] > 3 * scores["most-popular"]
