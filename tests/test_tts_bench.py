"""The TTS benchmark's metric functions on real audio (a Festival render, pocketsphinx,
speechmos's DNSMOS model): a tiny smoke run, no timing asserts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from harness import tts_metrics, tts_systems

HELD_OUT = "The ceaseless thunder of surf."  # a sentence of the corpus's test split


def test_word_errors_counts_edits():
    assert tts_metrics.normalise_words("It can't be 10,000 well-known feet!") == [
        "it", "can't", "be", "10000", "well", "known", "feet"]
    assert tts_metrics.word_errors(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert tts_metrics.word_errors(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert tts_metrics.word_errors(["a", "b"], []) == 2
    assert tts_metrics.corpus_wer(["A b.", "c d e"], ["a b", "c"]) == pytest.approx(2 / 5)


def test_bad_audio_gets_a_metric_error():
    with pytest.raises(tts_metrics.MetricError):
        tts_metrics.to_asr_rate(np.zeros((2, 100), dtype=np.float32), 16000)
    with pytest.raises(tts_metrics.MetricError):
        tts_metrics.to_asr_rate(np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(tts_metrics.MetricError):
        tts_metrics.corpus_wer([], [])


@pytest.fixture(scope="module")
def festival_render(tmp_path_factory):
    if shutil.which("text2wave") is None:
        pytest.fail("Festival is not installed (Debian festival festvox-us-slt-hts; `make test` "
                    "installs them as root)")
    engine = tts_systems.Festival(tmp_path_factory.mktemp("tts"))
    return engine.render(HELD_OUT)


def test_festival_render_is_recognised(festival_render):
    assert festival_render.rate == 32000 and festival_render.duration_s > 0.5
    hypothesis = tts_metrics.Recogniser().transcribe(festival_render.audio, festival_render.rate)
    wer = tts_metrics.corpus_wer([HELD_OUT], [hypothesis])
    assert 0.0 <= wer <= 1.5, hypothesis


def test_dnsmos_scores_are_finite_mos(festival_render):
    scores = tts_metrics.Dnsmos().score(festival_render.audio, festival_render.rate)
    for value in (scores.sig, scores.bak, scores.ovrl):
        assert np.isfinite(value) and 1.0 <= value <= 5.0


@pytest.mark.parametrize("engine_class", ["Flite", "EspeakNg", "Festival"])
def test_batch_renders_the_same_audio_as_one_process_per_sentence(engine_class, tmp_path):
    # the warm (batch) real-time factor divides by the batch's own audio: it must be the
    # same speech as the per-sentence renders, not a shorter or silent file
    texts = ["Good morning, everyone.", "The clock on the wall struck nine as we left."]
    engine = getattr(tts_systems, engine_class)(tmp_path)
    wall, seconds = engine.render_batch(texts)
    one_by_one = sum(engine.render(text).duration_s for text in texts)
    assert wall > 0 and seconds == pytest.approx(one_by_one, rel=0.05)
    assert 0 < engine.startup_s(repeats=1) < wall
