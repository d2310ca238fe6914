"""Audio CNN: a track's log-mel spectrogram -> an item embedding (after van den Oord, Dieleman &
Schrauwen, "Deep content-based music recommendation", NeurIPS 2013).

``AudioEncoder`` (the network) runs 1-D convolutions over mel frames, pools over time (mean and
max) and maps to D outputs. ``AudioCNN`` (the estimator) owns the loss and training: given the
collaborative item embeddings (N, D) of tracks that have plays, or their tag vectors when no
embedding exists, it learns to regress them from audio (cosine or squared loss); given integer
labels it classifies (cross-entropy). It trains on random fixed-length crops, so tracks of any
length mix in one batch.

It is not a ``Recommender``: it maps audio to the item space of one. A brand-new track, which
nobody has played, is placed by its audio alone::

    mel = load_mels(out)["new_track.ogg"]            # (M, T) from features.audio.extract_dir
    v = cnn.embed([mel])                             # (1, D) predicted item embedding
    idx, sims = topk(cnn.score([mel], item_vecs), 10)  # 10 best catalogue items (models.base.topk)
    users_scores = user_vecs @ v[0]                  # (U,) which listeners to show it to

where ``item_vecs`` (I, D) and ``user_vecs`` (U, D) are the collaborative model's factors the
targets came from (e.g. ALS/BPR ``item_vectors()`` / ``query_vectors()``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from musicrec import MusicrecError, __version__, fsio
from musicrec.models.base import init_from_config


# ---------------------------------------------------------------- network
class ConvBlock(nn.Module):
    """Conv1d over time (same length) -> optional batch norm -> ReLU -> max-pool 2: (B, C_in, T) -> (B, C, T // 2)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, batch_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        self.norm = nn.BatchNorm1d(c_out) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(F.relu(self.norm(self.conv(x))), 2, ceil_mode=True)


class AudioEncoder(nn.Module):
    """(B, M, T) standardised log-mel frames -> (B, D). Mel bands are the input channels, so
    filters see every band and slide along time only; pooling over time makes T free."""

    def __init__(self, n_mels: int, out_dim: int, channels: int = 64, n_layers: int = 3,
                 kernel_size: int = 5, batch_norm: bool = True, dropout: float = 0.1):
        super().__init__()
        widths = [n_mels] + [channels] * n_layers
        self.blocks = nn.Sequential(*(ConvBlock(a, b, kernel_size, batch_norm) for a, b in zip(widths, widths[1:])))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)
        # mean says "how much of this pattern overall", max "does it occur at all" (both help in
        # music tagging, e.g. Choi et al. 2016)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(self.drop(pooled))


# ---------------------------------------------------------------- estimator
@dataclass(frozen=True)
class AudioCNNConfig:
    channels: int = 64            # C: filters per convolution
    n_layers: int = 3             # conv blocks; each halves the time axis
    kernel_size: int = 5          # frames per filter (5 x 23 ms at 22,050 Hz, hop 512)
    batch_norm: bool = True       # batch norm after each convolution
    dropout: float = 0.1          # before the linear head
    crop_frames: int = 128        # T of a training crop and of an inference window (~3 s)
    loss: str = "mse"             # regression: "mse" keeps the targets' scale (dot-product scores, as in
                                  # the paper), "cosine" only their direction; labels use cross-entropy
    epochs: int = 20              # passes; each draws crops_per_track random crops of every track
    crops_per_track: int = 1      # >1 for few long recordings, 1 for a large catalogue
    batch_size: int = 32          # crops per step
    learning_rate: float = 1e-3   # AdamW step size
    weight_decay: float = 1e-2    # AdamW weight decay
    seed: int = 0                 # init and crop sampling
    device: str = "auto"          # "auto", "cpu" or "cuda"


