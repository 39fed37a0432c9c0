"""The neural vocoder: a tiny one trained on freshly rendered Festival speech, exported to
ONNX with its card; its streaming synthesis against its whole-utterance synthesis and
against the training code's torch synthesis; the voice with either vocoder."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from kantor.engine.models import ModelError, load_model
from kantor.engine.speech.features import HOP, MCEP_SIZE, Frames, analyze, resample
from kantor.engine.speech.neural_vocoder import (
    NeuralVocoder,
    frame_picks,
    make_vocoder,
    oscillator_f0,
)
from kantor.engine.speech.vocoder import Vocoder


@pytest.fixture(scope="module")
def tiny_vocoder(tmp_path_factory, festival_corpus, festival_features):
    pytest.importorskip("torch")
    from kantor.export.speech.neural_vocoder import train_and_export_vocoder

    root = tmp_path_factory.mktemp("vocoder")
    card = train_and_export_vocoder("vocoder-tiny", root / "run", root / "models",
                                    corpus=festival_corpus, features=festival_features)
    return root / "models", card


@pytest.fixture(scope="module")
def vocoder(tiny_vocoder):
    return NeuralVocoder.load(tiny_vocoder[0], seed=3)


@pytest.fixture(scope="module")
def speech(festival_corpus):
    wav = sorted(festival_corpus.glob("*.wav"))[0]
    audio, rate = sf.read(wav)
    return resample(audio, rate), analyze(audio, rate)


def test_card_carries_parity_metrics_and_hash(tiny_vocoder):
    folder, card = tiny_vocoder
    assert card["onnx_parity_max_abs"] < 1e-3
    assert card["config"]["receptive_frames"] == 3  # dilations 1 and 2, kernel 3
    metrics = card["metrics"]
    assert metrics["sentences"] == 2
    for name in ("neural_analysed", "world_analysed", "neural_predicted", "world_predicted"):
        assert metrics[name]["stft_distance"] > 0 and metrics[name]["mcd_db"] > 0
    saved = json.loads((folder / "voice-vocoder.json").read_text())
    assert saved["sha256"] == card["sha256"]
    assert len(card["training"]["epochs"]) == 2


def test_resynthesis_keeps_length_loudness_and_pitch(vocoder, speech):
    audio, frames = speech
    out = vocoder.synthesize(frames)
    assert out.dtype == np.float32 and len(out) == len(frames) * HOP
    assert vocoder.delay == 0 and vocoder.lookahead == 4
    # barely trained, it is still the WORLD-style vocoder it started as: same loudness
    # within 3 dB, same pitch within half a semitone
    level = 20 * np.log10(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(audio**2)))
    assert abs(level) < 3.0
    again = analyze(out.astype(np.float64), 24000)
    both = (frames.f0[: len(again)] > 0) & (again.f0[: len(frames)] > 0)
    ratio = again.f0[: len(frames)][both] / frames.f0[: len(again)][both]
    assert np.median(np.abs(np.log2(ratio))) < 0.03


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_chunked_output_equals_whole_utterance(vocoder, speech, chunk):
    _, frames = speech
    whole = vocoder.synthesize(frames)
    vocoder.reset()
    parts = [vocoder.process(frames[i : i + chunk]) for i in range(0, len(frames), chunk)]
    parts.append(vocoder.flush())
    assert sum(len(p) for p in parts) == len(whole)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_engine_synthesis_is_the_training_synthesis(vocoder, speech):
    """The torch synthesis the loss is measured on, fed the engine's spectra and noise,
    gives the engine's samples: training learns the audio the engine makes."""
    torch = pytest.importorskip("torch")
    from kantor.export.speech.neural_vocoder import synthesise

    _, frames = speech
    out = vocoder.synthesize(frames)
    features = np.concatenate([frames.f0[:, None], frames.mcep, frames.bap], axis=1)
    harmonic, noise = vocoder.spectra(features.astype(np.float32))
    count = len(frames)
    white = vocoder._bank[frame_picks(vocoder.seed, 0, count)]
    with torch.no_grad():
        expected = synthesise(torch.from_numpy(harmonic[None]), torch.from_numpy(noise[None]),
                              torch.from_numpy(oscillator_f0(frames.f0)[None]),
                              torch.zeros(1), torch.from_numpy(white[None]))[0].numpy()
    assert len(expected) == (count - 1) * HOP
    scale = np.abs(out).max()
    np.testing.assert_allclose(out[: len(expected)], expected, atol=1e-4 * scale)


