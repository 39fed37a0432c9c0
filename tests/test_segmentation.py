"""The segmentation model and forced alignment (export/speech/segmentation) and the
LJSpeech-layout reader (export/speech/ljspeech), on sentences Festival renders here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kantor.engine.speech.features import resample
from kantor.engine.speech.phones import PAUSE
from kantor.export.speech.segmentation import (
    PARITY_TOLERANCE,
    AlignmentError,
    boundary_errors,
    summarise,
    viterbi,
)


def _scores(durations: list[int], phones: int | None = None, seed: int = 0) -> np.ndarray:
    """Log-scores where each frame clearly belongs to its phone, plus small noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(durations)), durations)
    scores = np.full((len(labels), phones or len(durations)), -6.0)
    scores += rng.normal(0, 0.3, scores.shape)
    scores[np.arange(len(labels)), labels] = -0.05
    return scores


def test_viterbi_recovers_known_durations():
    durations = [7, 3, 12, 2, 5, 9]
    assert viterbi(_scores(durations), min_frames=2).tolist() == durations
    assert viterbi(_scores(durations), min_frames=1).tolist() == durations


def test_viterbi_skips_an_optional_pause_the_audio_lacks():
    # phone 2 is a pause the reader did not make: no frame favours it
    durations = [6, 4, 0, 8, 5]
    optional = [False, False, True, False, False]
    assert viterbi(_scores(durations), 2, optional).tolist() == durations
    # not optional: it must take min_frames from a neighbour
    forced = viterbi(_scores(durations), 2)
    assert forced[2] == 2 and forced.sum() == sum(durations)


def test_viterbi_enforces_the_minimum_duration():
    # a phone with one frame of evidence still gets min_frames
    durations = viterbi(_scores([5, 1, 6]), min_frames=3)
    assert durations[1] == 3 and durations.sum() == 12


def test_viterbi_rejects_impossible_inputs():
    with pytest.raises(AlignmentError, match="cannot hold"):
        viterbi(np.zeros((5, 4)), min_frames=2)
    with pytest.raises(AlignmentError, match="frames, phones"):
        viterbi(np.zeros(5))
    with pytest.raises(AlignmentError, match="optional"):
        viterbi(np.zeros((9, 3)), optional=[True])


def test_boundary_summary():
    errors = boundary_errors(np.array([4, 6, 5]), np.array([5, 5, 5]))
    assert errors.tolist() == [-1, 0]
    assert summarise(np.array([0, 2, 4, 5]))["within_20ms"] == 0.75
    assert summarise(np.array([0, 2, 4, 5]))["within_10ms"] == 0.5


# ---------------------------------------------------------------- on rendered speech

@pytest.fixture(scope="module")
def examples(festival_corpus):
    """The fixture sentences with Festival's segments (the truth)."""
    from kantor.export.speech.dataset import load_examples

    return load_examples(None, need_frames=False, corpus=festival_corpus)


@pytest.fixture(scope="module")
def labelled_audio(festival_corpus, examples):
    from kantor.export.speech.segmentation import labelled

    return labelled(examples, festival_corpus)


def test_tiny_training_run_exports_with_parity(labelled_audio, tmp_path):
    pytest.importorskip("torch")
    from kantor.export.speech.segmentation import PRESETS, export_onnx, frame_accuracy, train

    net, record = train(PRESETS["tiny"], labelled_audio, tmp_path / "run",
                        valid=labelled_audio[:1])
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    assert len(record["epochs"]) == PRESETS["tiny"].epochs
    assert 0.0 <= frame_accuracy(net, labelled_audio) <= 1.0
    parity = export_onnx(net, tmp_path / "aligner.onnx")
    assert parity < PARITY_TOLERANCE


def test_shipped_aligner_finds_festival_boundaries(examples, labelled_audio):
    from kantor.export.speech.segmentation import Aligner, evaluate

    aligner = Aligner.load()
    assert aligner.model.card["metrics"]["phrase_pauses_optional"]["within_20ms"] >= 0.9
    metrics = evaluate(aligner, examples, labelled_audio)
    assert metrics["within_20ms"] >= 0.85, metrics
    assert metrics["pauses_skipped"] == 0  # Festival made every pause it was given


def test_aligner_rejects_unknown_phones(labelled_audio):
    from kantor.export.speech.segmentation import Aligner

    with pytest.raises(AlignmentError, match="unknown phones"):
        Aligner.load().align_mel(labelled_audio[0].mel, ["pau", "HH", "AH0", "pau"])


