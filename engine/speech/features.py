"""The acoustic feature contract between the voice models and the vocoder.

One frame every 5 ms of 24 kHz audio (frame ``t`` describes the signal around
``t * 5 ms``):

- ``f0``: fundamental frequency in Hz, 0 where unvoiced (WORLD DIO + StoneMask);
- ``mcep``: 40 mel-cepstral coefficients (order 39, all-pass warping ``ALPHA``) of the
  smooth spectral envelope (WORLD CheapTrick) - ``log|H(w)| = sum_m c_m cos(m w~)``, ``w~``
  the warped frequency, natural-log amplitude;
- ``bap``: aperiodicity in dB (<= 0; 0 = pure noise) in ``BAND_EDGES_HZ`` bands (WORLD D4C,
  averaged in dB per band).

Analysis (``analyze``) needs pyworld, which only training/evaluation uses; decoding the
envelope and aperiodicity back onto an FFT grid (``envelope_basis``, ``band_basis``) is
numpy only and is what the vocoder uses at run time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

SAMPLE_RATE = 24000
HOP = 120  # samples per frame: 5 ms at 24 kHz
FRAME_SECONDS = HOP / SAMPLE_RATE
MCEP_ORDER = 39
MCEP_SIZE = MCEP_ORDER + 1
ALPHA = 0.466  # all-pass constant that approximates the mel scale at 24 kHz
BAND_EDGES_HZ = (0.0, 1000.0, 2000.0, 4000.0, 6000.0, 12000.0)
BAP_SIZE = len(BAND_EDGES_HZ) - 1
F0_FLOOR, F0_CEIL = 60.0, 400.0
ANALYSIS_FFT = 1024


class FeatureError(ValueError):
    """Audio or features that cannot be analysed or synthesised (empty, wrong shape)."""


@dataclass
class Frames:
    """Acoustic features of consecutive frames: ``f0`` (T,) Hz, ``mcep`` (T, 40),
    ``bap`` (T, 5) dB. All float32."""

    f0: np.ndarray
    mcep: np.ndarray
    bap: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.f0)
        if self.mcep.shape != (n, MCEP_SIZE) or self.bap.shape != (n, BAP_SIZE):
            raise FeatureError(f"frame arrays disagree: f0 {self.f0.shape}, mcep "
                               f"{self.mcep.shape}, bap {self.bap.shape}")

    def __len__(self) -> int:
        return len(self.f0)

    def __getitem__(self, index: slice) -> Frames:
        return Frames(self.f0[index], self.mcep[index], self.bap[index])

    @property
    def seconds(self) -> float:
        return len(self) * FRAME_SECONDS


def warp(omega: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """All-pass frequency warping (radians -> warped radians); ``warp(., -alpha)`` undoes it."""
    return omega + 2.0 * np.arctan(alpha * np.sin(omega) / (1.0 - alpha * np.cos(omega)))


@cache
def envelope_basis(fft_size: int) -> np.ndarray:
    """(fft_size//2+1, 40) matrix B: natural-log amplitude on the FFT grid = B @ mcep."""
    omega = np.linspace(0.0, np.pi, fft_size // 2 + 1)
    return np.cos(np.outer(warp(omega), np.arange(MCEP_SIZE)))


@cache
def _analysis_matrix(fft_size: int, points: int = 512) -> np.ndarray:
    """(40, fft_size//2+1): log amplitude on the FFT grid -> mel-cepstrum, by a cosine
    transform on a uniform grid of warped frequency (linear interpolation onto it)."""
    warped = (np.arange(points) + 0.5) * np.pi / points
    linear = warp(warped, -ALPHA) * (fft_size / 2) / np.pi  # in bins
    bins = fft_size // 2 + 1
    lo = np.clip(np.floor(linear).astype(int), 0, bins - 2)
    frac = linear - lo
    interp = np.zeros((points, bins))
    interp[np.arange(points), lo] = 1 - frac
    interp[np.arange(points), lo + 1] = frac
    cosines = np.cos(np.outer(np.arange(MCEP_SIZE), warped)) * (2.0 / points)
    cosines[0] *= 0.5
    return cosines @ interp


@cache
def band_basis(fft_size: int) -> np.ndarray:
    """(fft_size//2+1, 5) matrix: band aperiodicity (dB) -> dB on the FFT grid, linear
    interpolation between band centres, flat beyond the outer centres."""
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, fft_size // 2 + 1)
    edges = np.array(BAND_EDGES_HZ)
    centres = (edges[:-1] + edges[1:]) / 2
    basis = np.zeros((len(freqs), BAP_SIZE))
    for b in range(BAP_SIZE):
        unit = np.zeros(BAP_SIZE)
        unit[b] = 1.0
        basis[:, b] = np.interp(freqs, centres, unit)
    return basis


def mcep_from_envelope(envelope: np.ndarray) -> np.ndarray:
    """Power envelope (T, fft/2+1) -> mel-cepstrum (T, 40)."""
    fft_size = (envelope.shape[1] - 1) * 2
    log_amplitude = 0.5 * np.log(np.maximum(envelope, 1e-16))
    return (log_amplitude @ _analysis_matrix(fft_size).T).astype(np.float32)


def envelope_from_mcep(mcep: np.ndarray, fft_size: int) -> np.ndarray:
    """Mel-cepstrum (T, 40) -> power envelope (T, fft/2+1)."""
    return np.exp(2.0 * (mcep @ envelope_basis(fft_size).T))


def bap_from_aperiodicity(aperiodicity: np.ndarray) -> np.ndarray:
    """WORLD aperiodicity (T, fft/2+1, amplitude ratio 0..1) -> band dB (T, 5)."""
    fft_size = (aperiodicity.shape[1] - 1) * 2
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, fft_size // 2 + 1)
    db = 20.0 * np.log10(np.clip(aperiodicity, 1e-5, 1.0))
    bands = [db[:, (freqs >= lo) & (freqs < hi) if hi < SAMPLE_RATE / 2 else (freqs >= lo)]
             .mean(axis=1) for lo, hi in itertools.pairwise(BAND_EDGES_HZ)]
    return np.stack(bands, axis=1).astype(np.float32)


def aperiodicity_from_bap(bap: np.ndarray, fft_size: int) -> np.ndarray:
    """Band dB (T, 5) -> aperiodicity amplitude ratio on the FFT grid (T, fft/2+1)."""
    return np.minimum(10.0 ** ((bap @ band_basis(fft_size).T) / 20.0), 1.0)


def frame_contract() -> dict:
    """The frame contract as a model card states it (rate, frame, WORLD analysis)."""
    return {"sample_rate": SAMPLE_RATE, "frame_seconds": FRAME_SECONDS,
            "mcep_order": MCEP_ORDER, "alpha": ALPHA, "bap_band_edges_hz": list(BAND_EDGES_HZ)}


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono audio with soxr (high quality); float64 out."""
    import soxr

    audio = np.asarray(audio, dtype=np.float64)
    return audio if rate == target else soxr.resample(audio, rate, target, quality="HQ")


def resample_chunks(chunks: Iterator[np.ndarray], rate: int, target: int,
                    quality: str = "HQ") -> Iterator[np.ndarray]:
    """The streaming resampler every speech output uses: float32 mono chunks at ``rate``
    Hz in, float32 chunks at ``target`` Hz out as they come (soxr keeps its state between
    chunks; the filter's tail comes last). Closing this generator closes ``chunks``."""
    resampler = None
    if rate != target:
        import soxr

        resampler = soxr.ResampleStream(rate, target, 1, dtype="float32", quality=quality)
    try:
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
            if resampler is not None:
                chunk = resampler.resample_chunk(chunk)
            yield chunk
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a generator stopped mid-utterance (a cancel) stops its voice too


def analyze(audio: np.ndarray, rate: int) -> Frames:
    """Analyse mono audio at any ``rate`` (resampled to 24 kHz) into frames.

    Needs pyworld (the ``train`` extra). Frame ``t`` is centred at ``t * 5 ms``.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports the deprecated pkg_resources
        import pyworld

    audio = resample(audio, rate)
    if audio.ndim != 1 or len(audio) < HOP * 4:
        raise FeatureError(f"need mono audio of at least {4 * FRAME_SECONDS * 1000:.0f} ms")
    period_ms = FRAME_SECONDS * 1000
    f0, times = pyworld.dio(audio, SAMPLE_RATE, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL,
                            frame_period=period_ms)
    f0 = pyworld.stonemask(audio, f0, times, SAMPLE_RATE)
    envelope = pyworld.cheaptrick(audio, f0, times, SAMPLE_RATE, f0_floor=F0_FLOOR,
                                  fft_size=ANALYSIS_FFT)
    aperiodicity = pyworld.d4c(audio, f0, times, SAMPLE_RATE, fft_size=ANALYSIS_FFT)
    return Frames(f0.astype(np.float32), mcep_from_envelope(envelope),
                  bap_from_aperiodicity(aperiodicity))


def mel_cepstral_distortion(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean MCD in dB over frames, coefficients 1..39 (c0, the level, excluded), as is usual;
    the arrays are natural-log mel-cepstra of the same length."""
    n = min(len(reference), len(test))
    diff = reference[:n, 1:] - test[:n, 1:]
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))
