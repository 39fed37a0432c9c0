"""The voice's prosody model (duration + F0) and acoustic model, trained on the corpus.

- ``ProsodyNet`` (Deep Voice components 3-4): phone ids + context -> per phone the
  duration in frames and log-F0 / voicing at ``POINTS`` points inside it.
- ``AcousticNet``: the same phone inputs, encoded at phone rate, gathered to frames by
  duration, plus per-frame position / F0 / voicing -> mel-cepstrum + band aperiodicity.

Both are small 1-D convolution stacks (non-autoregressive, cheap per frame), normalise
their inputs/outputs inside the graph (so ONNX speaks real units), and train with AdamW
and a one-cycle schedule, checkpointing every epoch.

    python -m kantor.export.speech.acoustic train prosody|acoustic [--preset tiny]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kantor.engine.speech.features import BAP_SIZE, MCEP_SIZE
from kantor.engine.speech.linguistic import FEATURES
from kantor.engine.speech.phones import PHONES
from kantor.engine.speech.prosody import FRAME_INPUTS, POINTS, frame_inputs, point_frames
from kantor.export.speech.dataset import Example
from kantor.export.trainer import Run, fit, similar_length_batches

OUTPUTS = MCEP_SIZE + BAP_SIZE


@dataclass
class VoiceConfig:
    """Sizes and training settings of one voice model."""

    kind: str = "prosody"  # or "acoustic"
    phone_channels: int = 128
    phone_blocks: int = 4
    frame_channels: int = 80
    frame_blocks: int = 2
    kernel: int = 5  # phone-rate convolutions
    frame_kernel: int = 3  # frame-rate convolutions: cheap, they run 200 times a second
    dropout: float = 0.1
    epochs: int = 30
    batch: int = 32
    crop_frames: int = 400
    learning_rate: float = 2e-3
    train_limit: int | None = None
    seed: int = 0


PRESETS = {
    "prosody": VoiceConfig("prosody", phone_blocks=3, dropout=0.2, epochs=20,
                           train_limit=5000),
    "acoustic": VoiceConfig("acoustic", phone_blocks=4, frame_channels=96, epochs=12,
                            crop_frames=240, train_limit=8000),
    "prosody-tiny": VoiceConfig("prosody", 32, 1, epochs=2, train_limit=24, batch=8),
    "acoustic-tiny": VoiceConfig("acoustic", 32, 1, 16, 1, epochs=2, train_limit=24, batch=8),
}


class ResConv(nn.Module):
    """Residual 1-D convolution block over (batch, channels, time), masked padding."""

    def __init__(self, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x * mask))
        return x + self.drop(self.conv2(h * mask))


class PhoneEncoder(nn.Module):
    """Phone ids (B, N) + features (B, N, F) -> (B, C, N)."""

    def __init__(self, channels: int, blocks: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(PHONES), 48)
        self.inp = nn.Linear(48 + FEATURES, channels)
        self.blocks = nn.ModuleList(ResConv(channels, kernel, dropout) for _ in range(blocks))

    def forward(self, ids: torch.Tensor, feats: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        x = self.inp(torch.cat([self.embed(ids), feats], dim=-1)).transpose(1, 2)
        for block in self.blocks:
            x = block(x, mask)
        return x


class ProsodyNet(nn.Module):
    """-> durations (B, N) in frames, log F0 (B, N, POINTS), voicing probability (same)."""

    def __init__(self, config: VoiceConfig, stats: dict) -> None:
        super().__init__()
        self.config = config
        self.encoder = PhoneEncoder(config.phone_channels, config.phone_blocks, config.kernel,
                                    config.dropout)
        self.head = nn.Conv1d(config.phone_channels, 1 + 2 * POINTS, 1)
        for name in ("log_duration_mean", "log_duration_std", "log_f0_mean", "log_f0_std"):
            self.register_buffer(name, torch.tensor(float(stats[name])))

    def raw(self, ids: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        mask = torch.ones_like(ids, dtype=torch.float32).unsqueeze(1)
        return self.head(self.encoder(ids, feats, mask)).transpose(1, 2)  # (B, N, 9)

    def forward(self, ids: torch.Tensor, feats: torch.Tensor):
        out = self.raw(ids, feats)
        durations = torch.exp(out[..., 0] * self.log_duration_std + self.log_duration_mean)
        log_f0 = out[..., 1 : 1 + POINTS] * self.log_f0_std + self.log_f0_mean
        voiced = torch.sigmoid(out[..., 1 + POINTS :])
        return durations, log_f0, voiced


class AcousticNet(nn.Module):
    """Phones + frame->phone index (B, T) + frame inputs (B, T, 4) -> (B, T, 45) features."""

    def __init__(self, config: VoiceConfig, stats: dict) -> None:
        super().__init__()
        self.config = config
        self.encoder = PhoneEncoder(config.phone_channels, config.phone_blocks, config.kernel,
                                    config.dropout)
        self.inp = nn.Linear(config.phone_channels + FRAME_INPUTS, config.frame_channels)
        self.blocks = nn.ModuleList(ResConv(config.frame_channels, config.frame_kernel,
                                            config.dropout) for _ in range(config.frame_blocks))
        self.out = nn.Conv1d(config.frame_channels, OUTPUTS, 1)
        self.register_buffer("log_f0_mean", torch.tensor(float(stats["log_f0_mean"])))
        self.register_buffer("log_f0_std", torch.tensor(float(stats["log_f0_std"])))
        self.register_buffer("feature_mean", torch.tensor(stats["feature_mean"],
                                                          dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(stats["feature_std"],
                                                         dtype=torch.float32))

    def encode(self, ids: torch.Tensor, feats: torch.Tensor,
               phone_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Phone encodings (B, N, C): run once per sentence."""
        if phone_mask is None:
            phone_mask = torch.ones_like(ids, dtype=torch.float32).unsqueeze(1)
        return self.encoder(ids, feats, phone_mask).transpose(1, 2)

    def decode_raw(self, gathered: torch.Tensor, frame_feats: torch.Tensor,
                   frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frames' phone encodings (B, T, C) + frame inputs (B, T, 4) -> normalised
        features (B, T, 45)."""
        if frame_mask is None:
            frame_mask = torch.ones_like(frame_feats[..., 0]).unsqueeze(1)
        voiced = frame_feats[..., 3:4]
        log_f0 = (frame_feats[..., 2:3] - self.log_f0_mean) / self.log_f0_std * voiced
        frame = torch.cat([gathered, frame_feats[..., :2], log_f0, voiced], dim=-1)
        x = self.inp(frame).transpose(1, 2)
        for block in self.blocks:
            x = block(x, frame_mask)
        return self.out(x).transpose(1, 2)

    def decode(self, gathered: torch.Tensor, frame_feats: torch.Tensor) -> torch.Tensor:
        """As ``decode_raw``, in real units (mel-cepstrum, band aperiodicity dB)."""
        return self.decode_raw(gathered, frame_feats) * self.feature_std + self.feature_mean

    def raw(self, ids, feats, frame_phone, frame_feats, phone_mask=None, frame_mask=None):
        phones = self.encode(ids, feats, phone_mask)  # (B, N, C)
        index = frame_phone.unsqueeze(-1).expand(-1, -1, phones.shape[2])
        return self.decode_raw(torch.gather(phones, 1, index), frame_feats, frame_mask)

    def forward(self, ids, feats, frame_phone, frame_feats):
        return self.raw(ids, feats, frame_phone, frame_feats) * self.feature_std \
            + self.feature_mean


class AcousticEncoderGraph(nn.Module):
    """Export view: the phone encoder alone."""

    def __init__(self, net: AcousticNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return self.net.encode(ids, feats)


class AcousticDecoderGraph(nn.Module):
    """Export view: the frame decoder alone."""

    def __init__(self, net: AcousticNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, gathered: torch.Tensor, frame_feats: torch.Tensor) -> torch.Tensor:
        return self.net.decode(gathered, frame_feats)


# ---------------------------------------------------------------- targets and batches

def prosody_targets(example: Example) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per phone: log duration, log F0 at the points (0 where unvoiced), voiced 0/1."""
    f0 = example.frames.f0
    at = np.clip(np.floor(point_frames(example.durations)).astype(int), 0, len(f0) - 1)
    voiced = (f0[at] > 0).astype(np.float32)
    log_f0 = np.where(voiced > 0, np.log(np.maximum(f0[at], 1.0)), 0.0).astype(np.float32)
    return np.log(example.durations.astype(np.float32)), log_f0, voiced


def corpus_stats(examples: list[Example]) -> dict:
    """Normalisation constants from the training examples."""
    log_d = np.concatenate([np.log(e.durations) for e in examples])
    f0 = np.concatenate([e.frames.f0 for e in examples])
    log_f0 = np.log(f0[f0 > 0])
    feats = np.concatenate([np.concatenate([e.frames.mcep, e.frames.bap], axis=1)
                            for e in examples])
    return {"log_duration_mean": float(log_d.mean()), "log_duration_std": float(log_d.std()),
            "log_f0_mean": float(log_f0.mean()), "log_f0_std": float(log_f0.std()),
            "feature_mean": feats.mean(0).tolist(),
            "feature_std": np.maximum(feats.std(0), 1e-3).tolist()}


def _pad(arrays: list[np.ndarray], value: float = 0) -> np.ndarray:
    longest = max(len(a) for a in arrays)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), value, arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _phone_batch(examples: list[Example]):
    ids = torch.from_numpy(_pad([e.ids for e in examples]))
    feats = torch.from_numpy(_pad([e.feats for e in examples]))
    mask = torch.from_numpy(_pad([np.ones(len(e.ids), np.float32) for e in examples]))
    return ids, feats, mask


