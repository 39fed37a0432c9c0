"""Neural harmonic-plus-noise vocoder (Deep Voice's fifth model, real time on one core).

A small frame-rate network (ONNX Runtime, one thread) reads the feature contract of
engine/speech/features.py - F0, mel-cepstrum, band aperiodicity - with 75 ms of context on
each side and predicts, for every 5 ms frame, two log-amplitude spectra:

- ``harmonic`` (257 bins, 0-12 kHz): the envelope the voiced part's harmonics are read
  from: harmonic ``k`` of the frame's F0 gets amplitude ``2 sqrt(f0 / rate) exp(H(k f0))``;
- ``noise`` (129 bins, a 256-point FFT): the magnitude of the frame's filtered noise.

The network starts out as the WORLD-style vocoder (its outputs are that vocoder's spectra
plus learned corrections initialised at zero) and learns from the teacher's audio, through
the very synthesis below, what the analysis and the 40 cepstra lost.

Synthesis (Numba, ``cache=True, nogil=True``): an oscillator bank sums the harmonics
sample by sample (sines by the Chebyshev recurrence, no ``sin`` per harmonic), amplitudes
and frequency interpolated linearly between frames; through unvoiced stretches the
oscillator holds the last voiced F0 so the network may voice frames the F0 analysis
missed. Noise is a white spectrum per frame (from a seeded bank, picked by a hash of the
frame's number) shaped by ``noise``, sine-windowed and overlap-added at 50 %.

Frame ``t`` is centred on output sample ``t * HOP`` (no lag). The network looks
``receptive`` frames ahead and the harmonics one more, so ``process`` returns the
samples that are final so far (``lookahead`` frames behind what it was given) and
``flush`` the rest; chunked output equals whole-utterance output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numba import njit

from kantor.engine.models import ASSETS, ModelError, OnnxModel, load_model
from kantor.engine.speech.acoustic import VOCODER_NAME
from kantor.engine.speech.features import BAP_SIZE, HOP, MCEP_SIZE, SAMPLE_RATE, Frames

log = logging.getLogger(__name__)

INPUTS = 1 + MCEP_SIZE + BAP_SIZE  # f0 (Hz, 0 unvoiced), mcep, bap per frame
HARMONIC_FFT = 512
HARMONIC_BINS = HARMONIC_FFT // 2 + 1  # 46.875 Hz apart
BIN_HZ = SAMPLE_RATE / HARMONIC_FFT
NOISE_FFT = 256
NOISE_BINS = NOISE_FFT // 2 + 1
NOISE_WINDOW = np.sin(np.pi * (np.arange(2 * HOP) + 0.5) / (2 * HOP))  # sin^2 sums to 1
_WINDOW32 = NOISE_WINDOW.astype(np.float32)
CUT_HZ = 11800.0  # harmonics fade out over TAPER_HZ below this (no aliasing at 12 kHz)
TAPER_HZ = 1500.0
MAX_HARMONICS = 200  # enough for 60 Hz, the contract's F0 floor
START_F0 = 180.0  # the oscillator's frequency before the first voiced frame
NOISE_BANK_SIZE = 2048


def oscillator_f0(f0: np.ndarray, last: float = START_F0) -> np.ndarray:
    """The oscillator's frequency per frame (Hz): ``f0`` where voiced, else the last voiced
    F0 before it (``last`` before the first). Float64."""
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = f0 > 0
    index = np.where(voiced, np.arange(len(f0)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, f0[np.maximum(index, 0)], last)


def frame_picks(seed: int, start: int, count: int, size: int = NOISE_BANK_SIZE) -> np.ndarray:
    """Which noise spectrum of the bank frame ``start + i`` uses: a hash of the frame's
    number (splitmix64), so it does not depend on how the frames were chunked."""
    with np.errstate(over="ignore"):
        x = np.arange(start, start + count, dtype=np.uint64) \
            + np.uint64(seed + 1) * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x % np.uint64(size)).astype(np.int64)


def noise_bank(seed: int, size: int = NOISE_BANK_SIZE) -> np.ndarray:
    """(size, NOISE_BINS) complex64 white spectra: their inverse FFTs have unit variance."""
    pairs = np.random.default_rng(seed + 7).standard_normal((size, NOISE_BINS, 2))
    return ((pairs[..., 0] + 1j * pairs[..., 1]) * np.sqrt(NOISE_FFT / 2.0)).astype(np.complex64)


@njit(cache=True, nogil=True)
def harmonic_amplitudes(f_osc: np.ndarray, harmonic: np.ndarray, amps: np.ndarray,
                        counts: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per frame: amplitudes (linear) of harmonics 1..MAX_HARMONICS of ``f_osc`` (Hz) read
    from the ``harmonic`` log-amplitude spectrum; ``counts`` = harmonics below CUT_HZ."""
    for r in range(len(f_osc)):
        f = f_osc[r]
        gain = 2.0 * np.sqrt(f / SAMPLE_RATE)
        n = 0
        for k in range(1, MAX_HARMONICS + 1):
            hz = k * f
            if hz >= CUT_HZ:
                break
            position = hz / BIN_HZ
            lo = int(position)
            frac = position - lo
            level = harmonic[r, lo] * (1.0 - frac) + harmonic[r, lo + 1] * frac
            amps[r, k - 1] = gain * np.exp(level) * min(1.0, (CUT_HZ - hz) / TAPER_HZ)
            n = k
        for k in range(n, MAX_HARMONICS):
            amps[r, k] = 0.0
        counts[r] = n


