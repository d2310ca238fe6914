"""A training process killed with SIGKILL mid-run and resumed in a new process ends with the
same weights and history as an uninterrupted run (``resume_helper.py`` is the training)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from resume_helper import EPOCHS

pytest.importorskip("torch")
pytestmark = pytest.mark.slow     # training processes killed and resumed
HELPER = str(Path(__file__).with_name("resume_helper.py"))
KILL_AFTER = 2                  # kill once the checkpoint of this epoch exists


def checkpoint_epoch(directory: Path) -> int:
    try:
        return json.loads((directory / "checkpoint.json").read_text())["epoch"]
    except FileNotFoundError:
        return 0


def run_helper(*args: str) -> None:
    proc = subprocess.run([sys.executable, HELPER, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def load(out: Path) -> tuple[dict, dict]:
    with np.load(out / "weights.npz", allow_pickle=False) as npz:
        weights = {k: npz[k] for k in npz.files}
    return weights, json.loads((out / "result.json").read_text())


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    run_helper(str(tmp_path / "reference"), "-")          # uninterrupted, no checkpoints at all

    ckpt = tmp_path / "ckpt"
    with open(tmp_path / "stderr.txt", "w") as err:
        # --slow sleeps per batch so the kill lands inside a later epoch, not after the last
        proc = subprocess.Popen([sys.executable, HELPER, str(tmp_path / "killed"), str(ckpt), "--slow", "0.05"],
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 300
            while checkpoint_epoch(ckpt) < KILL_AFTER:
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_epoch(ckpt)
    assert KILL_AFTER <= killed_at < EPOCHS and not (tmp_path / "killed").exists()

    run_helper(str(tmp_path / "resumed"), str(ckpt), "--resume")
    ref_w, ref = load(tmp_path / "reference")
    res_w, res = load(tmp_path / "resumed")
    assert len(res["loss"]) == EPOCHS and res["best_epoch"] == ref["best_epoch"]
    np.testing.assert_allclose(res["loss"], ref["loss"], rtol=1e-9)
    np.testing.assert_allclose(res["value"], ref["value"], rtol=1e-9)
    assert res_w.keys() == ref_w.keys()
    for k in ref_w:             # bit-identical expected on CPU; a tiny tolerance for other BLAS builds
        np.testing.assert_allclose(res_w[k], ref_w[k], rtol=1e-6, atol=1e-7, err_msg=k)
