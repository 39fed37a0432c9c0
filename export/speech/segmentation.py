"""The segmentation model (Deep Voice component 1) and forced alignment with it.

Deep Voice finds phone boundaries in recordings that have none by aligning the known phone
sequence to the audio. Here:

- ``log_mel``: the model's input, computable for any recording in numpy: 40 log mel-band
  energies per 5 ms frame (frame ``t`` centred at ``t * 5 ms``, the grid of
  engine/speech/features), from the audio resampled to 16 kHz - so 0-8 kHz only, the band
  every corpus has (LJSpeech is 22.05 kHz, many are 16 kHz).
- ``SegmentationNet``: a frame classifier, a stack of dilated 1-D convolutions (receptive
  field ~0.3 s) normalising its input inside the graph; output per frame the
  log-posteriors of the 39 ARPAbet phones + ``pau`` (engine/speech/phones.PHONES).
  Trained with cross-entropy on Festival's segments of the rendered corpus, with
  speaker/channel-like augmentation (vocal-tract-length warp of the mel axis, gain,
  spectral tilt, a noise floor) so it is less tied to the one synthetic voice.
- ``viterbi``: the best monotonic path of the known phone sequence through those
  log-posteriors; every phone takes at least ``min_frames`` frames, except phones marked
  optional (pauses between phrases: a reader may not pause at a comma), which may take 0.
- ``Aligner``: the shipped ONNX model (engine/assets/voice-aligner.onnx) + ``viterbi``;
  ``align(audio, rate, phones) -> frames per phone``.
- ``evaluate``: boundary accuracy against Festival's segments on held-out sentences (the
  aligner sees only the audio and the phone sequence).

    python -m kantor.export.speech.segmentation [--preset tiny] [--out engine/assets]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from kantor.engine.models import ASSETS, OnnxModel, load_model, provisional_card, sha256_of
from kantor.engine.speech.features import FRAME_SECONDS, HOP, SAMPLE_RATE, resample
from kantor.engine.speech.phones import PAUSE, PHONE_INDEX, PHONES
from kantor.export.speech.dataset import (
    Example,
    card_training_data,
    hold_out,
    training_splits,
)
from kantor.export.speech.festival import DEFAULT_DIR
from kantor.export.trainer import Run, fit, is_main_process, similar_length_batches

log = logging.getLogger(__name__)

NAME = "voice-aligner"
MEL_RATE = 16000
MEL_HOP = MEL_RATE // 200  # 5 ms
MEL_WINDOW = 400  # 25 ms
MEL_FFT = 512
MEL_BANDS = 40
MEL_RANGE_HZ = (20.0, 7600.0)
CLASSES = len(PHONES)
MIN_FRAMES = 2  # 10 ms: shorter than any real phone, so never the binding constraint
PARITY_TOLERANCE = 1e-3


class AlignmentError(ValueError):
    """A phone sequence that cannot be aligned to the audio (unknown phone, too few
    frames for the phones, empty input)."""


@dataclass
class SegmentationConfig:
    """Sizes and training settings of the segmentation model."""

    channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    kernel: int = 3
    dropout: float = 0.1
    epochs: int = 6
    batch: int = 16
    crop_frames: int = 400
    learning_rate: float = 3e-3
    augment: bool = True
    train_limit: int | None = None
    time_budget_s: float = 14 * 60  # stop early rather than overrun (the card records it)
    seed: int = 0


PRESETS = {
    # the first 3600 training sentences (100 of them for validation): ~13 min on one core
    "default": SegmentationConfig(train_limit=3600),
    "tiny": SegmentationConfig(channels=16, dilations=(1, 2), epochs=1, batch=4,
                               crop_frames=200, train_limit=12, augment=True),
}


# ---------------------------------------------------------------- inputs

def frame_count(samples: int, rate: int) -> int:
    """Frames ``features.analyze`` gives for ``samples`` at ``rate`` (one per 5 ms, plus
    the frame at 0 s)."""
    return round(samples * SAMPLE_RATE / rate) // HOP + 1


@cache
def mel_filterbank() -> np.ndarray:
    """(MEL_FFT//2+1, MEL_BANDS) triangular filters, HTK mel scale, MEL_RANGE_HZ."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    edges = np.linspace(mel(MEL_RANGE_HZ[0]), mel(MEL_RANGE_HZ[1]), MEL_BANDS + 2)
    hz = 700.0 * (10.0 ** (edges / 2595.0) - 1.0)
    freqs = np.linspace(0.0, MEL_RATE / 2, MEL_FFT // 2 + 1)
    bank = np.zeros((len(freqs), MEL_BANDS))
    for b in range(MEL_BANDS):
        lo, mid, hi = hz[b], hz[b + 1], hz[b + 2]
        bank[:, b] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)),
                             0.0, None)
    return bank