def test_log_mel_follows_the_analysis_frame_grid():
    from kantor.engine.speech.features import analyze
    from kantor.export.speech.segmentation import MEL_BANDS, frame_count, log_mel

    rng = np.random.default_rng(0)
    for rate in (16000, 22050, 44100):
        audio = rng.normal(0, 0.1, int(rate * 0.731))
        mel = log_mel(audio, rate)
        assert mel.shape == (len(analyze(audio, rate)), MEL_BANDS) == (frame_count(
            len(audio), rate), MEL_BANDS)
        assert np.isfinite(mel).all()
    assert log_mel(np.zeros(100), 16000, frames=30).shape == (30, MEL_BANDS)
    with pytest.raises(AlignmentError, match="mono"):
        log_mel(np.zeros((100, 2)), 16000)


# ---------------------------------------------------------------- LJSpeech layout

def _ljspeech_folder(festival_corpus: Path, root: Path, rate: int = 22050) -> Path:
    """The fixture sentences as an unlabelled LJSpeech-layout corpus at ``rate``."""
    from kantor.export.speech.festival import read_corpus_index

    (root / "wavs").mkdir(parents=True)
    lines = []
    for ident, _, text in read_corpus_index(festival_corpus):
        audio, source_rate = sf.read(festival_corpus / f"{ident}.wav")
        sf.write(root / "wavs" / f"{ident}.wav", resample(audio, source_rate, rate), rate)
        lines.append(f"{ident}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_ljspeech_alignment_matches_withheld_labels(festival_corpus, examples, tmp_path):
    from kantor.export.speech.ljspeech import load_ljspeech

    folder = _ljspeech_folder(festival_corpus, tmp_path / "corpus")
    truth = {e.text: e for e in examples}

    def festival_phones(text: str):  # the phone sequence only; the boundaries stay withheld
        return truth[text].items, text.endswith("?")

    aligned = load_ljspeech(folder, phonemize=festival_phones)
    assert len(aligned) == len(examples)
    errors = []
    for e in aligned:
        reference = truth[e.text]
        assert int(e.durations.sum()) == len(e.frames)
        assert len(e.ids) == len(e.items) == len(e.durations)
        assert e.items == reference.items  # no pause dropped: Festival made them all
        errors.append(boundary_errors(e.durations, reference.durations))
    metrics = summarise(np.concatenate(errors))
    assert metrics["within_20ms"] >= 0.85, metrics


def test_ljspeech_with_the_text_front_end(festival_corpus, tmp_path):
    from kantor.export.speech.ljspeech import load_ljspeech

    folder = _ljspeech_folder(festival_corpus, tmp_path / "corpus")
    aligned = load_ljspeech(folder, limit=1)
    e = aligned[0]
    assert e.items[0].phone == PAUSE and e.items[-1].phone == PAUSE
    assert int(e.durations.sum()) == len(e.frames) and (e.durations >= 2).all()
    assert e.ids.shape == (len(e.items),) and e.feats.shape[0] == len(e.items)


@pytest.mark.parametrize(("content", "message"), [
    ("LJ001-0001\n", "expected 'ID|text|normalized'"),
    ("LJ001-0001|a|b|c\n", "expected 'ID|text|normalized'"),
    ("|Hello there.|Hello there.\n", "bad utterance id"),
    ("LJ001-0001| | \n", "has no text"),
    ("LJ001-0001|Hi.|Hi.\nLJ001-0001|Hi.|Hi.\n", "listed twice"),
    ("\n\n", "lists no utterances"),
])
def test_malformed_metadata_is_a_clear_error(tmp_path, content, message):
    from kantor.export.speech.ljspeech import CorpusError, read_metadata

    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "wavs" / "LJ001-0001.wav", np.zeros(2205), 22050)
    (tmp_path / "metadata.csv").write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_metadata(tmp_path)


def test_missing_metadata_or_wav_is_a_clear_error(tmp_path):
    from kantor.export.speech.ljspeech import CorpusError, read_metadata

    with pytest.raises(CorpusError, match=r"metadata\.csv is missing"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.csv").write_text("LJ001-0002|Hello.|Hello.\n")
    with pytest.raises(CorpusError, match=r"metadata\.csv:1: .*LJ001-0002\.wav is missing"):
        read_metadata(tmp_path)


def test_unreadable_or_too_short_audio_is_a_clear_error(tmp_path):
    from kantor.engine.speech.linguistic import PhoneItem
    from kantor.export.speech.ljspeech import CorpusError, Utterance, align_utterance
    from kantor.export.speech.segmentation import Aligner

    def phones(text: str):
        return [PhoneItem(PAUSE, 0, -1), PhoneItem("HH", 0, 0), PhoneItem("AY", 1, 0),
                PhoneItem(PAUSE, 0, -1)], False

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    with pytest.raises(CorpusError, match="cannot read audio"):
        align_utterance(Utterance("x", "Hi.", broken), Aligner.load(), phones)
    short = tmp_path / "short.wav"
    sf.write(short, np.random.default_rng(0).normal(0, 0.1, 500), 22050)  # 23 ms
    with pytest.raises(CorpusError, match="cannot hold"):
        align_utterance(Utterance("x", "Hi.", short), Aligner.load(), phones)
