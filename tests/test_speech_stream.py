"""SpeechStream: the ring, the queue, cancel, pause, underflow counting and resampling.

The voices here are small real generators (known signals, gates, sleeps) so that each
property can be checked exactly; tests/test_audio_jack.py drives the trained voice."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from kantor.engine.speech.stream import SpeechStream, SpeechStreamError

RATE = 24000


class RampVoice:
    """Says ``len(text) * 100`` samples of a ramp that never touches zero, so every
    sample is identifiable and gaps (zeros) stand out; chunks of 37 samples."""

    sample_rate = RATE

    def __init__(self) -> None:
        self.closed = 0

    @staticmethod
    def signal(text: str) -> np.ndarray:
        n = len(text) * 100
        return (0.1 + 0.8 * (np.arange(n) % 997) / 997).astype(np.float32)

    def stream(self, text, *, rate=1.0, pitch=1.0, phonemes=False):
        signal = self.signal(text)
        try:
            for start in range(0, signal.size, 37):
                yield signal[start:start + 37]
        finally:
            self.closed += 1


class GatedVoice(RampVoice):
    """Holds its first chunk until ``gate`` is set (a synthesiser busy on a phrase)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def stream(self, text, *, rate=1.0, pitch=1.0, phonemes=False):
        self.entered.set()
        self.gate.wait(10)
        yield from super().stream(text)


class SteppedVoice:
    """A constant 0.5 in 10 ms chunks, each made only when the test releases it: a
    synthesiser slower than real time, stepped by hand."""

    sample_rate = RATE
    chunk = RATE // 100

    def __init__(self, chunks: int = 8) -> None:
        self.chunks = chunks
        self.steps = threading.Semaphore(0)

    def stream(self, text, *, rate=1.0, pitch=1.0, phonemes=False):
        for _ in range(self.chunks):
            assert self.steps.acquire(timeout=10)
            yield np.full(self.chunk, 0.5, dtype=np.float32)


def fill_until(stream: SpeechStream, predicate, block: int = 256, timeout: float = 10):
    """Device-style callbacks until ``predicate(stats)`` holds."""
    out = np.zeros(block, dtype=np.float32)
    deadline = time.monotonic() + timeout
    while not predicate(stream.stats()):
        assert time.monotonic() < deadline, "timed out"
        stream.fill(out)
        time.sleep(0.001)


