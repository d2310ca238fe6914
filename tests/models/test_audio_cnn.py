"""The audio path on the five example recordings: file -> log-mel -> CNN -> item embedding -> ranking.

Each recording is split in time: the first 70% trains, 3 s segments of the last 30% are held out
(at least one per recording; the 5 s trumpet solo keeps 2.3 s for training). Held-out segments
come from later in the piece than anything trained on, so they test recognising the recording,
not re-finding a training crop.
"""

import glob
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from musicrec import MusicrecError  # noqa: E402
from musicrec.features.audio import AudioConfig, extract_dir, load_mels  # noqa: E402
from musicrec.models.audio_cnn import AudioCNN, AudioEncoder  # noqa: E402
from musicrec.models.base import topk  # noqa: E402

SEGMENT = 129          # frames: 3 s at 22,050 Hz, hop 512
HOP = 512


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, shared_data):
    """(names, training arrays, held-out segments, their recording index, clip folder, cut frame per recording)."""
    clips = sorted(f for f in glob.glob(os.path.join(shared_data, "librosa-example-audio", "*.ogg")) if ".hq." not in f)
    if len(clips) != 5:
        pytest.skip("librosa-example-audio clips not present")
    folder = tmp_path_factory.mktemp("clips")
    for clip in clips:
        shutil.copy(clip, folder)
    out = str(tmp_path_factory.mktemp("features"))
    extract_dir(str(folder), out, AudioConfig(max_seconds=None))
    mels = load_mels(out)
    names = sorted(mels)
    train, held_out, labels, cuts = [], [], [], []
    for r, name in enumerate(names):
        T = mels[name].shape[1]
        n_held = max(1, int(0.3 * T) // SEGMENT)
        cut = T - n_held * SEGMENT
        train.append(mels[name][:, :cut])
        held_out += [mels[name][:, cut + j * SEGMENT: cut + (j + 1) * SEGMENT] for j in range(n_held)]
        labels += [r] * n_held
        cuts.append(cut)
    return names, train, held_out, np.array(labels), str(folder), cuts


def fit_cnn(train, targets, **params):
    return AudioCNN(epochs=40, crops_per_track=32, seed=0, device="cpu", **params).fit(train, targets)


def test_encoder_pools_any_length_to_out_dim():
    for batch_norm in (True, False):
        net = AudioEncoder(n_mels=16, out_dim=7, channels=8, n_layers=3, batch_norm=batch_norm).eval()
        for T in (8, 37, 200):
            assert net(torch.randn(2, 16, T)).shape == (2, 7)


def test_recognises_the_recording_of_held_out_segments(recordings):
    names, train, held_out, labels, _, _ = recordings
    model = fit_cnn(train, np.arange(len(names)))
    assert model.loss_history_[-1] < model.loss_history_[0]
    pred = model.predict(held_out)
    accuracy = float(np.mean(pred == labels))
    balanced = float(np.mean([np.mean(pred[labels == r] == r) for r in range(len(names))]))
    majority = np.bincount(labels).max() / len(labels)
    # chance is 0.2 (balanced) and the majority share (13 of 36 segments) for plain accuracy
    assert accuracy >= 0.6 and accuracy >= majority + 0.2, (accuracy, majority)
    assert balanced >= 0.5, balanced
    proba = model.predict_proba(held_out)
    assert proba.shape == (len(held_out), 5) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_regresses_item_embeddings_and_places_new_tracks(recordings, tmp_path):
    names, train, held_out, labels, folder, cuts = recordings
    rng = np.random.default_rng(0)
    items = rng.normal(size=(len(names), 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)   # stand-ins for a CF model's item factors
    model = fit_cnn(train, items)
    emb = model.embed(held_out)
    assert emb.shape == (len(held_out), 8) and np.isfinite(emb).all()
    top1, _ = topk(model.score(held_out, items), 1)
    assert np.mean(top1[:, 0] == labels) >= 0.5   # chance 0.2

    path = str(tmp_path / "cnn")
    model.save(path)
    loaded = AudioCNN.load(path, device="cpu")
    assert np.array_equal(loaded.embed(held_out), emb)

    # brand-new tracks: the unheard tail of each recording written as a file nobody has played,
    # through the same feature extraction, then ranked against the catalogue by dot product
    new = tmp_path / "new_tracks"
    new.mkdir()
    for name, cut in zip(names, cuts):
        y, sr = sf.read(os.path.join(folder, name), dtype="float32")
        sf.write(str(new / (os.path.splitext(name)[0] + ".wav")), y[cut * HOP:], sr)
    out = str(tmp_path / "new_features")
    report = extract_dir(str(new), out, AudioConfig(max_seconds=None, min_seconds=0.5))
    assert report.rejects == []
    new_mels = load_mels(out)
    ranked, _ = topk(loaded.score([new_mels[os.path.splitext(n)[0] + ".wav"] for n in names], items), 5)
    assert np.sum(ranked[:, 0] == np.arange(5)) >= 3   # chance: 1 of 5


def test_input_errors(recordings, tmp_path):
    _, train, held_out, _, _, _ = recordings
    with pytest.raises(MusicrecError, match="call fit"):
        AudioCNN().embed(held_out)
    with pytest.raises(MusicrecError, match="targets"):
        AudioCNN(epochs=1).fit(train, np.zeros(3))
    with pytest.raises(MusicrecError, match="targets must be"):
        AudioCNN(epochs=1).fit(train, np.zeros(5))   # float labels: ambiguous
    with pytest.raises(MusicrecError, match="epochs"):
        AudioCNN(epochs=0).fit(train, np.arange(5))
    with pytest.raises(MusicrecError, match="loss"):
        AudioCNN(loss="hinge").fit(train, np.zeros((5, 2)))
    model = AudioCNN(epochs=1, device="cpu").fit(train, np.zeros((5, 2), np.float32))
    with pytest.raises(MusicrecError, match="mel bands"):
        model.embed([np.zeros((32, 100), np.float32)])
    with pytest.raises(MusicrecError, match="vectors must be"):
        model.score(held_out[:1], np.zeros((4, 3)))
    with pytest.raises(MusicrecError, match="predict_proba"):
        model.predict_proba(held_out[:1])
    with pytest.raises(MusicrecError, match="not a saved audio CNN"):
        AudioCNN.load(str(tmp_path))