def prosody_loss(net: ProsodyNet, examples: list[Example]) -> torch.Tensor:
    ids, feats, mask = _phone_batch(examples)
    targets = [prosody_targets(e) for e in examples]
    log_d = torch.from_numpy(_pad([t[0] for t in targets]))
    log_f0 = torch.from_numpy(_pad([t[1] for t in targets]))
    voiced = torch.from_numpy(_pad([t[2] for t in targets]))
    pmask = mask.unsqueeze(1)
    out = net.head(net.encoder(ids, feats, pmask)).transpose(1, 2)
    d = (out[..., 0] - (log_d - net.log_duration_mean) / net.log_duration_std) ** 2
    f = (out[..., 1 : 1 + POINTS] - (log_f0 - net.log_f0_mean) / net.log_f0_std) ** 2
    v = nn.functional.binary_cross_entropy_with_logits(out[..., 1 + POINTS :], voiced,
                                                      reduction="none")
    phones = mask.sum()
    return ((d * mask).sum() + (f * voiced * mask.unsqueeze(-1)).sum() / POINTS
            + (v * mask.unsqueeze(-1)).sum() / POINTS) / phones


def acoustic_loss(net: AcousticNet, examples: list[Example], crop: int,
                  starts: list[int] | np.random.Generator) -> torch.Tensor:
    """L1 of the normalised frames over a crop of each example from ``starts`` (frame
    indices, or a generator that draws them)."""
    ids, feats, pmask = _phone_batch(examples)
    frame_phone, frame_feat, targets = [], [], []
    for k, e in enumerate(examples):
        total = len(e.frames)
        start = (int(starts.integers(0, max(1, total - crop + 1)))
                 if isinstance(starts, np.random.Generator) else starts[k])
        stop = min(total, start + crop)
        phone_of = np.repeat(np.arange(len(e.durations)), e.durations)[start:stop]
        frame_phone.append(phone_of.astype(np.int64))
        frame_feat.append(frame_inputs(e.durations, e.frames.f0)[start:stop])
        targets.append(np.concatenate([e.frames.mcep, e.frames.bap], axis=1)[start:stop])
    frame_mask = torch.from_numpy(_pad([np.ones(len(p), np.float32) for p in frame_phone]))
    out = net.raw(ids, feats, torch.from_numpy(_pad(frame_phone)),
                  torch.from_numpy(_pad(frame_feat)), pmask.unsqueeze(1),
                  frame_mask.unsqueeze(1))
    target = (torch.from_numpy(_pad(targets)) - net.feature_mean) / net.feature_std
    error = (out - target).abs().mean(-1)  # L1: sharper spectra than L2
    return (error * frame_mask).sum() / frame_mask.sum()