def test_same_seed_same_audio_and_silence_for_silence(tiny_vocoder, vocoder, speech):
    _, frames = speech
    other = NeuralVocoder.load(tiny_vocoder[0], seed=3)
    assert np.array_equal(vocoder.synthesize(frames), other.synthesize(frames))
    assert not np.array_equal(vocoder.synthesize(frames),
                              NeuralVocoder.load(tiny_vocoder[0], seed=4).synthesize(frames))
    quiet = Frames(np.zeros(50, np.float32), np.zeros((50, MCEP_SIZE), np.float32),
                   np.zeros((50, 5), np.float32))
    quiet.mcep[:, 0] = -20.0  # an envelope 170 dB down
    assert np.abs(vocoder.synthesize(quiet)).max() < 1e-5
    assert vocoder.flush().size == 0  # nothing pending


def test_oscillator_holds_the_last_voiced_f0():
    f0 = np.array([0, 0, 200, 210, 0, 0, 190, 0], np.float32)
    assert oscillator_f0(f0, 150.0).tolist() == [150, 150, 200, 210, 210, 210, 190, 190]


def test_choosing_a_vocoder(tiny_vocoder, caplog):
    model = load_model(tiny_vocoder[0] / "voice-vocoder.onnx")
    assert isinstance(make_vocoder("neural", model), NeuralVocoder)
    assert isinstance(make_vocoder("auto", model), NeuralVocoder)
    assert isinstance(make_vocoder("world", model), Vocoder)
    with caplog.at_level(logging.WARNING):
        assert isinstance(make_vocoder("auto", None, why_not="no model file"), Vocoder)
    assert "no model file" in caplog.text
    with pytest.raises(ModelError, match="not available"):
        make_vocoder("neural", None, why_not="no model file")
    with pytest.raises(ValueError, match="unknown vocoder"):
        make_vocoder("wavenet", model)


def test_a_voice_speaks_with_either_vocoder(tiny_vocoder, tmp_path):
    """The shipped voice models with the tiny vocoder beside them: streaming equals the
    whole, the first chunk is as short as ever, and a corrupt vocoder falls back."""
    from kantor.engine.models import ASSETS
    from kantor.engine.speech.acoustic import VoiceModels
    from kantor.engine.speech.frontend import FrontEnd
    from kantor.engine.speech.voice import FIRST_CHUNK_FRAMES, Voice

    for name in ("voice-prosody", "voice-acoustic-encoder", "voice-acoustic"):
        for suffix in (".onnx", ".json"):
            shutil.copy(ASSETS / f"{name}{suffix}", tmp_path)
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_vocoder[0] / f"voice-vocoder{suffix}", tmp_path)
    front_end = FrontEnd.load()
    models = VoiceModels.load(tmp_path)
    text = "Hello there. How are you today?"
    for kind in ("neural", "world"):
        voice = Voice(models, front_end, vocoder=kind)
        assert voice.vocoder.name == kind
        chunks = list(voice.stream(text))
        assert len(chunks[0]) == FIRST_CHUNK_FRAMES * HOP
        audio = np.concatenate(chunks)
        assert np.array_equal(audio, voice.synthesize(text))
        assert 1.0 < len(audio) / voice.sample_rate < 5 and np.abs(audio).max() <= 1.0
    (tmp_path / "voice-vocoder.onnx").write_bytes(b"not a model")
    models = VoiceModels.load(tmp_path)
    assert models.vocoder_model is None and "does not match its card" in models.vocoder_error
    assert Voice(models, front_end).vocoder.name == "world"
    with pytest.raises(ModelError, match="does not match its card"):
        Voice(models, front_end, vocoder="neural")


def test_the_shipped_voice_speaks_through_its_neural_vocoder():
    """The shipped vocoder loads by default, its card says it is closer to the teacher than
    the WORLD-style one on held-out sentences, and it speaks at the teacher's level."""
    from kantor.engine.models import ASSETS, read_card
    from kantor.engine.speech.voice import Voice

    card = read_card(ASSETS / "voice-vocoder.onnx")
    measured = card["metrics"]
    for features in ("analysed", "predicted"):
        assert (measured[f"neural_{features}"]["stft_distance"]
                < measured[f"world_{features}"]["stft_distance"])
    voice = Voice.load()
    assert voice.vocoder.name == "neural"
    audio = voice.synthesize("The quick brown fox jumps over the lazy dog.")
    assert np.isfinite(audio).all() and 1.5 < len(audio) / voice.sample_rate < 5
    assert 0.02 < float(np.sqrt(np.mean(audio ** 2))) < 0.3
