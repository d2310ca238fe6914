"""Every deep model through the CLI on real data: tune -> train --config -> evaluate -> recommend.

Each command runs in its own process, so the model folder is loaded fresh from arrays + JSON
(no pickle). Models are tiny and train for one epoch: this checks the plumbing and that the
trained models rank held-out data better than chance, not their accuracy.
"""

import json
import os
import subprocess
import sys

import pytest

TINY = {
    "gru4rec": ["hidden_size=16", "loss=ce"],
    "sasrec": ["embedding_dim=16", "n_layers=1", "max_len=10"],
    "nextitnet": ["embedding_dim=16", "dilations=1,2", "max_len=10"],
    "caser": ["embedding_dim=16", "max_len=3", "n_h=4", "n_v=2"],
    "multvae": ["hidden_dims=[64]", "latent_dim=16"],
}


def musicrec(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "musicrec.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def splits(tmp_path_factory, shared_data):
    """A 30Music artist-level session split and a HetRec user-holdout split."""
    from musicrec.preprocess.split import make_split
    from musicrec.store import ingest_path

    base = tmp_path_factory.mktemp("deep-cli")
    ingest_path("30music", os.path.join(shared_data, "30music-200ks-test-slices"), str(base / "s30"))
    make_split(str(base / "s30"), "session-lastday", item_level="artist", out=str(base / "split30"))
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), str(base / "het"))
    make_split(str(base / "het"), "user-holdout", out=str(base / "splithet"), seed=0)
    return {"session": str(base / "split30"), "user": str(base / "splithet")}


@pytest.mark.parametrize("name", list(TINY))
def test_deep_model_tunes_trains_evaluates_and_recommends(name, splits, tmp_path):
    split = splits["user" if name == "multvae" else "session"]
    fixed = [a for p in TINY[name] + ["epochs=1", "batch_size=256"] for a in ("--param", p)]

    proc = musicrec("tune", name, "--split", split, "--trials", "2", "--out", str(tmp_path / "tune"), *fixed)
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert best["model"] == name and best["params"]["epochs"] == 1
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())["trials"]
    assert len(trials) == 2

    model = str(tmp_path / "model")
    proc = musicrec("train", name, "--split", split, "--config", str(tmp_path / "tune" / "best.json"),
                    "--include-valid", "--out", model, *fixed)
    assert proc.returncode == 0, proc.stderr
    files = {f for _, _, fs in os.walk(model) for f in fs}
    assert {"config.json", "state.npz", "bundle.json", "items.parquet"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))]

    out = str(tmp_path / "metrics.json")
    proc = musicrec("evaluate", model, "--split", split, "--k", "10", "20", "--json", out)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(open(out).read())["metrics"]
    # far above a random ranking over thousands of items (random HR@20 < 0.01)
    key = "recall@20" if name == "multvae" else "hitrate@20"
    assert metrics[key] > 0.05, metrics

    seeds = ["radiohead", "muse"] if name == "multvae" else ["artist 228054", "artist 5371"]
    proc = musicrec("recommend", model, *[a for s in seeds for a in ("--seed", s)], "-k", "5")
    assert proc.returncode == 0, proc.stderr
    assert "top 5" in proc.stdout and "Traceback" not in proc.stderr