class AudioCNN:
    """Audio -> item embedding (or class) estimator. Hyperparameters: see ``AudioCNNConfig``."""

    name = "audio_cnn"

    __init__ = init_from_config(AudioCNNConfig)

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in AudioCNNConfig.__dataclass_fields__}

    def _validate(self) -> None:
        for key, low in (("channels", 1), ("n_layers", 1), ("kernel_size", 1), ("crop_frames", 2 ** self.n_layers),
                         ("epochs", 1), ("crops_per_track", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, key)
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
                raise MusicrecError(f"audio_cnn: {key} must be an integer >= {low}, got {value!r}")
        for key, low, high in (("dropout", 0.0, 0.95), ("learning_rate", 1e-9, 10.0), ("weight_decay", 0.0, 10.0)):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high):
                raise MusicrecError(f"audio_cnn: {key} must be a number in [{low}, {high}], got {value!r}")
        if self.loss not in ("cosine", "mse"):
            raise MusicrecError(f"audio_cnn: loss must be one of cosine, mse, got {self.loss!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise MusicrecError(f"audio_cnn: device must be one of auto, cpu, cuda, got {self.device!r}")

    # ------------------------------------------------------------ learning
    def fit(self, mels: list[np.ndarray], targets: np.ndarray) -> "AudioCNN":
        """Learn to map each log-mel array (M, T_n) to its target; returns self.

        ``targets`` is (N, D) float (item embeddings or tag vectors: regression with ``loss``)
        or (N,) integer/string labels (classification, cross-entropy).
        """
        from musicrec.models.trainer import pick_device, seed_everything

        self._validate()
        mels = _check_mels(mels)
        targets = np.asarray(targets)
        if len(targets) != len(mels):
            raise MusicrecError(f"audio_cnn: {len(mels)} spectrograms but {len(targets)} targets")
        if targets.ndim == 1 and targets.dtype.kind in "iuU":
            self.task_ = "classify"
            self.classes_, y = np.unique(targets, return_inverse=True)
            y_t, out_dim = torch.from_numpy(y.astype(np.int64)), len(self.classes_)
        elif targets.ndim == 2 and targets.dtype.kind in "fiu" and np.isfinite(targets).all():
            self.task_ = "regress"
            y_t, out_dim = torch.from_numpy(targets.astype(np.float32)), targets.shape[1]
        else:
            raise MusicrecError("audio_cnn: targets must be (N, D) finite floats or (N,) integer labels, "
                                f"got shape {targets.shape} dtype {targets.dtype}")
        frames = np.concatenate(mels, axis=1)
        self.mel_mean_ = frames.mean(axis=1).astype(np.float32)
        self.mel_std_ = np.maximum(frames.std(axis=1), 1e-3).astype(np.float32)

        seed_everything(self.seed)
        self._device = pick_device(self.device)
        self.net_ = self._build(mels[0].shape[0], out_dim).to(self._device)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self.seed)
        self.loss_history_ = []
        for _ in range(self.epochs):
            self.net_.train()
            order = rng.permutation(np.repeat(np.arange(len(mels)), self.crops_per_track))
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                if len(idx) < 2 and self.batch_norm:   # batch norm needs two examples
                    continue
                x = torch.from_numpy(np.stack([self._crop(mels[i], rng) for i in idx])).to(self._device)
                loss = self._loss(self.net_(x), y_t[idx].to(self._device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            self.loss_history_.append(total / len(order))
        self.net_.eval()
        return self

    def _build(self, n_mels: int, out_dim: int) -> AudioEncoder:
        return AudioEncoder(n_mels, out_dim, self.channels, self.n_layers, self.kernel_size, self.batch_norm,
                            self.dropout)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task_ == "classify":
            return F.cross_entropy(out, y)
        if self.loss == "cosine":
            return (1.0 - F.cosine_similarity(out, y, dim=1)).mean()
        return F.mse_loss(out, y)

    def _standardise(self, mel: np.ndarray) -> np.ndarray:
        return ((mel - self.mel_mean_[:, None]) / self.mel_std_[:, None]).astype(np.float32)

    def _crop(self, mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random (M, crop_frames) window, standardised; short tracks are looped to fill it."""
        T = mel.shape[1]
        if T <= self.crop_frames:
            return self._standardise(_loop(mel, self.crop_frames))
        start = int(rng.integers(0, T - self.crop_frames + 1))
        return self._standardise(mel[:, start:start + self.crop_frames])

    # ------------------------------------------------------------ using
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise MusicrecError("audio_cnn: call fit() or load() before using the model")

    @torch.no_grad()
    def embed(self, mels: list[np.ndarray]) -> np.ndarray:
        """Network outputs (N, D) float32: the predicted item embedding of each track (logits
        when classifying). A track is cut into crop_frames windows (the last one ends at the
        track's end) and the window outputs are averaged, as in training."""
        self._check_fitted()
        mels = _check_mels(mels, n_mels=len(self.mel_mean_))
        out = np.empty((len(mels), self.net_.head.out_features), np.float32)
        for n, mel in enumerate(mels):
            T, L = mel.shape[1], self.crop_frames
            starts = sorted({*range(0, max(T - L, 0) + 1, L), max(T - L, 0)})
            windows = np.stack([self._standardise(_loop(mel[:, s:s + L], L)) for s in starts])
            out[n] = self.net_(torch.from_numpy(windows).to(self._device)).mean(dim=0).cpu().numpy()
        return out

    def predict(self, mels: list[np.ndarray]) -> np.ndarray:
        """Class labels (N,) when classifying, else the embeddings (N, D)."""
        out = self.embed(mels)
        return self.classes_[out.argmax(axis=1)] if self.task_ == "classify" else out

    def predict_proba(self, mels: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, K), columns in ``classes_`` order (classification only)."""
        if getattr(self, "task_", None) != "classify":
            raise MusicrecError("audio_cnn: predict_proba needs a model fitted on labels")
        logits = torch.from_numpy(self.embed(mels))
        return torch.softmax(logits, dim=1).numpy()

    def score(self, mels: list[np.ndarray], vectors: np.ndarray) -> np.ndarray:
        """Dot products (N, V) of each track's embedding with ``vectors`` (V, D): item vectors
        rank catalogue items for a new track, user vectors rank listeners for it."""
        vectors = np.asarray(vectors, dtype=np.float32)
        emb = self.embed(mels)
        if vectors.ndim != 2 or vectors.shape[1] != emb.shape[1]:
            raise MusicrecError(f"audio_cnn: vectors must be (V, {emb.shape[1]}), got {vectors.shape}")
        return emb @ vectors.T

    # ------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write config.json and state.npz (weights, mel statistics, classes) into folder ``path``."""
        self._check_fitted()
        os.makedirs(path, exist_ok=True)
        arrays = {f"net/{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        arrays.update(mel_mean=self.mel_mean_, mel_std=self.mel_std_)
        if self.task_ == "classify":
            arrays["classes"] = self.classes_
        fsio.atomic_savez(os.path.join(path, "state.npz"), arrays)
        fsio.atomic_write_json(os.path.join(path, "config.json"),
                               {"model": self.name, "musicrec_version": __version__, "task": self.task_,
                                "out_dim": self.net_.head.out_features,
                                "params": asdict(AudioCNNConfig(**self.get_params()))})

    @classmethod
    def load(cls, path: str, device: str = "auto") -> "AudioCNN":
        """A model saved by ``save``, on ``device``."""
        from musicrec.models.trainer import pick_device

        cfg_path, state_path = os.path.join(path, "config.json"), os.path.join(path, "state.npz")
        if not (os.path.isfile(cfg_path) and os.path.isfile(state_path)):
            raise MusicrecError(f"{path}: not a saved audio CNN (config.json and state.npz expected)")
        try:
            cfg = fsio.read_json(cfg_path)
        except (OSError, ValueError) as exc:
            raise MusicrecError(f"{cfg_path}: unreadable ({fsio.first_line(exc)})") from None
        if cfg.get("model") != cls.name:
            raise MusicrecError(f"{path}: holds model {cfg.get('model')!r}, not {cls.name!r}")
        model = cls(**{**cfg["params"], "device": device})
        arrays = fsio.load_arrays(state_path)
        model.task_ = cfg["task"]
        model.mel_mean_, model.mel_std_ = arrays["mel_mean"], arrays["mel_std"]
        if model.task_ == "classify":
            model.classes_ = arrays["classes"]
        model._device = pick_device(device)
        model.net_ = model._build(len(model.mel_mean_), cfg["out_dim"])
        model.net_.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("net/")})
        model.net_.to(model._device).eval()
        return model


def _loop(mel: np.ndarray, length: int) -> np.ndarray:
    """(M, T) -> (M, length): repeated from the start when T < length (music repeats; silence
    or mean padding would skew mean pooling)."""
    T = mel.shape[1]
    return mel if T >= length else np.tile(mel, (1, -(-length // T)))[:, :length]


def _check_mels(mels, n_mels: int | None = None) -> list[np.ndarray]:
    if len(mels) == 0:
        raise MusicrecError("audio_cnn: no spectrograms given")
    out = []
    for n, mel in enumerate(mels):
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[1] == 0 or not np.isfinite(mel).all():
            raise MusicrecError(f"audio_cnn: spectrogram {n} must be a finite (n_mels, T>0) array, "
                                f"got shape {mel.shape}")
        expected = n_mels if n_mels is not None else (out[0].shape[0] if out else mel.shape[0])
        if mel.shape[0] != expected:
            raise MusicrecError(f"audio_cnn: spectrogram {n} has {mel.shape[0]} mel bands, expected {expected}")
        out.append(mel)
    return out