class ToneVoice:
    """1 kHz and 5 kHz sines, 0.5 s, in chunks of odd sizes."""

    sample_rate = RATE

    @staticmethod
    def signal() -> np.ndarray:
        t = np.arange(RATE // 2) / RATE
        return (0.3 * np.sin(2 * np.pi * 1000 * t)
                + 0.3 * np.sin(2 * np.pi * 5000 * t)).astype(np.float32)

    def stream(self, text, *, rate=1.0, pitch=1.0, phonemes=False):
        signal = self.signal()
        bounds = np.cumsum([0] + [211, 480, 1] * (signal.size // 692 + 1))
        for a, b in itertools.pairwise(bounds):
            if a >= signal.size:
                break
            yield signal[a:b]


class BrokenVoice:
    sample_rate = RATE

    def stream(self, text, *, rate=1.0, pitch=1.0, phonemes=False):
        yield np.zeros(10, dtype=np.float32)
        raise ValueError("the model fell over")


def pull_all(stream: SpeechStream, block: int = 333, timeout: float = 10) -> np.ndarray:
    """Everything the stream makes, pulled as a file writer would."""
    buffer = np.zeros(block, dtype=np.float32)
    parts = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = stream.pull(buffer)
        if n:
            parts.append(buffer[:n].copy())
        elif stream.idle():
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        else:
            time.sleep(0.001)
    raise AssertionError("the stream did not finish")


def play_realtime(stream: SpeechStream, blocks: int, block: int = 256,
                  channels: int = 0) -> np.ndarray:
    """``blocks`` device-style callbacks paced at the output rate."""
    shape = (block,) if channels == 0 else (block, channels)
    out = np.zeros(shape, dtype=np.float32)
    parts = []
    for _ in range(blocks):
        stream.fill(out)
        parts.append(out.copy())
        time.sleep(block / stream.output_rate)
    return np.concatenate(parts)


def test_ring_wraps_around_many_times_without_losing_a_sample():
    voice = RampVoice()
    texts = ["a" * 40, "b" * 25, "c" * 33]  # 9800 samples through a 1000-sample ring
    with SpeechStream(voice, buffer_s=1000 / RATE, prebuffer_s=0) as stream:
        for text in texts:
            assert stream.say(text)
        got = pull_all(stream)
        stats = stream.stats()
    want = np.concatenate([RampVoice.signal(t) for t in texts])
    np.testing.assert_array_equal(got, want)
    assert stats.utterances_done == 3 and stats.samples_out == want.size
    assert stats.underflows == 0 and stats.drops == 0
    assert len(stats.first_audio_out_s) == 3
    assert all(b <= o for b, o in zip(stats.first_audio_buffered_s, stats.first_audio_out_s,
                                      strict=True))


def test_fill_copies_mono_to_every_channel_and_zero_fills_the_rest():
    with SpeechStream(RampVoice(), buffer_s=0.05, prebuffer_s=0) as stream:
        stream.say("x" * 30)  # 3000 samples, 0.125 s
        assert stream.wait_idle(0) is False
        out = np.zeros((256, 2), dtype=np.float32)
        parts = []
        deadline = time.monotonic() + 10
        while not stream.idle() and time.monotonic() < deadline:
            stream.fill(out)
            parts.append(out.copy())
            time.sleep(256 / RATE)
        stream.fill(out)  # after the end: silence
        assert np.all(out == 0)
        stats = stream.stats()
    played = np.concatenate(parts)
    np.testing.assert_array_equal(played[:, 0], played[:, 1])
    sound = played[:, 0][played[:, 0] != 0]  # gaps, if the machine stalled, are zeros
    np.testing.assert_array_equal(sound, RampVoice.signal("x" * 30))
    assert stats.utterances_done == 1


def test_cancel_mid_utterance_silences_at_once_and_empties_the_queue():
    voice = RampVoice()
    with SpeechStream(voice, buffer_s=0.1, prebuffer_s=0) as stream:
        stream.say("a" * 2000)  # 200 000 samples: far longer than the ring
        stream.say("b" * 10)
        stream.say("c" * 10)
        out = np.zeros(512, dtype=np.float32)
        while stream.stats().samples_out < 1024:
            stream.fill(out)
            time.sleep(0.001)
        stream.cancel()
        stream.fill(out)
        assert np.all(out == 0)
        assert stream.wait_idle(5)
        stats = stream.stats()
        assert stats.cancelled == 3 and stats.utterances_done == 0
        assert voice.closed == 1  # the generator was stopped, not run to its end
        # the stream carries on with what is said next
        stream.say("d" * 5)
        got = pull_all(stream)
        np.testing.assert_array_equal(got, RampVoice.signal("d" * 5))
        assert stream.stats().utterances_done == 1


def test_cancel_before_the_first_phrase_is_ready():
    voice = GatedVoice()
    with SpeechStream(voice, prebuffer_s=0) as stream:
        stream.say("a" * 10)
        assert voice.entered.wait(5)
        stream.cancel()
        voice.gate.set()
        assert stream.wait_idle(5)
        assert pull_all(stream).size == 0
        assert stream.stats().cancelled == 1


def test_pause_holds_the_place_and_resume_continues_it():
    with SpeechStream(RampVoice(), buffer_s=0.5, prebuffer_s=0) as stream:
        stream.say("p" * 50)  # 5000 samples
        out = np.zeros(1000, dtype=np.float32)
        while stream.pull(out) == 0:  # the first block, whenever it is ready
            time.sleep(0.001)
        first = out.copy()
        stream.pause()
        assert stream.paused
        for _ in range(5):
            stream.fill(out)
            assert np.all(out == 0)
        assert stream.stats().underflows == 0
        stream.resume()
        rest = pull_all(stream)
    np.testing.assert_array_equal(np.concatenate([first, rest]), RampVoice.signal("p" * 50))


def test_a_full_queue_refuses_and_counts_the_drop():
    voice = GatedVoice()
    with SpeechStream(voice, queue_size=2, prebuffer_s=0) as stream:
        assert stream.say("one")
        assert voice.entered.wait(5)  # the producer holds "one"; two places are left
        assert stream.say("two") and stream.say("three")
        assert stream.say("four") is False
        assert stream.stats().drops == 1
        voice.gate.set()
        got = pull_all(stream)
        assert stream.stats().utterances_done == 3
    assert got.size == (3 + 3 + 5) * 100


def test_a_starved_consumer_counts_underflows_but_not_the_silence_after():
    voice = SteppedVoice(chunks=8)
    with SpeechStream(voice, prebuffer_s=0) as stream:
        out = np.zeros(256, dtype=np.float32)
        for _ in range(5):  # nothing said yet: silence, not an underflow
            stream.fill(out)
        stream.say("slow")
        for _ in range(5):  # said, but nothing is ready: waiting to start, not an underflow
            stream.fill(out)
        assert stream.stats().underflows == 0
        voice.steps.release()  # one 240-sample chunk for 256-sample callbacks: short
        fill_until(stream, lambda s: s.samples_out == voice.chunk)
        assert stream.stats().underflows >= 1
        voice.steps.release(7)
        fill_until(stream, lambda s: s.utterances_done == 1)
        stats = stream.stats()
        assert stats.samples_out == 8 * voice.chunk and stats.underflow_samples > 0
        for _ in range(5):
            stream.fill(out)
        assert stream.stats().underflows == stats.underflows


def test_prebuffer_holds_the_start_until_enough_is_ready():
    voice = SteppedVoice(chunks=4)
    with SpeechStream(voice, prebuffer_s=2 * voice.chunk / RATE) as stream:
        stream.say("wait for it")
        voice.steps.release()
        out = np.zeros(64, dtype=np.float32)
        while stream.buffered < voice.chunk:  # the chunk is in the ring
            time.sleep(0.001)
        for _ in range(10):
            stream.fill(out)
        assert stream.stats().samples_out == 0 and stream.stats().underflows == 0
        voice.steps.release()  # two chunks are ready: it starts
        fill_until(stream, lambda s: s.samples_out > 0, block=64)
        voice.steps.release(2)
        pull_all(stream)
        assert stream.stats().samples_out == 4 * voice.chunk


@pytest.mark.parametrize("output_rate", [48000, 44100])
def test_resampling_keeps_length_and_spectrum(output_rate):
    import soxr

    with SpeechStream(ToneVoice(), output_rate=output_rate) as stream:
        stream.say("tones")
        got = pull_all(stream)
    source = ToneVoice.signal()
    assert abs(got.size - source.size * output_rate / RATE) <= 2
    # chunk by chunk equals one pass over the whole signal
    whole = soxr.resample(source, RATE, output_rate, quality="HQ")
    np.testing.assert_allclose(got[:whole.size], whole[:got.size], atol=1e-5)
    spectrum = np.abs(np.fft.rfft(got * np.hanning(got.size)))
    freqs = np.fft.rfftfreq(got.size, 1 / output_rate)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(peaks[0] - 1000) < 5 and abs(peaks[1] - 5000) < 5
    above = spectrum[freqs > 12500].max() / spectrum.max()  # past the voice's Nyquist
    assert above < 1e-3


def test_bad_settings_and_voice_errors_are_clear():
    with pytest.raises(SpeechStreamError):
        SpeechStream(RampVoice(), buffer_s=0.1, prebuffer_s=0.2)
    with SpeechStream(RampVoice()) as stream, pytest.raises(SpeechStreamError, match="rate"):
        stream.say("x", rate=0)
    stream = SpeechStream(BrokenVoice(), prebuffer_s=0)
    stream.say("x")
    with pytest.raises(SpeechStreamError, match="fell over"):
        stream.wait_idle(5)
    # what was made before the error plays; the stream goes on with the next text
    assert pull_all(stream).size == 10
    stream.say("y")
    with pytest.raises(SpeechStreamError, match="fell over"):
        stream.wait_idle(5)
    assert stream.stats().failed == 2
    stream.close()
    with pytest.raises(SpeechStreamError, match="closed"):
        stream.say("x")