@njit(cache=True, nogil=True, fastmath=True)
def oscillate(f_osc: np.ndarray, amps: np.ndarray, counts: np.ndarray, out: np.ndarray,
              phase: float) -> float:  # pragma: no cover - compiled
    """Sum the harmonics from frame ``r`` to ``r + 1`` into ``out[r * HOP:(r + 1) * HOP]``
    for every consecutive pair of rows; frequency and amplitudes move linearly between
    frames. ``phase`` (in periods) carries from call to call; returns the new phase.

    Harmonic ``k``'s sine comes from the two before it (``sin(k x) = 2 cos(x)
    sin((k-1) x) - sin((k-2) x)``); the inner loop runs over the samples of a frame, so it
    is vectorised."""
    weight = (np.arange(HOP) / HOP).astype(np.float32)
    twice_cos = np.empty(HOP, np.float32)  # single precision: twice the SIMD lanes; the
    previous = np.empty(HOP, np.float32)  # recurrence stays within 1e-5 up to the 200th
    current = np.empty(HOP, np.float32)
    total = np.empty(HOP, np.float32)
    for r in range(len(f_osc) - 1):
        f_a = f_osc[r]
        f_b = f_osc[r + 1]
        for j in range(HOP):
            phase += (f_a + (f_b - f_a) * weight[j]) / SAMPLE_RATE
            phase -= np.floor(phase)
            theta = 2.0 * np.pi * phase
            twice_cos[j] = 2.0 * np.cos(theta)
            current[j] = np.sin(theta)
            previous[j] = 0.0
            total[j] = 0.0
        for k in range(max(counts[r], counts[r + 1])):
            a = np.float32(amps[r, k])
            slope = np.float32(amps[r + 1, k] - amps[r, k])
            for j in range(HOP):
                total[j] += (a + slope * weight[j]) * current[j]
                following = twice_cos[j] * current[j] - previous[j]
                previous[j] = current[j]
                current[j] = following
        out[r * HOP : (r + 1) * HOP] = total
    return phase


