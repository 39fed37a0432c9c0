"""The feature contract and the Numba vocoder, on real Festival speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kantor.engine.speech.features import (
    HOP,
    SAMPLE_RATE,
    FeatureError,
    Frames,
    analyze,
    mel_cepstral_distortion,
    resample,
)
from kantor.engine.speech.vocoder import Vocoder


@pytest.fixture(scope="module")
def speech(festival_corpus):
    wav = sorted(festival_corpus.glob("*.wav"))[0]
    audio, rate = sf.read(wav)
    return resample(audio, rate), analyze(audio, rate)


def test_analysis_follows_the_contract(speech):
    audio, frames = speech
    assert abs(len(frames) - len(audio) / HOP) <= 2  # one frame per 5 ms
    voiced = frames.f0[frames.f0 > 0]
    assert 0.3 < len(voiced) / len(frames) < 0.95
    assert 120 < np.median(voiced) < 260  # the SLT voice sits around 150-220 Hz
    assert np.all(frames.bap <= 0.0)
    assert frames.mcep.dtype == np.float32 and frames.mcep.shape[1] == 40


def test_analysis_synthesis_round_trip(speech):
    audio, frames = speech
    out = Vocoder().synthesize(frames)
    assert out.dtype == np.float32
    assert len(out) == len(frames) * HOP + 512
    # same loudness within 3 dB and the same spectral envelope within a few dB
    level = 20 * np.log10(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(audio**2)))
    assert abs(level) < 3.0
    again = analyze(out[HOP:].astype(np.float64), SAMPLE_RATE)  # vocoder lags one frame
    assert mel_cepstral_distortion(frames.mcep, again.mcep) < 4.0
    both = (frames.f0[: len(again)] > 0) & (again.f0[: len(frames)] > 0)
    ratio = again.f0[: len(frames)][both] / frames.f0[: len(again)][both]
    assert np.median(np.abs(np.log2(ratio))) < 0.03  # pitch kept within half a semitone


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_chunked_output_equals_whole_utterance(speech, chunk):
    _, frames = speech
    vocoder = Vocoder(seed=3)
    whole = vocoder.synthesize(frames)
    vocoder.reset()
    parts = [vocoder.process(frames[i : i + chunk]) for i in range(0, len(frames), chunk)]
    parts.append(vocoder.flush())
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_same_seed_same_audio_and_silence_for_silence(speech):
    _, frames = speech
    assert np.array_equal(Vocoder(seed=1).synthesize(frames), Vocoder(seed=1).synthesize(frames))
    quiet = Frames(np.zeros(50, np.float32), np.full((50, 40), 0.0, np.float32),
                   np.zeros((50, 5), np.float32))
    quiet.mcep[:, 0] = -20.0  # an envelope 170 dB down
    assert np.abs(Vocoder().synthesize(quiet)).max() < 1e-6


def test_bad_audio_and_frames_are_refused():
    with pytest.raises(FeatureError):
        analyze(np.zeros(10), 24000)
    with pytest.raises(FeatureError):
        Frames(np.zeros(3, np.float32), np.zeros((4, 40), np.float32),
               np.zeros((3, 5), np.float32))
