"""Speech out of a real JACK server (dummy driver, 1024-frame periods) through PortAudio,
recorded by JACK's own jack_rec, equals what the file sink writes; and the file sinks."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from kantor.bridges import audio
from kantor.engine.speech.features import resample_chunks
from kantor.engine.speech.stream import SpeechStream

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def voice():
    from kantor.engine.speech.voice import Voice

    return Voice.load()


@pytest.fixture(scope="module")
def jack_audio(jack_server):
    """PortAudio restarted so that it sees the test server; afterwards stopped while the
    server still runs (libjack aborts at exit otherwise) and restarted without JACK."""
    audio.rescan("kantor-test")
    yield jack_server
    audio.shutdown()
    name = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = "kantor-test-gone"  # with JACK_NO_START_SERVER=1
    try:
        audio.rescan()
    finally:
        os.environ["JACK_DEFAULT_SERVER"] = name


def render_file(voice, text: str, path, rate: int, subtype: str = "PCM_16"):
    """Say ``text`` into a WAV file through the file sink, straight from the voice (as
    `kantor say -o` does); return the samples and how many the sink says it wrote."""
    with audio.WavSink(path, rate, subtype) as sink:
        written, first = sink.write_speech(resample_chunks(voice.stream(text),
                                                           voice.sample_rate, rate))
    assert first is not None
    samples, file_rate = sf.read(path, dtype="float32")
    assert file_rate == rate and samples.size == written
    return samples, written


def align(reference: np.ndarray, recording: np.ndarray) -> int:
    """The lag of ``reference`` within ``recording`` (samples), by FFT cross-correlation."""
    size = 1 << int(np.ceil(np.log2(reference.size + recording.size)))
    correlation = np.fft.irfft(np.fft.rfft(recording, size)
                               * np.conj(np.fft.rfft(reference, size)), size)
    return int(np.argmax(correlation[:recording.size]))


def wait_for_connection(port: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(["jack_lsp", "-c", port], capture_output=True,
                                 text=True).stdout
        if "jackrec" in listing or "jack_rec" in listing:
            return
        time.sleep(0.05)
    raise AssertionError(f"jack_rec did not connect to {port}")


def test_speech_into_jack_matches_the_file(jack_audio, voice, tmp_path):
    if shutil.which("jack_rec") is None:
        pytest.fail("jack_rec is missing (Debian package jackd2 ships it)")
    sink = audio.DeviceSink(hostapi="jack", blocksize=1024)
    assert sink.samplerate == 48000  # the server's rate: the stream resamples 24 -> 48 kHz
    # the file straight from the voice, the device through the ring: the same samples
    reference, _ = render_file(voice, TEXT, tmp_path / "file.wav", sink.samplerate)
    assert reference.size > sink.samplerate  # > 1 s of speech

    # 0.5 s of prebuffer: the voice must run ahead of JACK on a shared 2-core machine
    stream = SpeechStream(voice, sink.samplerate, prebuffer_s=0.5)
    recording = tmp_path / "jack.wav"
    seconds = reference.size / sink.samplerate + 2.5
    try:
        sink.start(stream)  # silence until something is said
        port = sink.port_names[0]
        recorder = subprocess.Popen(["jack_rec", "-f", str(recording), "-d", f"{seconds:.1f}",
                                     "-b", "32", port], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        try:
            wait_for_connection(port)
            stream.say(TEXT)
            assert stream.wait_idle(30)
            recorder.wait(timeout=seconds + 15)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
        stats = stream.stats()
    finally:
        sink.stop()
        stream.close()
    captured, rate = sf.read(recording, dtype="float32")
    assert rate == sink.samplerate
    captured = captured if captured.ndim == 1 else captured[:, 0]
    lag = align(reference, captured)
    assert lag + reference.size <= captured.size, "the recording stopped before the speech"
    heard = captured[lag:lag + reference.size]
    # the file is 16-bit, the recording 32-bit: equal within 16-bit steps
    np.testing.assert_allclose(heard, reference, atol=2 / 32768)
    # and silent around it (what was not speech was zeros)
    assert np.abs(captured[:lag]).max(initial=0) < 1e-4
    assert np.abs(captured[lag + reference.size:]).max(initial=0) < 1e-4
    assert stats.underflows == 0 and sink.device_underruns == 0
    assert stats.utterances_done == 1 and stats.samples_out == reference.size
    assert len(stats.first_audio_out_s) == 1


def test_raw_sink_writes_16_bit_little_endian_pcm(voice, tmp_path):
    rate = voice.sample_rate
    reference, _ = render_file(voice, "Hello there.", tmp_path / "f.wav", rate, "FLOAT")
    output = io.BytesIO()
    audio.RawSink(output, rate).write_speech(voice.stream("Hello there."))
    pcm = np.frombuffer(output.getvalue(), dtype="<i2")
    assert pcm.size == reference.size
    np.testing.assert_array_equal(pcm, audio.to_pcm16(reference))


def test_device_errors_say_how_to_write_a_file_instead(jack_audio):
    with pytest.raises(audio.AudioOutputError, match=r"-o out\.wav"):
        audio.DeviceSink("no such device here")
    with pytest.raises(audio.AudioOutputError, match=r"-o out\.wav"):
        audio.DeviceSink(hostapi="no such host api")
    names = [d.name for d in audio.list_devices()]
    assert "system" in names  # the JACK server's playback ports


def test_kantor_say_writes_a_wav_and_raw_pcm(voice, tmp_path, capsysbinary):
    from kantor.bridges.cli import main

    out = tmp_path / "say.wav"
    assert main(["say", "Good morning. How are you today?", "-o", str(out),
                 "--rate", "1.2"]) == 0
    report = capsysbinary.readouterr().out.decode()
    assert "2 sentence(s)" in report and "first audio after" in report
    samples, rate = sf.read(out, dtype="float32")
    assert rate == voice.sample_rate and samples.size > rate // 2
    assert main(["say", "Good morning.", "--raw"]) == 0
    captured = capsysbinary.readouterr()
    pcm = np.frombuffer(captured.out, dtype="<i2")
    assert pcm.size > rate // 4 and np.abs(pcm).max() > 1000
    assert b"first audio after" in captured.err  # the report stays off stdout


def test_kantor_say_plays_into_jack(jack_audio, voice, tmp_path, capsys):
    from kantor.bridges.cli import main

    notes = tmp_path / "notes.txt"
    notes.write_text("Hello. Goodbye.\n", encoding="utf-8")
    assert main(["say", "--file", str(notes), "--hostapi", "jack", "--device", "system"]) == 0
    report = capsys.readouterr().out
    assert "2 sentence(s)" in report and "to system" in report
    assert main(["say", "--list-devices"]) == 0
    assert "JACK Audio Connection Kit" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["say"], "give the text"),
    (["say", "hi", "--file", "x.txt"], "give the text"),
    (["say", "hi", "--rate", "0"], "--rate"),
    (["say", "hi", "-o", "a.wav", "--raw"], "-o and --raw"),
    (["say", "--file", "/no/such/notes.txt"], "cannot read"),
])
def test_kantor_say_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    from kantor.bridges.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_kantor_say_without_a_device_says_how_to_write_a_file(jack_audio, voice, capsys):
    from kantor.bridges.cli import main

    assert main(["say", "hi", "--device", "no such device"]) == 2
    err = capsys.readouterr().err.strip()
    assert "-o out.wav" in err and "\n" not in err
