"""The voice models end to end: tiny training on a freshly rendered corpus, ONNX export,
cards, windowed acoustic inference, and streaming speech from text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kantor.engine.speech.features import HOP
from kantor.engine.speech.voice import FIRST_CHUNK_FRAMES, Voice, VoiceError, parse_phonemes


@pytest.fixture(scope="module")
def tiny_voice(tmp_path_factory, festival_corpus, festival_features):
    pytest.importorskip("torch")
    from kantor.export.speech.voice_pipeline import train_and_export_voice

    root = tmp_path_factory.mktemp("voice")
    cards = {preset: train_and_export_voice(preset, root / preset, root / "models",
                                            corpus=festival_corpus, features=festival_features)
             for preset in ("prosody-tiny", "acoustic-tiny")}
    return root / "models", cards


@pytest.fixture(scope="module")
def voice(tiny_voice):
    from kantor.engine.speech.acoustic import VoiceModels
    from kantor.engine.speech.frontend import FrontEnd

    return Voice(VoiceModels.load(tiny_voice[0]), FrontEnd.load())


def test_cards_carry_parity_metrics_and_hash(tiny_voice):
    folder, cards = tiny_voice
    prosody, acoustic = cards["prosody-tiny"], cards["acoustic-tiny"]
    assert prosody["onnx_parity_max_abs"] < 1e-3 and acoustic["onnx_parity_max_abs"] < 1e-3
    metrics = prosody["metrics"]
    assert metrics["sentences"] == 2
    assert metrics["duration_mae_ms"] > 0 and 0 <= metrics["voicing_error"] <= 1
    assert acoustic["metrics"]["mcd_db_teacher_durations_and_f0"] > 0
    saved = json.loads((folder / "voice-acoustic.json").read_text())
    assert saved["sha256"] == acoustic["sha256"]


def test_acoustic_window_equals_whole_utterance(voice):
    sentence = voice.sentences("The cat sat on the mat, quietly.")[0]
    from kantor.engine.speech.linguistic import encode
    from kantor.engine.speech.prosody import f0_track, round_durations

    ids, feats = encode(sentence.items)
    prosody = voice.models.prosody(ids, feats)
    durations = round_durations(prosody.frames)
    f0 = f0_track(durations, prosody.log_f0, prosody.voiced)
    total = int(durations.sum())
    encodings = voice.models.encode(ids, feats)
    whole = voice.models.acoustic_window(encodings, durations, f0, 0, total)
    for start in range(0, total, 13):
        part = voice.models.acoustic_window(encodings, durations, f0, start,
                                            min(total, start + 13))
        np.testing.assert_allclose(part.mcep, whole.mcep[start : start + 13], atol=1e-4)


def test_streaming_speech(voice):
    chunks = list(voice.stream("Hello there. How are you today?"))
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert len(chunks[0]) == FIRST_CHUNK_FRAMES * HOP  # the first chunk is short
    audio = np.concatenate(chunks)
    assert np.array_equal(audio, voice.synthesize("Hello there. How are you today?"))
    assert 0.5 < len(audio) / voice.sample_rate < 10
    assert np.abs(audio).max() <= 1.0
    faster = voice.synthesize("Hello there. How are you today?", rate=2.0)
    assert len(faster) < 0.7 * len(audio)


def test_phoneme_input_and_bad_input(voice):
    sentences = parse_phonemes("HH AH0 L OW1 | W ER1 L D .")
    items = sentences[0].items
    assert [i.phone for i in items] == ["pau", "HH", "AH", "L", "OW", "W", "ER", "L", "D",
                                        "pau"]
    assert [i.word for i in items] == [-1, 0, 0, 0, 0, 1, 1, 1, 1, -1]
    assert [i.stress for i in items][1:5] == [0, 0, 0, 1]
    assert len(parse_phonemes("HH AH0 L OW1 , W ER1 L D . AY1 ?")) == 2
    audio = voice.synthesize("HH AH0 L OW1 | W ER1 L D .", phonemes=True)
    assert len(audio) > 0
    with pytest.raises(VoiceError, match="unknown phoneme"):
        voice.synthesize("HH XX0", phonemes=True)
    with pytest.raises(VoiceError):
        voice.synthesize("hello", rate=0.0)
    assert voice.synthesize("").size == 0
    assert voice.synthesize("   \n ").size == 0


def test_split_sentences_speak_like_the_whole_text(voice):
    text = "Hello, how are you today? I paid $3.50 (or so) for it; fine. Done"
    pieces = voice.split(text)
    assert len(pieces) == 3 and pieces[0].endswith("?")
    whole = [[(i.phone, i.stress, i.word) for i in s.items] for s in voice.sentences(text)]
    parts = [[(i.phone, i.stress, i.word) for i in s.items]
             for piece in pieces for s in voice.sentences(piece)]
    assert parts == whole  # phrase pauses kept
    assert [s.question for s in voice.sentences(text)] == \
        [s.question for piece in pieces for s in voice.sentences(piece)] == [True, False, False]