def log_mel(audio: np.ndarray, rate: int, frames: int | None = None) -> np.ndarray:
    """(frames, 40) float32 natural-log mel energies of mono ``audio`` at ``rate`` (any),
    frame ``t`` centred at ``t * 5 ms``; ``frames`` defaults to ``frame_count`` (the
    analysis grid), shorter audio is padded with silence."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1 or len(audio) == 0:
        raise AlignmentError(f"need mono audio, got shape {audio.shape}")
    frames = frame_count(len(audio), rate) if frames is None else frames
    signal = resample(audio, rate, MEL_RATE)
    padded = np.zeros(frames * MEL_HOP + MEL_FFT)
    usable = signal[: len(padded) - MEL_FFT // 2]
    padded[MEL_FFT // 2 : MEL_FFT // 2 + len(usable)] = usable
    windows = np.lib.stride_tricks.sliding_window_view(padded, MEL_FFT)[::MEL_HOP][:frames]
    taper = np.zeros(MEL_FFT)
    offset = (MEL_FFT - MEL_WINDOW) // 2
    taper[offset : offset + MEL_WINDOW] = np.hanning(MEL_WINDOW)
    power = np.abs(np.fft.rfft(windows * taper, axis=1)) ** 2
    return np.log(power @ mel_filterbank() + 1e-8).astype(np.float32)


def frame_labels(example: Example) -> np.ndarray:
    """Phone class of every frame (T,) int64, from the example's durations."""
    return np.repeat(example.ids, example.durations)


@dataclass
class Labelled:
    """One utterance for training/evaluation: log-mel (T, 40) and the phone class of each
    frame (T,), from Festival's segments."""

    mel: np.ndarray
    labels: np.ndarray


def labelled(examples: Sequence[Example], corpus: Path = DEFAULT_DIR,
             rate: int | None = None) -> list[Labelled]:
    """Each example's log-mel from its corpus WAV (as many frames as its durations) and
    frame labels; with ``rate`` the audio is first resampled to it (e.g. 22050 to test an
    LJSpeech-like band limit)."""
    out = []
    for e in tqdm(examples, desc="log-mel", unit="utt", disable=len(examples) < 200):
        audio, source_rate = sf.read(corpus / f"{e.ident}.wav", dtype="float64")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if rate:
            audio, source_rate = resample(audio, source_rate, rate), rate
        out.append(Labelled(log_mel(audio, source_rate, int(e.durations.sum())),
                            frame_labels(e)))
    return out


def input_stats(data: Sequence[Labelled]) -> dict[str, np.ndarray]:
    """Input normalisation per band and the class priors (share of frames per class)."""
    stacked = np.concatenate([d.mel for d in data])
    counts = np.bincount(np.concatenate([d.labels for d in data]), minlength=CLASSES) + 1.0
    return {"mean": stacked.mean(axis=0).astype(np.float32),
            "std": (stacked.std(axis=0) + 1e-3).astype(np.float32),
            "prior": (counts / counts.sum()).astype(np.float32)}


