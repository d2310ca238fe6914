import csv
import glob
import os
import shutil

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError
from musicrec.features.audio import (AudioConfig, analyse, chroma_filters, estimate_tempo, extract_dir, load_mels,
                                     power_spectrogram, read_audio)

sf = pytest.importorskip("soundfile")
SR = 22050


def example_clips(shared_data: str) -> list[str]:
    """The five 22 kHz mono example recordings (not the .hq 44.1 kHz copies)."""
    clips = sorted(f for f in glob.glob(os.path.join(shared_data, "librosa-example-audio", "*.ogg")) if ".hq." not in f)
    if len(clips) != 5:
        pytest.skip("librosa-example-audio clips not present")
    return clips


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("clips")
    for clip in example_clips(shared_data):
        shutil.copy(clip, folder)
    return str(folder)


@pytest.fixture(scope="module")
def extracted(clips_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("features"))
    return out, extract_dir(clips_dir, out)


def clicks(bpm: float, seconds: float = 12.0) -> np.ndarray:
    """A click track: 10 ms noise bursts every beat."""
    y = np.zeros(int(seconds * SR), np.float32)
    burst = np.random.default_rng(0).normal(0, 0.5, int(0.01 * SR)).astype(np.float32)
    for t in np.arange(0, seconds - 0.02, 60.0 / bpm):
        y[int(t * SR):int(t * SR) + len(burst)] += burst
    return y


# ---------------------------------------------------------------- signal functions
@pytest.mark.parametrize("bpm", [100.0, 150.0])
def test_tempo_of_a_click_track(bpm):
    log_mel, _ = analyse(clicks(bpm))
    assert estimate_tempo(log_mel, SR / 512) == pytest.approx(bpm, rel=0.03)


def test_sine_peaks_at_its_frequency_and_pitch_class():
    t = np.arange(3 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    power = power_spectrogram(y)
    assert power.shape == (1025, 1 + len(y) // 512)
    assert abs(int(np.median(power.argmax(axis=0))) - 440.0 * 2048 / SR) <= 1
    chroma = chroma_filters(SR, 2048) @ power
    assert int(np.argmax(chroma.sum(axis=1))) == 9   # A
    _, feats = analyse(y)
    assert max(range(12), key=lambda i: feats[f"chroma_mean_{i}"]) == 9


def test_silence_gives_finite_features_and_no_tempo():
    log_mel, feats = analyse(np.zeros(3 * SR, np.float32))
    assert np.isfinite(log_mel).all()
    assert np.isnan(feats.pop("tempo_bpm"))
    assert all(np.isfinite(v) for v in feats.values())


def test_read_audio_mixes_stereo_and_resamples(tmp_path):
    t = np.arange(2 * 44100) / 44100
    left = np.sin(2 * np.pi * 220 * t)
    path = str(tmp_path / "stereo.wav")
    sf.write(path, np.stack([left, 0.5 * left], axis=1), 44100)
    y, duration = read_audio(path, SR, max_seconds=1.5)
    assert duration == pytest.approx(2.0)
    assert len(y) == pytest.approx(1.5 * SR, abs=2)
    assert y.dtype == np.float32 and np.abs(y).max() == pytest.approx(0.75, abs=0.03)   # mean of the channels


# ---------------------------------------------------------------- extract_dir on the real clips
def test_extract_dir_on_real_clips(extracted, clips_dir):
    out, report = extracted
    assert (report.files, report.extracted, report.cached, report.rejects) == (5, 5, 0, [])
    df = pl.read_parquet(os.path.join(out, "features.parquet"))
    assert sorted(df["file"]) == sorted(os.listdir(clips_dir))
    numeric = df.drop("file")
    assert all(np.isfinite(numeric[c].to_numpy()).all() for c in numeric.columns)
    mels = load_mels(out)
    assert sorted(mels) == sorted(df["file"])
    for row in df.iter_rows(named=True):
        info = sf.info(os.path.join(clips_dir, row["file"]))
        assert row["duration_s"] == pytest.approx(info.frames / info.samplerate)
        analysed = min(info.frames, 30 * SR)
        assert row["analysed_s"] == pytest.approx(analysed / SR)
        assert 40 <= row["tempo_bpm"] <= 250
        assert all(0 <= row[f"chroma_mean_{i}"] <= 1 for i in range(12))
        mel = mels[row["file"]]
        assert mel.dtype == np.float32 and mel.shape == (64, 1 + analysed // 512) == (64, row["n_frames"])
        assert np.isfinite(mel).all() and mel.max() - mel.min() <= 80.0 + 1e-3
    # the recordings differ: their MFCC means are not all the same
    mfcc = df.select([f"mfcc_mean_{i}" for i in range(20)]).to_numpy()
    assert np.linalg.norm(mfcc[:, None] - mfcc[None], axis=2)[np.triu_indices(5, 1)].min() > 1.0


def test_bad_files_are_rejected_and_reruns_are_cached(clips_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = sorted(os.listdir(clips_dir))[:2]
    for name in good:
        shutil.copy(os.path.join(clips_dir, name), src)
    (src / "corrupt.ogg").write_bytes(np.random.default_rng(0).bytes(4000))
    (src / "empty.wav").write_bytes(b"")
    sf.write(str(src / "short.wav"), np.zeros(SR // 4, np.float32), SR)
    (src / "notes.txt").write_text("not audio")
    out = str(tmp_path / "out")

    report = extract_dir(str(src), out)
    reasons = dict(report.rejects)
    assert (report.files, report.extracted) == (5, 2)
    assert reasons["corrupt.ogg"].startswith("unreadable audio")
    assert reasons["empty.wav"] == "empty file (0 bytes)"
    assert reasons["short.wav"].startswith("too short")
    with open(os.path.join(out, "rejects.csv"), newline="") as fh:
        assert {r["file"]: r["reason"] for r in csv.DictReader(fh)} == reasons
    first = pl.read_parquet(os.path.join(out, "features.parquet"))
    assert sorted(first["file"]) == good

    again = extract_dir(str(src), out)
    assert (again.extracted, again.cached, dict(again.rejects)) == (0, 5, reasons)
    assert pl.read_parquet(os.path.join(out, "features.parquet")).equals(first)

    # a changed file is recomputed, a removed one dropped, the rest reused
    shutil.copy(os.path.join(clips_dir, sorted(os.listdir(clips_dir))[2]), src / good[0])
    os.remove(src / "corrupt.ogg")
    third = extract_dir(str(src), out)
    assert (third.files, third.extracted, third.cached) == (4, 1, 3)
    assert "corrupt.ogg" not in dict(third.rejects)
    assert sorted(load_mels(out)) == good

    # other settings invalidate the whole cache
    fourth = extract_dir(str(src), out, AudioConfig(n_mels=32))
    assert (fourth.extracted, fourth.cached) == (2, 0)
    assert {m.shape[0] for m in load_mels(out).values()} == {32}


def test_folder_errors(tmp_path):
    with pytest.raises(MusicrecError, match="no such directory"):
        extract_dir(str(tmp_path / "missing"), str(tmp_path / "out"))
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(MusicrecError, match="no audio files"):
        extract_dir(str(tmp_path), str(tmp_path / "out"))
