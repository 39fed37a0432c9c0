"""Source-filter vocoder for the feature contract (engine/speech/features.py).

WORLD-style synthesis, streaming: every 5 ms frame gives two minimum-phase responses from
its mel-cepstral envelope, one for the periodic part (weighted by ``1 - ap^2``) and one for
the noise part (``ap^2``; all noise where unvoiced). Pitch pulses are placed by a phase
accumulator running over the samples with F0 interpolated between frames; each pulse adds
the periodic response of its frame, scaled by ``sqrt(rate / f0)`` so that the pulse
train's power matches the envelope. Noise comes frame by frame as a random-phase spectrum
shaped by the noise response, sine-windowed and overlap-added at 50 %.

The per-frame spectra are batched numpy FFTs; the sample loop (pulses + overlap-add) is a
Numba kernel compiled with ``cache=True, nogil=True`` and warmed in ``Vocoder.__init__``.
The state - pulse phase, last F0, the overlap tail and the noise generator - is carried
from one ``process`` call to the next, so chunked output equals whole-utterance output.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kantor.engine.speech.features import (
    HOP,
    SAMPLE_RATE,
    Frames,
    band_basis,
    envelope_basis,
)

FFT_SIZE = 512  # 21 ms responses: a voice's envelope decays well within that
_BINS = FFT_SIZE // 2 + 1
_NOISE_LEN = 2 * HOP
_SINE_WINDOW = np.sin(np.pi * (np.arange(_NOISE_LEN) + 0.5) / _NOISE_LEN)
# the stream is delayed by this much so that frame t's noise window (centred at t*HOP)
# fits from the first sample; ``process`` output is aligned back by it.
_LEAD = HOP // 2


def _minimum_phase_operator(fft_size: int) -> np.ndarray:
    """Complex (bins, 40) matrix M: the minimum-phase complex log spectrum = M @ mcep.

    Real cepstrum of B @ mcep, folded onto positive quefrencies, back to the spectrum;
    every step is linear in the cepstrum, so it collapses to one matrix."""
    basis = envelope_basis(fft_size)  # (bins, 40) log amplitude
    cepstrum = np.fft.irfft(basis, n=fft_size, axis=0)  # (fft, 40)
    fold = np.zeros_like(cepstrum)
    fold[0] = cepstrum[0]
    fold[1 : fft_size // 2] = 2.0 * cepstrum[1 : fft_size // 2]
    fold[fft_size // 2] = cepstrum[fft_size // 2]
    return np.fft.rfft(fold, axis=0)


_MIN_PHASE = _minimum_phase_operator(FFT_SIZE)  # (bins, 40) complex
# real and imaginary parts side by side: one matrix product per chunk
_PHASE = np.ascontiguousarray(np.concatenate([_MIN_PHASE.real.T, _MIN_PHASE.imag.T], axis=1),
                              dtype=np.float32)  # (40, 2 * bins)
_BAND_DB = np.ascontiguousarray(band_basis(FFT_SIZE).T, dtype=np.float32)  # (5, bins)
NOISE_FFT = FFT_SIZE // 2  # noise needs no phase detail: every other bin, a shorter FFT
_NOISE_BINS = NOISE_FFT // 2 + 1
_NOISE_BANK_SIZE = 1024  # random unit spectra, picked per frame at random


@njit(cache=True, nogil=True, fastmath=True)
def _spectra(log_spectrum: np.ndarray, ap_db: np.ndarray, voiced: np.ndarray,
             bank: np.ndarray, picks: np.ndarray, periodic: np.ndarray,
             noise: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per frame and bin: the periodic spectrum ``exp(L) * sqrt(1 - ap^2)`` (minimum
    phase; ``L`` = real parts then imaginary parts in ``log_spectrum``) and, on every
    other bin, the noise spectrum ``|exp(L)| * ap * white``."""
    frames, bins = ap_db.shape
    for t in range(frames):
        row = bank[picks[t]]
        for k in range(bins):
            ap_power = min(np.exp(ap_db[t, k] * 0.23025851), 1.0) if voiced[t] else 1.0
            amplitude = np.exp(log_spectrum[t, k])
            phase = log_spectrum[t, bins + k]
            scale = amplitude * np.sqrt(1.0 - ap_power)
            periodic[t, k] = complex(scale * np.cos(phase), scale * np.sin(phase))
            if k % 2 == 0:
                noise[t, k // 2] = row[k // 2] * (amplitude * np.sqrt(ap_power))


@njit(cache=True, nogil=True)
def _render(f0: np.ndarray, periodic: np.ndarray, noise: np.ndarray, window: np.ndarray,
            out: np.ndarray, state: np.ndarray) -> None:  # pragma: no cover - compiled
    """Add pulses and windowed noise of ``len(f0)`` frames into ``out`` (T*HOP + tail).

    ``state`` = [phase in periods, f0 of the previous frame]; updated in place."""
    phase = state[0]
    previous = state[1]
    fft = periodic.shape[1]
    width = len(window)
    for t in range(len(f0)):
        start = t * HOP
        for k in range(width):
            out[start + k] += noise[t, k] * window[k]
        current = f0[t]
        if current <= 0.0:
            previous = 0.0
            continue
        begin = previous if previous > 0.0 else current
        for n in range(HOP):
            hz = begin + (current - begin) * (n + 0.5) / HOP
            phase += hz / SAMPLE_RATE
            if phase >= 1.0:
                phase -= 1.0
                gain = np.sqrt(SAMPLE_RATE / hz)
                at = start + _LEAD + n
                for k in range(fft):
                    out[at + k] += gain * periodic[t, k]
        previous = current
    state[0] = phase
    state[1] = previous


class Vocoder:
    """Streaming synthesiser: ``process(frames)`` returns ``len(frames) * HOP`` samples of
    float32 audio at 24 kHz; ``flush()`` returns the tail at the end of an utterance.

    ``seed`` fixes the noise, so the same frames always give the same audio.
    """

    name = "world"
    lookahead = 0  # frames it waits for beyond those it renders (the neural one: several)
    delay = HOP  # samples between a frame's centre and its sound in the output

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._make_bank()
        self.reset()
        # compile (or load from the cache) and run once, so the first real call is fast
        warm = Frames(np.full(4, 120.0, np.float32), np.zeros((4, 40), np.float32),
                      np.full((4, 5), -20.0, np.float32))
        self.process(warm)
        self.reset()

    def reset(self) -> None:
        """Start a new utterance: silence, phase 0, the noise generator re-seeded."""
        self._state = np.zeros(2)
        self._tail = np.zeros(FFT_SIZE + _NOISE_LEN, np.float64)
        self._rng = np.random.default_rng(self.seed)

    def _make_bank(self) -> None:
        # white noise of unit variance has E|X_k|^2 = n in rfft terms (n = NOISE_FFT)
        bank_rng = np.random.default_rng(self.seed + 1)
        pairs = bank_rng.standard_normal((_NOISE_BANK_SIZE, _NOISE_BINS, 2))
        self._bank = (pairs[..., 0] + 1j * pairs[..., 1]) * np.sqrt(NOISE_FFT / 2.0)

    def responses(self, frames: Frames) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame periodic responses (T, FFT_SIZE) and noise (T, NOISE_FFT), the noise
        not yet windowed."""
        count = len(frames)
        mcep = np.ascontiguousarray(frames.mcep, dtype=np.float32)
        bap = np.ascontiguousarray(frames.bap, dtype=np.float32)
        periodic = np.empty((count, _BINS), np.complex128)
        noise = np.empty((count, _NOISE_BINS), np.complex128)
        picks = self._rng.integers(0, _NOISE_BANK_SIZE, count)
        _spectra(mcep @ _PHASE, bap @ _BAND_DB, frames.f0 > 0, self._bank, picks, periodic,
                 noise)
        return (np.fft.irfft(periodic, n=FFT_SIZE, axis=1),
                np.fft.irfft(noise, n=NOISE_FFT, axis=1))

    def process(self, frames: Frames) -> np.ndarray:
        """Synthesise ``frames``; returns exactly ``len(frames) * HOP`` float32 samples."""
        count = len(frames) * HOP
        if count == 0:
            return np.zeros(0, np.float32)
        periodic, noise = self.responses(frames)
        buffer = np.zeros(count + len(self._tail))
        buffer[: len(self._tail)] += self._tail
        _render(np.ascontiguousarray(frames.f0, dtype=np.float64), periodic, noise,
                _SINE_WINDOW, buffer, self._state)
        self._tail = buffer[count:].copy()
        return buffer[:count].astype(np.float32)

    def flush(self) -> np.ndarray:
        """The rest of the last responses (``FFT_SIZE`` samples); then ``reset``."""
        tail = self._tail[: FFT_SIZE].astype(np.float32)
        self.reset()
        return tail

    def synthesize(self, frames: Frames) -> np.ndarray:
        """A whole utterance: ``process`` + ``flush``, float32 at 24 kHz."""
        self.reset()
        return np.concatenate([self.process(frames), self.flush()])