def build(config: VoiceConfig, stats: dict) -> nn.Module:
    return ProsodyNet(config, stats) if config.kind == "prosody" else AcousticNet(config, stats)


def train(config: VoiceConfig, examples: list[Example], run_dir: Path,
          valid: list[Example] | None = None) -> tuple[nn.Module, dict]:
    """Train in the shared trainer (export/trainer.py; resumes from ``run_dir`` when the
    config matches, keeps the best epoch on ``valid``); returns the net and its record."""
    torch.manual_seed(config.seed)
    stats = corpus_stats(examples)
    net = build(config, stats)
    lengths = np.array([len(e.ids) for e in examples])

    def batches(epoch: int, rng: np.random.Generator):
        # batches of similar length (less padding), in random order; the crops' random
        # starts are drawn here too, so every process cuts the same ones
        for indices in similar_length_batches(lengths, config.batch, rng, jitter=8):
            batch = [examples[i] for i in indices]
            yield [(e, int(rng.integers(0, max(1, len(e.frames) - config.crop_frames + 1)))
                    if config.kind == "acoustic" else 0) for e in batch]

    def loss(trained: nn.Module, part) -> torch.Tensor:
        batch = [e for e, _ in part]
        if config.kind == "prosody":
            return prosody_loss(trained, batch)
        return acoustic_loss(trained, batch, config.crop_frames, [start for _, start in part])

    run = Run(name=config.kind, net=net, config=asdict(config), epochs=config.epochs,
              batches=batches, loss=loss, learning_rate=config.learning_rate,
              validate=(lambda trained: {"valid_loss": validation_loss(trained, valid)})
              if valid else None, best_key="valid_loss" if valid else None, clip=1.0,
              seed=config.seed, steps_per_epoch=math.ceil(len(examples) / config.batch))
    return fit(run, run_dir)


