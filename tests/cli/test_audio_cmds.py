"""``musicrec audio features``: outputs, the rejects list, the cache and one-line errors."""

import csv
import glob
import os
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from musicrec.cli import main

main._register()
runner = CliRunner()


@pytest.fixture
def clip_dir(tmp_path, shared_data):
    clips = sorted(f for f in glob.glob(os.path.join(shared_data, "librosa-example-audio", "*.ogg")) if ".hq." not in f)
    if len(clips) != 5:
        pytest.skip("librosa-example-audio clips not present")
    folder = tmp_path / "clips"
    folder.mkdir()
    for clip in (clips[0], clips[-1]):   # the 46 s orchestra and the 5 s trumpet
        shutil.copy(clip, folder)
    (folder / "broken.ogg").write_bytes(np.random.default_rng(1).bytes(3000))
    return folder


def test_audio_features_writes_outputs_and_lists_rejects(clip_dir, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(main.app, ["audio", "features", str(clip_dir), "--out", str(out), "--max-seconds", "10"])
    assert result.exit_code == 0, result.output
    assert "files: 3 (3 analysed now, 0 unchanged since the last run): 2 with features, 1 rejected" in result.stdout
    assert "broken.ogg: unreadable audio" in result.stdout
    for name in ("features.parquet", "mels.npz", "rejects.csv"):
        assert (out / name).is_file()
    df = pl.read_parquet(out / "features.parquet")
    assert df.height == 2 and df["analysed_s"].max() == pytest.approx(10.0)
    with open(out / "rejects.csv", newline="") as fh:
        assert [r["file"] for r in csv.DictReader(fh)] == ["broken.ogg"]

    again = runner.invoke(main.app, ["audio", "features", str(clip_dir), "--out", str(out), "--max-seconds", "10"])
    assert again.exit_code == 0, again.output
    assert "(0 analysed now, 3 unchanged since the last run)" in again.stdout


def test_missing_dir_is_a_one_line_error(tmp_path):
    result = runner.invoke(main.app, ["audio", "features", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no such directory" in lines[0]
    assert not (tmp_path / "out").exists()
