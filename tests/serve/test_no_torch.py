"""Serving or evaluating a classic model never imports torch (about 1 s and 300 MB per process)."""

import json
import subprocess
import sys

import polars as pl
import pytest

PROBE = """
import json, sys
from starlette.testclient import TestClient
from musicrec.serve.app import create_app

folder, user = sys.argv[1], sys.argv[2]
with TestClient(create_app(folder), base_url="http://127.0.0.1") as client:
    recs = client.get(f"/v1/users/{user}/recommendations?k=5")
    similar = client.get(f"/v1/items/{recs.json()['items'][0]['item_id']}/similar?k=3")
print(json.dumps({"status": [recs.status_code, similar.status_code], "n": len(recs.json()["items"]),
                  "torch": "torch" in sys.modules}))
"""


@pytest.mark.integration     # its model folder is a fixture asked for by name
@pytest.mark.parametrize("model", ["ease", "als"])
def test_serving_a_classic_model_does_not_import_torch(model, request):
    folder = request.getfixturevalue(f"{model}_dir")
    user = pl.read_parquet(f"{folder}/users.parquet")["source_id"][0]
    out = subprocess.run([sys.executable, "-c", PROBE, folder, str(user)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == [200, 200] and got["n"] == 5
    assert got["torch"] is False


def test_the_probe_sees_torch_when_a_deep_model_is_served(gru_dir):
    # the same probe on GRU4Rec must report torch, or the check above proves nothing
    probe = PROBE.replace('client.get(f"/v1/users/{user}/recommendations?k=5")',
                          'client.post("/v1/recommendations", json={"recent_plays": [user], "k": 5})')
    item = pl.read_parquet(f"{gru_dir}/items.parquet")["item_id"][0]
    out = subprocess.run([sys.executable, "-c", probe, gru_dir, str(item)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["torch"] is True


def test_evaluating_a_classic_model_does_not_import_torch(ease_dir, hetrec):
    code = ("import sys\nfrom musicrec.cli.main import main\n"
            "try:\n    main(['evaluate', sys.argv[1], '--split', sys.argv[2], '--k', '10'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, ease_dir, hetrec["split"]], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "recall@10" in out.stdout and out.stdout.strip().splitlines()[-1] == "False"