def augment(mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random 'other speaker / microphone' version of a log-mel: mel axis warped by
    0.9..1.1 (vocal tract length), gain +-12 dB, tilt +-6 dB across the band, a noise
    floor 30-70 dB under the loudest band."""
    bands = np.arange(MEL_BANDS, dtype=np.float64)
    source = np.clip(bands / rng.uniform(0.9, 1.1), 0, MEL_BANDS - 1)
    lo = np.minimum(np.floor(source).astype(int), MEL_BANDS - 2)
    frac = (source - lo).astype(np.float32)
    out = mel[:, lo] * (1 - frac) + mel[:, lo + 1] * frac
    db = np.log(10.0) / 10.0  # natural-log units per dB of power
    out += rng.uniform(-12, 12) * db + rng.uniform(-6, 6) * db * (bands / bands[-1] - 0.5)
    floor = out.max() - rng.uniform(30, 70) * db
    return np.logaddexp(out, floor).astype(np.float32)


# ---------------------------------------------------------------- model

class SegmentationNet(nn.Module):
    """Log-mel (batch, T, 40) -> log-posteriors (batch, T, 41)."""

    def __init__(self, config: SegmentationConfig, stats: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.as_tensor(stats["mean"]))
        self.register_buffer("std", torch.as_tensor(stats["std"]))
        c = config.channels
        self.inp = nn.Conv1d(MEL_BANDS, c, config.kernel, padding=config.kernel // 2)
        self.dilated = nn.ModuleList(
            nn.Conv1d(c, c, config.kernel, padding=d * (config.kernel // 2), dilation=d)
            for d in config.dilations)
        self.mix = nn.ModuleList(nn.Conv1d(c, c, 1) for _ in config.dilations)
        self.norms = nn.ModuleList(nn.GroupNorm(1, c) for _ in config.dilations)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Conv1d(c, CLASSES, 1)

    def logits(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, T, 40) -> (batch, 41, T) unnormalised scores."""
        x = ((mel - self.mean) / self.std).transpose(1, 2)
        x = torch.relu(self.inp(x))
        for conv, mix, norm in zip(self.dilated, self.mix, self.norms, strict=True):
            x = x + self.drop(mix(torch.relu(conv(norm(x)))))
        return self.head(torch.relu(x))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits(mel), dim=1).transpose(1, 2)


# ---------------------------------------------------------------- training