def validation_loss(net: nn.Module, examples: list[Example]) -> float:
    net.eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        losses = [float(prosody_loss(net, examples[k : k + 16]) if net.config.kind == "prosody"
                        else acoustic_loss(net, examples[k : k + 16], 100000, rng))
                  for k in range(0, len(examples), 16)]
    net.train()
    return float(np.mean(losses))


# ---------------------------------------------------------------- export

PARITY_TOLERANCE = 1e-3


def _example_inputs(net: nn.Module, phones: int = 23, frames: int = 140):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, len(PHONES), (1, phones), generator=generator)
    feats = torch.rand(1, phones, FEATURES, generator=generator)
    if isinstance(net, (ProsodyNet, AcousticEncoderGraph)):
        return ids, feats
    channels = net.net.config.phone_channels
    frame_feats = torch.rand(1, frames, FRAME_INPUTS, generator=generator)
    frame_feats[..., 2] = 5.2  # log F0 around 180 Hz
    frame_feats[..., 3] = (frame_feats[..., 3] > 0.3).float()
    return torch.randn(1, frames, channels, generator=generator), frame_feats


def export_onnx(net: nn.Module, path: Path) -> float:
    """Write ``net`` (a ProsodyNet or one of the acoustic graphs) to ``path`` with phones
    and frames dynamic, and return the largest absolute difference between PyTorch and
    ONNX Runtime on inputs of other sizes."""
    import onnxruntime as ort

    net.eval()
    phones = torch.export.Dim("phones", min=2, max=4096)
    frames = torch.export.Dim("frames", min=1, max=65536)
    if isinstance(net, ProsodyNet):
        names, outputs = ["phone_ids", "phone_feats"], ["frames", "log_f0", "voiced"]
        shapes = ({1: phones}, {1: phones})
    elif isinstance(net, AcousticEncoderGraph):
        names, outputs = ["phone_ids", "phone_feats"], ["phone_encodings"]
        shapes = ({1: phones}, {1: phones})
    else:
        names, outputs = ["phone_encodings", "frame_feats"], ["features"]
        shapes = ({1: frames}, {1: frames})
    torch.onnx.export(net, _example_inputs(net), str(path), dynamo=True, external_data=False,
                      input_names=names, output_names=outputs, dynamic_shapes=shapes)
    check = _example_inputs(net, phones=31, frames=257)
    with torch.no_grad():
        expected = net(*check)
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {n: t.numpy() for n, t in zip(names, check, strict=True)})
    return max(float(np.abs(e.numpy() - a).max())
               for e, a in zip(expected, actual, strict=True))