def shaped_noise(bank: np.ndarray, picks: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Windowed noise of each frame, (frames, 2 * HOP) float32: the bank's white spectra
    shaped by ``noise`` (float32 log amplitude, (frames, NOISE_BINS))."""
    spectra = bank[picks] * np.exp(noise)
    return np.fft.irfft(spectra, n=NOISE_FFT, axis=1)[:, : 2 * HOP] * _WINDOW32


class NeuralVocoder:
    """Streaming neural vocoder: ``process(frames)`` returns the float32 samples (24 kHz)
    that are final so far, ``flush()`` the rest of the utterance; ``lookahead`` frames are
    held back between the two. ``seed`` fixes the noise."""

    name = "neural"
    delay = 0  # samples between a frame's centre and its sound in the output

    def __init__(self, model: OnnxModel, seed: int = 0) -> None:
        self.model = model
        try:
            self.receptive = int(model.card["config"]["receptive_frames"])
        except (TypeError, ValueError):
            raise ModelError(f"{model.path}: card lacks the network's receptive field") from None
        self.lookahead = self.receptive + 1
        self.seed = seed
        self._bank = noise_bank(seed)
        self.reset()
        # compile (or load from the cache) and run once, so the first real call is fast
        warm = Frames(np.full(4, 120.0, np.float32), np.zeros((4, MCEP_SIZE), np.float32),
                      np.full((4, BAP_SIZE), -20.0, np.float32))
        self.synthesize(warm)

    @classmethod
    def load(cls, folder: Path | None = None, threads: int = 1, seed: int = 0
             ) -> NeuralVocoder:
        """The shipped vocoder network (or the one in ``folder``), verified by its card."""
        folder = Path(folder) if folder is not None else ASSETS
        return cls(load_model(folder / f"{VOCODER_NAME}.onnx", threads), seed)

    def reset(self) -> None:
        """Start a new utterance: nothing pending, phase 0."""
        self._inputs = np.zeros((0, INPUTS), np.float32)  # frames from _inputs_from on
        self._inputs_from = 0
        self._received = 0
        self._done = 0  # frames whose spectra are computed and synthesised
        self._last_f0 = START_F0
        self._phase = 0.0
        self._previous: tuple[float, np.ndarray, int] | None = None  # f_osc, amps, count
        self._tail = np.zeros(HOP)  # second half of the last frame's noise

    def spectra(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network on (T, 46) frame features: harmonic (T, 257) and noise (T, 129)
        log-amplitude spectra."""
        harmonic, noise = self.model.run({"features": features[None]})
        return harmonic[0], noise[0]

    def process(self, frames: Frames) -> np.ndarray:
        """Take the next frames; return the samples now final (float32, possibly none)."""
        if len(frames):
            features = np.concatenate([frames.f0[:, None], frames.mcep, frames.bap], axis=1)
            self._inputs = np.concatenate([self._inputs, features.astype(np.float32)])
            self._received += len(frames)
        return self._advance(self._received - self.receptive)

    def flush(self) -> np.ndarray:
        """The rest of the utterance (its last ``lookahead`` frames); then ``reset``."""
        if self._received == 0:
            self.reset()
            return np.zeros(0, np.float32)
        out = [self._advance(self._received)]
        # the last frame fades out towards silence over one frame
        f_osc, amps, count = self._previous
        last = np.zeros(HOP)
        rows = np.stack([amps, np.zeros_like(amps)])
        oscillate(np.array([f_osc, f_osc]), rows, np.array([count, 0], np.int64), last,
                  self._phase)
        out.append((last + self._tail).astype(np.float32))
        self.reset()
        return np.concatenate(out)

    def synthesize(self, frames: Frames) -> np.ndarray:
        """A whole utterance at once (float32, 24 kHz, ``len(frames) * HOP`` samples)."""
        self.reset()
        return np.concatenate([self.process(frames), self.flush()])

    def _advance(self, until: int) -> np.ndarray:
        """Compute the spectra of frames [done, until) and synthesise what they complete."""
        start = self._done
        if until <= start:
            return np.zeros(0, np.float32)
        lo = max(0, start - self.receptive)
        hi = min(self._received, until + self.receptive)
        window = self._inputs[lo - self._inputs_from : hi - self._inputs_from]
        harmonic, noise = self.spectra(window)
        harmonic = harmonic[start - lo : until - lo]
        noise = noise[start - lo : until - lo]
        f0 = window[start - lo : until - lo, 0]
        f_osc = oscillator_f0(f0, self._last_f0)
        self._last_f0 = float(f_osc[-1])
        count = until - start
        amps = np.empty((count, MAX_HARMONICS))
        counts = np.empty(count, np.int64)
        harmonic_amplitudes(f_osc, harmonic.astype(np.float64), amps, counts)
        windowed = shaped_noise(self._bank, frame_picks(self.seed, start, count), noise)
        # intervals between consecutive frames: from the previous call's last frame on
        if self._previous is not None:
            prev_f, prev_amps, prev_count = self._previous
            f_osc_rows = np.concatenate([[prev_f], f_osc])
            amp_rows = np.concatenate([prev_amps[None], amps])
            count_rows = np.concatenate([[prev_count], counts])
        else:  # the utterance's first frame: nothing before its centre
            f_osc_rows, amp_rows, count_rows = f_osc, amps, counts
        intervals = len(f_osc_rows) - 1
        out = np.zeros(intervals * HOP + HOP)
        self._phase = oscillate(f_osc_rows, amp_rows, count_rows, out, self._phase)
        # frame t's noise: first half in the interval before its centre, second half after
        offset = HOP if self._previous is not None else 0
        if self._previous is not None:
            out[:HOP] += self._tail
        for i in range(count):
            at = offset + (i - 1) * HOP
            if at >= 0:
                out[at : at + HOP] += windowed[i, :HOP]
            out[at + HOP : at + 2 * HOP] += windowed[i, HOP:]
        self._tail = out[intervals * HOP :].copy()
        self._previous = (float(f_osc[-1]), amps[-1].copy(), int(counts[-1]))
        self._done = until
        keep = max(0, until - self.receptive)  # context the next window needs
        if keep > self._inputs_from:
            self._inputs = self._inputs[keep - self._inputs_from :]
            self._inputs_from = keep
        return out[: intervals * HOP].astype(np.float32)


VOCODERS = ("auto", "neural", "world")


def make_vocoder(kind: str = "auto", model: OnnxModel | None = None, seed: int = 0,
                 why_not: str | None = None):
    """The vocoder ``kind`` names: ``neural`` (this module, running ``model``), ``world``
    (the WORLD-style vocoder of engine/speech/vocoder.py) or ``auto`` (neural when there
    is a ``model``, else world: with a warning saying ``why_not`` when the model exists
    but failed to load, quietly when none is installed, ``why_not`` None)."""
    from kantor.engine.speech.vocoder import Vocoder

    if kind not in VOCODERS:
        raise ValueError(f"unknown vocoder {kind!r} ({', '.join(VOCODERS)})")
    if kind == "world":
        return Vocoder(seed)
    if model is None:
        if kind == "neural":
            raise ModelError("the neural vocoder is not available: "
                             f"{why_not or 'its model is not installed'}")
        if why_not is None:  # a voice without the network: WORLD-style, nothing is wrong
            log.debug("no neural vocoder model installed: using the WORLD-style vocoder")
        else:
            log.warning("neural vocoder unavailable (%s): using the WORLD-style vocoder",
                        why_not)
        return Vocoder(seed)
    return NeuralVocoder(model, seed)