def _batch(data: Sequence[Labelled], crop: int, rng: np.random.Generator,
           augmented: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-length random crops (the shortest utterance bounds the crop: no padding)."""
    crop = min(crop, *(len(d.labels) for d in data))
    inputs, labels = [], []
    for d in data:
        start = int(rng.integers(0, len(d.labels) - crop + 1))
        mel = d.mel[start : start + crop]
        inputs.append(augment(mel, rng) if augmented else mel)
        labels.append(d.labels[start : start + crop])
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(labels))


def frame_accuracy(net: SegmentationNet, data: Sequence[Labelled]) -> float:
    """Share of frames whose most likely class is Festival's phone (whole utterances)."""
    net.eval()
    right = total = 0
    with torch.no_grad():
        for d in data:
            best = net.logits(torch.from_numpy(d.mel)[None])[0].argmax(0).numpy()
            right += int((best == d.labels).sum())
            total += len(d.labels)
    return right / max(total, 1)


def train(config: SegmentationConfig, data: list[Labelled], run_dir: Path,
          valid: list[Labelled] | None = None) -> tuple[SegmentationNet, dict]:
    """Train with AdamW + one-cycle in the shared trainer (export/trainer.py; resumes when
    the checkpoint's config matches, stops when the time budget is spent); returns the net
    and its training record."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)  # the machine is shared; one core each
    stats = input_stats(data)
    net = SegmentationNet(config, stats)
    lengths = np.array([len(d.labels) for d in data])

    def batches(epoch: int, rng: np.random.Generator):
        # batches of similar length so crops are not cut to a much shorter utterance
        for indices in similar_length_batches(lengths, config.batch, rng, jitter=100):
            yield _batch([data[i] for i in indices], config.crop_frames, rng, config.augment)

    def loss(trained: SegmentationNet, part) -> torch.Tensor:
        inputs, labels = part
        return nn.functional.cross_entropy(trained.logits(inputs), labels)

    def validate(trained: SegmentationNet) -> dict:
        return {"valid_frame_accuracy": frame_accuracy(trained, valid)} if valid else {}

    run = Run(name="aligner", net=net, config=asdict(config), epochs=config.epochs,
              batches=batches, loss=loss, learning_rate=config.learning_rate,
              validate=validate, clip=1.0, seed=config.seed,
              time_budget_s=config.time_budget_s,
              steps_per_epoch=math.ceil(len(data) / config.batch))
    net, record = fit(run, run_dir)
    record["class_prior"] = stats["prior"].tolist()
    return net, record


def export_onnx(net: SegmentationNet, path: Path) -> float:
    """Write ``net`` to ``path`` (frames dynamic) and return the largest absolute
    difference between PyTorch and ONNX Runtime on an input of another length."""
    import onnxruntime as ort

    net.eval()
    frames = torch.export.Dim("frames", min=8, max=1 << 17)

    def example(length: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(length)
        return torch.randn(1, length, MEL_BANDS, generator=generator) * net.std + net.mean

    torch.onnx.export(net, (example(120),), str(path), dynamo=True, external_data=False,
                      input_names=["log_mel"], output_names=["log_posteriors"],
                      dynamic_shapes=({1: frames},))
    check = example(517)
    with torch.no_grad():
        expected = net(check).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"log_mel": check.numpy()})[0]
    return float(np.abs(expected - actual).max())


# ---------------------------------------------------------------- alignment

def viterbi(scores: np.ndarray, min_frames: int = MIN_FRAMES,
            optional: Sequence[bool] | None = None) -> np.ndarray:
    """Best monotonic alignment of N phones to T frames.

    ``scores`` (T, N): log-score of frame t belonging to phone n (the network's
    log-posterior of phone n's class). Each phone takes at least ``min_frames`` frames;
    a phone with ``optional[n]`` may instead take 0 frames (skipped). Returns frames per
    phone (N,) int64, summing to T. AlignmentError when no path exists.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise AlignmentError(f"scores must be (frames, phones), got {scores.shape}")
    frames, phones = scores.shape
    if min_frames < 1:
        raise AlignmentError("min_frames must be at least 1")
    skip = np.zeros(phones, bool) if optional is None else np.asarray(optional, bool)
    if skip.shape != (phones,):
        raise AlignmentError(f"optional has {skip.shape} entries for {phones} phones")
    needed = int((~skip).sum()) * min_frames
    if frames < max(needed, 1):
        raise AlignmentError(f"{frames} frames cannot hold {needed // min_frames} phones "
                             f"of at least {min_frames} frames")
    # expanded states: phone n owns min_frames chained states; only the last one loops
    states = phones * min_frames
    phone_of = np.repeat(np.arange(phones), min_frames)
    last = np.arange(states) % min_frames == min_frames - 1
    # entering phone n's first state by skipping an optional phone n-1 (from n-2's last,
    # or from the start when n-1 is the first phone)
    skip_into = np.zeros(states, bool)
    skip_into[min_frames::min_frames] = skip[:-1]
    skip_source = np.arange(states) - min_frames - 1  # last state of phone n-2
    emit = scores[:, phone_of]
    neg = -np.inf
    delta = np.full(states, neg)
    delta[0] = emit[0, 0]
    # start by skipping leading optional phones
    n = 0
    while n < phones - 1 and skip[n]:
        n += 1
        delta[n * min_frames] = emit[0, n]
    choice = np.zeros((frames, states), np.int8)  # 0 stay, 1 advance, 2 skip one phone
    for t in range(1, frames):
        stay = np.where(last, delta, neg)
        advance = np.concatenate([[neg], delta[:-1]])
        jump = np.where(skip_into & (skip_source >= 0), delta[np.maximum(skip_source, 0)], neg)
        best = np.maximum(np.maximum(stay, advance), jump)
        choice[t] = np.where(best == stay, 0, np.where(best == advance, 1, 2))
        delta = best + emit[t]
    # end in the last phone's last state, or skip trailing optional phones
    end = states - 1
    candidates = [end]
    n = phones - 1
    while n > 0 and skip[n]:
        n -= 1
        candidates.append(n * min_frames + min_frames - 1)
    end = max(candidates, key=lambda s: delta[s])
    if not np.isfinite(delta[end]):
        raise AlignmentError("no alignment path: too few frames for the phones")
    path = np.empty(frames, np.int64)
    s = end
    for t in range(frames - 1, -1, -1):
        path[t] = s
        c = choice[t, s]
        s = s if c == 0 else s - 1 if c == 1 else int(skip_source[s])
    return np.bincount(phone_of[path], minlength=phones).astype(np.int64)


@dataclass
class Aligner:
    """The shipped segmentation model + Viterbi: audio and a phone sequence -> frames per
    phone. ``prior_weight`` > 0 divides posteriors by class priors^weight (the card's)."""

    model: OnnxModel
    min_frames: int = MIN_FRAMES
    prior_weight: float = 0.0

    @classmethod
    def load(cls, path: Path = ASSETS / f"{NAME}.onnx", threads: int = 1) -> Aligner:
        """Load and verify the model (ModelError when missing or not matching its card)."""
        model = load_model(path, threads)
        alignment = model.card.get("alignment", {})
        return cls(model, int(alignment.get("min_frames", MIN_FRAMES)),
                   float(alignment.get("prior_weight", 0.0)))

    def log_posteriors(self, mel: np.ndarray) -> np.ndarray:
        """(T, 41) natural-log class posteriors of a ``log_mel``, classes in PHONES order."""
        if len(mel) == 0:
            raise AlignmentError("no frames to align")
        return self.model.run({"log_mel": np.ascontiguousarray(mel, np.float32)[None]})[0][0]

    def scores(self, log_posteriors: np.ndarray, phones: Sequence[str]) -> np.ndarray:
        """(T, N) Viterbi scores of the phone sequence's classes."""
        unknown = [p for p in phones if p not in PHONE_INDEX]
        if unknown:
            raise AlignmentError(f"unknown phones {unknown[:5]} (PHONES: ARPAbet without "
                                 "stress digits, or 'pau')")
        ids = np.array([PHONE_INDEX[p] for p in phones], dtype=np.int64)
        scores = log_posteriors[:, ids]
        if self.prior_weight:
            prior = np.asarray(self.model.card["alignment"]["class_prior"], np.float64)
            scores = scores - self.prior_weight * np.log(prior[ids])
        return scores

    def align_mel(self, mel: np.ndarray, phones: Sequence[str],
                  optional: Sequence[bool] | None = None) -> np.ndarray:
        """Frames per phone (N,) int64 summing to len(mel)."""
        if not phones:
            raise AlignmentError("empty phone sequence")
        return viterbi(self.scores(self.log_posteriors(mel), phones), self.min_frames,
                       optional)

    def align(self, audio: np.ndarray, rate: int, phones: Sequence[str],
              optional: Sequence[bool] | None = None, frames: int | None = None) -> np.ndarray:
        """Frames per phone (N,) int64 of mono ``audio`` at ``rate`` Hz, summing to
        ``frames`` (default: the frames ``features.analyze`` gives for this audio);
        ``optional`` phones (e.g. pauses between phrases) may get 0 frames."""
        return self.align_mel(log_mel(audio, rate, frames), phones, optional)


def optional_pauses(phones: Sequence[str]) -> list[bool]:
    """Pauses between phrases may be skipped; the pauses at the utterance edges may not
    (the first and last frames of a trimmed recording are near-silent too)."""
    return [p == PAUSE and 0 < i < len(phones) - 1 for i, p in enumerate(phones)]


# ---------------------------------------------------------------- evaluation

def boundary_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Signed errors in frames of the N-1 inner phone boundaries (phone ends but the last)."""
    if len(predicted) != len(truth):
        raise AlignmentError(f"{len(predicted)} predicted vs {len(truth)} true durations")
    return np.cumsum(predicted)[:-1] - np.cumsum(truth)[:-1]


def summarise(errors: np.ndarray) -> dict[str, float]:
    """Boundary metrics from errors in frames: share within 10/20 ms, mean/median ms."""
    ms = np.abs(errors) * FRAME_SECONDS * 1000
    return {"boundaries": len(ms),
            "within_10ms": float(np.mean(ms <= 10 + 1e-9)),
            "within_20ms": float(np.mean(ms <= 20 + 1e-9)),
            "mean_abs_error_ms": float(ms.mean()),
            "median_abs_error_ms": float(np.median(ms))}


def evaluate(aligner: Aligner, examples: Sequence[Example], data: Sequence[Labelled],
             skip_pauses: bool = True) -> dict:
    """Align each example from its audio (``data``, see ``labelled``) and phone sequence
    alone and compare with its durations; ``skip_pauses``: phrase pauses optional, as for
    an unlabelled corpus."""
    errors, right, total, skipped = [], 0, 0, 0
    for e, d in zip(examples, data, strict=True):
        phones = [item.phone for item in e.items]
        posteriors = aligner.log_posteriors(d.mel)
        right += int((posteriors.argmax(1) == d.labels).sum())
        total += len(d.labels)
        predicted = viterbi(aligner.scores(posteriors, phones), aligner.min_frames,
                            optional_pauses(phones) if skip_pauses else None)
        skipped += int((predicted == 0).sum())
        errors.append(boundary_errors(predicted, e.durations))
    return {"sentences": len(examples), "frame_accuracy": right / max(total, 1),
            **summarise(np.concatenate(errors)), "pauses_skipped": skipped}


# ---------------------------------------------------------------- one command

def write_card(path: Path, net: SegmentationNet, record: dict, metrics: dict,
               data: dict, parity: float, alignment: dict) -> dict:
    """The JSON card beside ``path`` (written last: it carries the file's hash)."""
    card = {
        "name": NAME,
        "version": "1.0.0",
        "task": "Deep Voice segmentation: per-frame phone posteriors for forced alignment",
        "created": dt.date.today().isoformat(),
        "inputs": {"log_mel": {
            "dtype": "float32", "shape": [1, "frames", MEL_BANDS],
            "note": "export/speech/segmentation.log_mel: natural-log mel energies, audio "
                    f"resampled to {MEL_RATE} Hz, {MEL_WINDOW}-sample Hann window, "
                    f"{MEL_FFT}-point FFT, HTK mel {MEL_RANGE_HZ[0]:.0f}-"
                    f"{MEL_RANGE_HZ[1]:.0f} Hz; frame t centred at t * 5 ms",
            "frame_seconds": FRAME_SECONDS}},
        "outputs": {"log_posteriors": {"dtype": "float32", "shape": [1, "frames", CLASSES],
                                       "vocabulary": list(PHONES)}},
        "alignment": alignment,
        "architecture": asdict(net.config),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training_data": data,
        "training": {k: v for k, v in record.items() if k != "class_prior"},
        "onnx_parity_max_abs": parity,
        "metrics": metrics,
        "sha256": sha256_of(path),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def train_and_export(preset: str, run_dir: Path, out_dir: Path,
                     test_limit: int | None = None, corpus: Path = DEFAULT_DIR) -> dict | None:
    """Train the preset, export ``voice-aligner.onnx`` + card into ``out_dir``, score it
    on the held-out sentences (at the corpus rate, and resampled to 22.05 and 16 kHz);
    returns the card. Needs the rendered corpus only (not its WORLD analysis)."""
    config = PRESETS[preset]
    examples, test = training_splits(config.train_limit, test_limit, need_frames=False,
                                     corpus=corpus)
    valid, train_set = hold_out(examples)
    valid_data = labelled(valid, corpus)
    net, record = train(config, labelled(train_set, corpus), run_dir, valid=valid_data)
    if not is_main_process():  # torchrun's other processes trained; rank 0 exports
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.onnx"
    parity = export_onnx(net, path)
    if parity > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX parity {parity:.2e} above {PARITY_TOLERANCE}")
    alignment = {"method": "Viterbi over the known phone sequence (export/speech/"
                           "segmentation.viterbi) on log-posteriors",
                 "min_frames": MIN_FRAMES, "prior_weight": 0.0,
                 "optional": "pauses between phrases may take 0 frames; edge pauses >= "
                             "min_frames",
                 "class_prior": record["class_prior"]}
    # a provisional card (hash + alignment settings) so the model loads for scoring
    path.with_suffix(".json").write_text(json.dumps(provisional_card(
        path, NAME, "being measured", alignment=alignment)))
    aligner = Aligner.load(path)
    # the prior weight is chosen on the validation sentences, never on the test ones
    tried = {w: evaluate(Aligner(aligner.model, MIN_FRAMES, w), valid,
                         valid_data)["within_20ms"] for w in (0.0, 0.3, 0.6)}
    alignment["prior_weight"] = max(tried, key=lambda w: (tried[w], -w))
    alignment["valid_within_20ms_by_prior_weight"] = {str(k): v for k, v in tried.items()}
    aligner.prior_weight = alignment["prior_weight"]
    test_data = labelled(test, corpus)
    metrics = {"phrase_pauses_optional": evaluate(aligner, test, test_data),
               "all_pauses_given": evaluate(aligner, test, test_data, skip_pauses=False)}
    for rate in (22050, 16000):
        metrics[f"resampled_to_{rate}_hz"] = evaluate(aligner, test,
                                                      labelled(test, corpus, rate))
    data = card_training_data("; labels = Festival's phone segments", train_set, valid,
                              test, "; the aligner sees only the audio and the phone "
                              "sequence")
    card = write_card(path, net, record, metrics, data, parity, alignment)
    log.info("%s: %s", NAME, json.dumps(metrics))
    return card


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--run-dir", type=Path, default=Path(".cache/runs/voice-aligner"))
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--test-limit", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    card = train_and_export(args.preset, args.run_dir, args.out, args.test_limit)
    print(json.dumps(card["metrics"], indent=1))


if __name__ == "__main__":
    main()
