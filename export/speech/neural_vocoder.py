"""Train the neural harmonic-plus-noise vocoder (engine/speech/neural_vocoder.py) on the
teacher's audio, export it to ONNX and score it against the WORLD-style vocoder.

- ``HnmNet``: frame features (F0, mel-cepstrum, band aperiodicity) -> harmonic and noise
  log-amplitude spectra, as WORLD-style spectra plus corrections from a small dilated
  1-D convolution stack (the corrections start at zero, so training starts from a working
  vocoder and a CPU can train it in a couple of hours).
- ``synthesise``: the engine's Numba synthesis written again in torch, step for step
  (oscillator bank, frame-to-frame interpolation, shaped noise overlap-added), so the loss
  is measured on the very audio the engine will make.
- The loss is a multi-resolution STFT distance (log magnitude + spectral convergence) to
  the teacher's audio. Half the crops use features the shipped acoustic model predicts
  from the teacher's durations and F0, so the vocoder also learns to voice what the voice
  will actually give it.

    python -m kantor.export.speech.neural_vocoder [--preset vocoder] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from kantor.engine.models import provisional_card
from kantor.engine.speech.features import (
    BAP_SIZE,
    HOP,
    MCEP_SIZE,
    SAMPLE_RATE,
    Frames,
    band_basis,
    envelope_basis,
    frame_contract,
    resample,
    warp,
)
from kantor.engine.speech.neural_vocoder import (
    BIN_HZ,
    CUT_HZ,
    HARMONIC_BINS,
    HARMONIC_FFT,
    INPUTS,
    NOISE_BINS,
    NOISE_FFT,
    NOISE_WINDOW,
    START_F0,
    TAPER_HZ,
    VOCODER_NAME,
    oscillator_f0,
)
from kantor.export.speech.analysis import FEATURES_DIR
from kantor.export.speech.dataset import (
    Example,
    card_training_data,
    hold_out,
    training_splits,
    write_card,
)
from kantor.export.speech.festival import DEFAULT_DIR
from kantor.export.trainer import Run, fit, is_main_process

log = logging.getLogger(__name__)
UNVOICED_HARMONIC_LOG = -7.0  # the harmonics' starting level where F0 says unvoiced
PARITY_TOLERANCE = 1e-3


@dataclass
class VocoderConfig:
    """Sizes and training settings of the vocoder network."""

    channels: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel: int = 3
    grid: int = 64  # correction points, evenly spaced on the mel-like warped axis
    batch: int = 8
    crop_frames: int = 100  # 0.5 s of audio per crop
    steps_per_epoch: int = 500
    epochs: int = 24  # 12,000 steps: about two hours on one core of this 2-core VM
    learning_rate: float = 1e-3
    gta_share: float = 0.5  # crops whose features come from the acoustic model
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    train_limit: int | None = 4000
    valid_count: int = 24
    seed: int = 0
    threads: int = 1

    @property
    def receptive(self) -> int:
        """Frames on each side that influence a frame's output."""
        return sum(d * (self.kernel // 2) for d in self.dilations)


PRESETS = {
    "vocoder": VocoderConfig(),
    # wider and longer: about 1.5x the default's time on one core
    "vocoder-wide": VocoderConfig(channels=96, epochs=36),
    "vocoder-tiny": VocoderConfig(channels=16, dilations=(1, 2), grid=16, batch=2,
                                  crop_frames=40, steps_per_epoch=3, epochs=2,
                                  fft_sizes=(512, 128), train_limit=10, valid_count=2),
}


# ---------------------------------------------------------------- the network


def _warped_interpolation(points: int, fft_size: int) -> np.ndarray:
    """(points, fft_size//2+1): values on ``points`` evenly spaced warped frequencies ->
    linear interpolation at the FFT bins."""
    omega = warp(np.linspace(0.0, np.pi, fft_size // 2 + 1))
    position = omega / np.pi * (points - 1)
    lo = np.clip(np.floor(position).astype(int), 0, points - 2)
    frac = position - lo
    matrix = np.zeros((points, len(omega)))
    matrix[lo, np.arange(len(omega))] = 1 - frac
    matrix[lo + 1, np.arange(len(omega))] += frac
    return matrix


def _buffer(module: nn.Module, name: str, value) -> None:
    module.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=torch.float32))


class HnmNet(nn.Module):
    """Frame features (B, T, 46): F0 Hz (0 unvoiced), mcep (40), bap dB (5) ->
    harmonic (B, T, 257) and noise (B, T, 129) log-amplitude spectra."""

    def __init__(self, config: VocoderConfig, stats: dict) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        self.inp = nn.Linear(2 + MCEP_SIZE + BAP_SIZE, channels)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, config.kernel, dilation=d,
                                             padding=d * (config.kernel // 2))
                                   for d in config.dilations)
        self.mixes = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in config.dilations)
        self.harmonic_out = nn.Linear(channels, config.grid)
        self.noise_out = nn.Linear(channels, config.grid)
        for layer in (self.harmonic_out, self.noise_out):  # start as the WORLD-style vocoder
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        _buffer(self, "log_f0_mean", stats["log_f0_mean"])
        _buffer(self, "log_f0_std", stats["log_f0_std"])
        _buffer(self, "mcep_mean", stats["mcep_mean"])
        _buffer(self, "mcep_std", stats["mcep_std"])
        _buffer(self, "bap_mean", stats["bap_mean"])
        _buffer(self, "bap_std", stats["bap_std"])
        _buffer(self, "harmonic_envelope", envelope_basis(HARMONIC_FFT).T)  # (40, 257)
        _buffer(self, "noise_envelope", envelope_basis(NOISE_FFT).T)  # (40, 129)
        _buffer(self, "harmonic_bands", band_basis(HARMONIC_FFT).T)  # (5, 257)
        _buffer(self, "noise_bands", band_basis(NOISE_FFT).T)  # (5, 129)
        _buffer(self, "harmonic_grid", _warped_interpolation(config.grid, HARMONIC_FFT))
        _buffer(self, "noise_grid", _warped_interpolation(config.grid, NOISE_FFT))

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask`` (B, 1, T): 1 on real frames; padding is zeroed before every
        convolution, as the engine's whole-utterance run pads with zeros."""
        f0 = features[..., :1]
        mcep = features[..., 1 : 1 + MCEP_SIZE]
        bap = features[..., 1 + MCEP_SIZE :]
        voiced = (f0 > 0).float()
        log_f0 = (torch.log(torch.clamp(f0, min=1.0)) - self.log_f0_mean) / self.log_f0_std
        x = torch.cat([log_f0 * voiced, voiced, (mcep - self.mcep_mean) / self.mcep_std,
                       (bap - self.bap_mean) / self.bap_std], dim=-1)
        x = self.inp(x).transpose(1, 2)
        for conv, mix in zip(self.convs, self.mixes, strict=True):
            h = torch.relu(x) if mask is None else torch.relu(x) * mask
            x = x + mix(torch.relu(conv(h)))
        h = torch.relu(x).transpose(1, 2)
        # the WORLD-style spectra (engine/speech/vocoder.py) the corrections apply to
        harmonic_ap = torch.clamp(10.0 ** ((bap @ self.harmonic_bands) / 20.0), max=1.0)
        noise_ap = torch.clamp(10.0 ** ((bap @ self.noise_bands) / 20.0), max=1.0)
        periodic = 0.5 * torch.log(torch.clamp(1.0 - harmonic_ap**2, min=1e-4))
        harmonic = mcep @ self.harmonic_envelope + voiced * periodic \
            + (1 - voiced) * UNVOICED_HARMONIC_LOG
        noise = mcep @ self.noise_envelope + voiced * torch.log(torch.clamp(noise_ap, min=1e-5))
        harmonic = harmonic + self.harmonic_out(h) @ self.harmonic_grid
        noise = noise + self.noise_out(h) @ self.noise_grid
        return harmonic, noise


# ---------------------------------------------------------------- synthesis in torch


def synthesise(harmonic: torch.Tensor, noise: torch.Tensor, f_osc: torch.Tensor,
               phase: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
    """Audio between the centres of frames 0 and T of (B, T+1, .) spectra: (B, T * HOP).

    ``f_osc`` (B, T+1) oscillator Hz, ``phase`` (B,) starting phase in periods, ``white``
    (B, T+1, NOISE_BINS) complex white spectra. The engine's ``harmonic_amplitudes``,
    ``oscillate`` and ``shaped_noise`` in torch."""
    batch, rows = f_osc.shape
    frames = rows - 1
    count = math.ceil(CUT_HZ / float(f_osc.min()))
    k = torch.arange(1, count + 1, dtype=torch.float64)
    hz = f_osc.double()[..., None] * k  # (B, T+1, K)
    position = torch.clamp(hz / BIN_HZ, max=HARMONIC_BINS - 1.001)
    lo = torch.floor(position).long()
    frac = (position - lo).float()
    level = torch.gather(harmonic, 2, lo) * (1 - frac) + torch.gather(harmonic, 2, lo + 1) * frac
    taper = torch.clamp((CUT_HZ - hz) / TAPER_HZ, 0.0, 1.0).float()
    amps = 2.0 * torch.sqrt(f_osc.float() / SAMPLE_RATE)[..., None] * torch.exp(level) * taper
    w = torch.arange(HOP, dtype=torch.float64) / HOP
    with torch.no_grad():  # the sines depend on the data alone
        f = f_osc.double()
        per_sample = f[:, :-1, None] + (f[:, 1:, None] - f[:, :-1, None]) * w  # (B, T, HOP)
        cycles = phase.double()[:, None] + torch.cumsum(per_sample.reshape(batch, -1), 1) \
            / SAMPLE_RATE
        theta = (2 * math.pi * (cycles - torch.floor(cycles))).float()
        sines = torch.sin(theta[..., None] * k.float()).reshape(batch, frames, HOP, count)
    # amplitudes move linearly from frame t to t + 1: two matrix products per interval
    wf = w.float()[:, None]
    voiced_part = (sines @ amps[:, :-1, :, None])[..., 0] * (1 - wf[:, 0]) \
        + (sines @ amps[:, 1:, :, None])[..., 0] * wf[:, 0]
    voiced_part = voiced_part.reshape(batch, frames * HOP)
    spectra = white * torch.exp(noise)
    windowed = torch.fft.irfft(spectra, n=NOISE_FFT, dim=-1)[..., : 2 * HOP] \
        * torch.as_tensor(NOISE_WINDOW, dtype=torch.float32)
    noise_part = (windowed[:, :-1, HOP:] + windowed[:, 1:, :HOP]).reshape(batch, -1)
    return voiced_part + noise_part


def white_spectra(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Complex white spectra scaled as the engine's noise bank."""
    pairs = torch.randn(*shape, NOISE_BINS, 2, generator=generator)
    return torch.complex(pairs[..., 0], pairs[..., 1]) * math.sqrt(NOISE_FFT / 2.0)


def stft_loss(output: torch.Tensor, target: torch.Tensor, fft_sizes) -> torch.Tensor:
    """Multi-resolution STFT distance: mean over resolutions of log-magnitude L1 plus
    spectral convergence (Hann windows, hop = size / 4)."""
    total = 0.0
    for size in fft_sizes:
        window = torch.hann_window(size)
        spectra = [torch.stft(x, size, size // 4, window=window, return_complex=True).abs()
                   for x in (output, target)]
        floor = 1e-5 * size
        log_distance = (torch.log(spectra[0] + floor) - torch.log(spectra[1] + floor)).abs()
        convergence = torch.linalg.norm(spectra[1] - spectra[0]) \
            / (torch.linalg.norm(spectra[1]) + 1e-7)
        total = total + log_distance.mean() + convergence
    return total / len(fft_sizes)


# ---------------------------------------------------------------- data


@dataclass
class VocoderExample:
    """One utterance: teacher audio at 24 kHz and its frames, analysed and as the acoustic
    model predicts them from the teacher's durations and F0."""

    ident: str
    audio: np.ndarray
    analysed: np.ndarray  # (T, 46) features
    predicted: np.ndarray | None
    f_osc: np.ndarray = field(repr=False, default=None)

    def __post_init__(self) -> None:
        self.f_osc = oscillator_f0(self.analysed[:, 0]).astype(np.float32)


def features_of(frames: Frames) -> np.ndarray:
    """(T, 46) float32 network input: f0, mcep, bap."""
    return np.concatenate([frames.f0[:, None], frames.mcep, frames.bap], axis=1) \
        .astype(np.float32)


def teacher_audio(ident: str, corpus: Path, frames: int) -> np.ndarray:
    """The teacher's audio at 24 kHz, cut or padded to ``frames * HOP`` samples."""
    audio, rate = sf.read(corpus / f"{ident}.wav", dtype="float64")
    audio = resample(audio, rate).astype(np.float32)
    out = np.zeros(frames * HOP, np.float32)
    out[: min(len(audio), len(out))] = audio[: len(out)]
    return out


def prepare(examples: list[Example], corpus: Path, acoustic_folder: Path | None,
            with_predicted: bool = True) -> list[VocoderExample]:
    """Audio + features of ``examples``; ``predicted`` from the acoustic model in
    ``acoustic_folder`` (the shipped one by default)."""
    from kantor.engine.speech.acoustic import VoiceModels

    models = VoiceModels.load(acoustic_folder, vocoder=False) if with_predicted else None
    prepared = []
    for e in tqdm(examples, desc="vocoder data", unit="utt", disable=len(examples) < 50):
        total = len(e.frames)
        predicted = None
        if models is not None:
            encodings = models.encode(e.ids, e.feats)
            out = models.acoustic_window(encodings, e.durations, e.frames.f0, 0, total)
            predicted = features_of(out)
        prepared.append(VocoderExample(e.ident, teacher_audio(e.ident, corpus, total),
                                       features_of(e.frames), predicted))
    return prepared


def feature_stats(examples: list[VocoderExample]) -> dict:
    """Normalisation constants of the network's inputs."""
    feats = np.concatenate([e.analysed for e in examples])
    f0 = feats[:, 0]
    log_f0 = np.log(f0[f0 > 0])
    return {"log_f0_mean": float(log_f0.mean()), "log_f0_std": float(log_f0.std()),
            "mcep_mean": feats[:, 1 : 1 + MCEP_SIZE].mean(0).tolist(),
            "mcep_std": np.maximum(feats[:, 1 : 1 + MCEP_SIZE].std(0), 1e-3).tolist(),
            "bap_mean": feats[:, 1 + MCEP_SIZE :].mean(0).tolist(),
            "bap_std": np.maximum(feats[:, 1 + MCEP_SIZE :].std(0), 1e-3).tolist()}


def make_batch(examples: list[VocoderExample], config: VocoderConfig,
               rng: np.random.Generator, use_predicted: list[bool] | None = None,
               starts: list[int] | None = None):
    """Crops of ``crop_frames`` (+1) frames with ``receptive`` frames of context each side
    (zero padded and masked beyond an utterance): features (B, W, 46), mask (B, 1, W),
    oscillator Hz (B, T+1), target audio (B, T * HOP)."""
    size, context = config.crop_frames, config.receptive
    width = size + 1 + 2 * context
    features = np.zeros((len(examples), width, INPUTS), np.float32)
    mask = np.zeros((len(examples), 1, width), np.float32)
    f_osc = np.zeros((len(examples), size + 1), np.float32)
    target = np.zeros((len(examples), size * HOP), np.float32)
    for i, e in enumerate(examples):
        total = len(e.analysed)
        start = starts[i] if starts is not None else \
            int(rng.integers(0, max(1, total - size - 1)))
        predicted = use_predicted[i] if use_predicted is not None else \
            (e.predicted is not None and rng.random() < config.gta_share)
        source = e.predicted if predicted else e.analysed
        lo, hi = max(0, start - context), min(total, start + size + 1 + context)
        at = context - (start - lo)
        features[i, at : at + hi - lo] = source[lo:hi]
        mask[i, 0, at : at + hi - lo] = 1.0
        stop = min(total, start + size + 1)
        f_osc[i, : stop - start] = e.f_osc[start:stop]
        f_osc[i, stop - start :] = e.f_osc[stop - 1]
        piece = e.audio[start * HOP : (start + size) * HOP]
        target[i, : len(piece)] = piece
    return (torch.from_numpy(features), torch.from_numpy(mask), torch.from_numpy(f_osc),
            torch.from_numpy(target))


def batch_loss(net: HnmNet, batch, config: VocoderConfig,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Multi-resolution STFT loss of a batch (features, mask, f_osc, target[, phase,
    white]); the oscillators' phases and the noise are drawn from ``generator`` unless
    the batch brings them."""
    features, mask, f_osc, target = batch[:4]
    if len(batch) > 4:
        phase, white = batch[4:]
    else:
        phase = torch.rand(len(features), generator=generator)
        white = white_spectra((len(features), config.crop_frames + 1), generator)
    harmonic, noise = net(features, mask)
    rows = slice(config.receptive, config.receptive + config.crop_frames + 1)
    audio = synthesise(harmonic[:, rows], noise[:, rows], f_osc, phase, white)
    return stft_loss(audio, target, config.fft_sizes)


# ---------------------------------------------------------------- training


def train(config: VocoderConfig, examples: list[VocoderExample], run_dir: Path,
          valid: list[VocoderExample]) -> tuple[HnmNet, dict]:
    """Train in the shared trainer (export/trainer.py; resumes from ``run_dir`` when its
    config matches); returns the best network on ``valid`` and the training record."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    net = HnmNet(config, feature_stats(examples))
    # fixed validation crops: the middle of each utterance, analysed and predicted
    valid_rng = np.random.default_rng(12345)
    valid_batches = []
    for k in range(0, len(valid), config.batch):
        part = valid[k : k + config.batch]
        starts = [max(0, (len(e.analysed) - config.crop_frames - 1) // 2) for e in part]
        for predicted in (False, True):
            if predicted and any(e.predicted is None for e in part):
                continue
            valid_batches.append(make_batch(part, config, valid_rng, [predicted] * len(part),
                                            starts))

    def batches(epoch: int, rng: np.random.Generator):
        for _ in range(config.steps_per_epoch):
            chosen = rng.integers(0, len(examples), config.batch)
            yield make_batch([examples[i] for i in chosen], config, rng)

    def prepare(batch, generator: torch.Generator):
        # the random phases and noise of the whole batch, drawn before it is split
        phase = torch.rand(len(batch[0]), generator=generator)
        white = white_spectra((len(batch[0]), config.crop_frames + 1), generator)
        return (*batch, phase, white)

    def loss(trained: HnmNet, part) -> torch.Tensor:
        return batch_loss(trained, part, config)

    run = Run(name="vocoder", net=net, config=asdict(config), epochs=config.epochs,
              batches=batches, prepare=prepare, loss=loss, learning_rate=config.learning_rate,
              weight_decay=0.0, warmup=0.05, best_key="valid_loss", clip=1.0,
              validate=lambda trained: {"valid_loss": validation_loss(trained, valid_batches,
                                                                      config)},
              seed=config.seed, steps_per_epoch=config.steps_per_epoch)
    return fit(run, run_dir)


def validation_loss(net: HnmNet, batches: list, config: VocoderConfig) -> float:
    net.eval()
    generator = torch.Generator().manual_seed(99)
    with torch.no_grad():
        losses = [float(batch_loss(net, b, config, generator)) for b in batches]
    net.train()
    return float(np.mean(losses)) if losses else math.nan


# ---------------------------------------------------------------- export and scoring


def export_onnx(net: HnmNet, path: Path) -> float:
    """Write the network with a dynamic frame axis; returns the largest absolute
    difference between PyTorch and ONNX Runtime on another length."""
    import onnxruntime as ort

    net.eval()
    generator = torch.Generator().manual_seed(1)

    def example(frames: int) -> torch.Tensor:
        features = torch.randn(1, frames, INPUTS, generator=generator) * 0.3
        features[..., 0] = torch.where(torch.rand(1, frames, generator=generator) > 0.3,
                                       150 + 100 * torch.rand(1, frames, generator=generator),
                                       torch.zeros(1, frames))
        features[..., 1] -= 4.0  # c0: a quiet envelope
        features[..., 1 + MCEP_SIZE :] = -torch.rand(1, frames, BAP_SIZE,
                                                     generator=generator) * 30
        return features

    frames = torch.export.Dim("frames", min=1, max=65536)
    torch.onnx.export(net, (example(60),), str(path), dynamo=True, external_data=False,
                      input_names=["features"], output_names=["harmonic", "noise"],
                      dynamic_shapes=({1: frames},))
    check = example(137)
    with torch.no_grad():
        expected = net(check)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"features": check.numpy()})
    return max(float(np.abs(e.numpy() - a).max()) for e, a in zip(expected, actual, strict=True))


def score(folder: Path, test: list[VocoderExample], fft_sizes=(2048, 512, 128)) -> dict:
    """Held-out metrics of the exported vocoder in ``folder`` next to the WORLD-style one,
    both on the teacher's analysed features (and on the acoustic model's, where given):
    multi-resolution STFT distance to the teacher's audio (as the training loss, lower is
    better) and mel-cepstral distortion of the output analysed again (dB)."""
    from kantor.engine.models import load_model
    from kantor.engine.speech.features import analyze, mel_cepstral_distortion
    from kantor.engine.speech.neural_vocoder import NeuralVocoder
    from kantor.engine.speech.vocoder import Vocoder

    vocoders = {"neural": NeuralVocoder(load_model(folder / f"{VOCODER_NAME}.onnx")),
                "world": Vocoder()}
    metrics: dict = {"sentences": len(test)}
    for source in ("analysed", "predicted"):
        if any(getattr(e, source) is None for e in test):
            continue
        for name, vocoder in vocoders.items():
            distances, mcd = [], []
            for e in test:
                feats = getattr(e, source)
                frames = Frames(feats[:, 0].copy(), feats[:, 1 : 1 + MCEP_SIZE].copy(),
                                feats[:, 1 + MCEP_SIZE :].copy())
                audio = vocoder.synthesize(frames)[vocoder.delay :][: len(e.audio)]
                audio = np.pad(audio, (0, len(e.audio) - len(audio)))
                with torch.no_grad():
                    distances.append(float(stft_loss(torch.from_numpy(audio)[None],
                                                     torch.from_numpy(e.audio)[None],
                                                     fft_sizes)))
                again = analyze(audio.astype(np.float64), SAMPLE_RATE)
                mcd.append(mel_cepstral_distortion(e.analysed[:, 1 : 1 + MCEP_SIZE],
                                                   again.mcep))
            metrics[f"{name}_{source}"] = {"stft_distance": float(np.mean(distances)),
                                           "mcd_db": float(np.mean(mcd))}
    return metrics


def train_and_export_vocoder(preset: str, run_dir: Path, out_dir: Path,
                             test_limit: int | None = 100, corpus: Path = DEFAULT_DIR,
                             features: Path = FEATURES_DIR,
                             acoustic_folder: Path | None = None) -> dict | None:
    """Train the preset, export ``voice-vocoder.onnx`` + card into ``out_dir``.
    ``acoustic_folder``: the acoustic model whose predictions it also learns from (the
    shipped one by default)."""
    config = PRESETS[preset]
    torch.set_num_threads(config.threads)
    examples, test = training_splits(config.train_limit, test_limit, corpus=corpus,
                                     features=features)
    valid, train_set = hold_out(prepare(examples, corpus, acoustic_folder), config.valid_count)
    net, record = train(config, train_set, run_dir, valid)
    if not is_main_process():  # torchrun's other processes trained; rank 0 exports
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{VOCODER_NAME}.onnx"
    parity = export_onnx(net, path)
    if parity > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX parity {parity:.2e} above {PARITY_TOLERANCE}")
    plain = json.loads(json.dumps(asdict(config)))
    plain["receptive_frames"] = config.receptive
    path.with_suffix(".json").write_text(json.dumps(provisional_card(
        path, VOCODER_NAME, "being measured", config=plain)))
    metrics = score(out_dir, prepare(test, corpus, acoustic_folder))
    card = {
        "name": VOCODER_NAME,
        "version": "1.0.0",
        "task": "Deep Voice audio synthesis: neural harmonic-plus-noise vocoder (frame "
                "network in ONNX Runtime, oscillator bank and shaped noise in Numba)",
        "created": dt.date.today().isoformat(),
        "config": plain,
        "parameters": sum(p.numel() for p in net.parameters()),
        "inputs": {"features": {"dtype": "float32", "shape": [1, "frames", INPUTS],
                                "fields": ["f0 Hz (0 unvoiced)", "mcep c0..c39 (natural log)",
                                           "bap dB per band"]}},
        "outputs": {"harmonic": f"(1, frames, {HARMONIC_BINS}) natural-log amplitude of the "
                                f"harmonics' envelope on the bins of a {HARMONIC_FFT}-point FFT",
                    "noise": f"(1, frames, {NOISE_BINS}) natural-log amplitude of the noise "
                             f"on the bins of a {NOISE_FFT}-point FFT"},
        "synthesis": {"harmonic_amplitude": "2 sqrt(f0 / rate) exp(harmonic(k f0))",
                      "cut_hz": CUT_HZ, "taper_hz": TAPER_HZ, "start_f0_hz": START_F0,
                      "noise": "white spectra x exp(noise), sine window of 2 frames, 50 % "
                               "overlap-add", "lookahead_frames": config.receptive + 1},
        "features": frame_contract(),
        "training_data": card_training_data(
            " at 24 kHz, its WORLD analysis, and the acoustic model's frames from the "
            "teacher's durations and F0", train_set, valid, test),
    }
    log.info("%s: %s", VOCODER_NAME, metrics)
    return write_card(path, card, record, parity, metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vocoder", choices=sorted(PRESETS))
    parser.add_argument("--run-dir", type=Path, default=Path(".cache/runs/voice-vocoder"))
    parser.add_argument("--out", type=Path, default=Path(".cache/models/voice"))
    parser.add_argument("--test-limit", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    card = train_and_export_vocoder(args.preset, args.run_dir, args.out, args.test_limit)
    print(json.dumps(card["metrics"], indent=1))


if __name__ == "__main__":
    main()
