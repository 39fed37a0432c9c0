"""The pieces of `kantor serve` that need no running service: settings, limits, sniffing."""

from __future__ import annotations

import pytest

from kantor.bridges.cli import BUNDLED_MELODY
from kantor.bridges.harmonizing import HarmonizeOptions
from kantor.bridges.http import parse_stream_request, sniff_melody
from kantor.bridges.scorefiles import ScoreFileError, read_melody_bytes
from kantor.bridges.serve_config import ConfigError, is_loopback, load_config
from kantor.bridges.speech_service import SpeechRequestError
from kantor.engine.chorale.melody import MelodyError
from kantor.engine.realtime import LatencyRecorder


def test_defaults_listen_on_loopback_only():
    config = load_config(None, {})
    assert (config.host, config.http_port, config.osc_host, config.osc_port) == \
        ("127.0.0.1", 8765, "127.0.0.1", 9000)
    assert config.token is None and not config.allow_remote


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('[http]\nport = 9100\n[live]\ntemperature = 1\nchannels = [5, 6, 7, 8]\n'
                    '[speech]\nclients = 2\n')
    config = load_config(path, {"http_port": 9200, "temperature": None})
    assert config.http_port == 9200  # the flag wins
    assert config.temperature == 1 and config.speech_clients == 2  # the file's
    assert config.live_settings()["channels"] == (4, 5, 6, 7)  # 0-based for the engine
    assert config.live_cpu == "last"  # the live process keeps to the last core by default
    path.write_text('[midi]\ncpu = 0\n')
    assert load_config(path, {}).live_cpu == 0
    path.write_text('[midi]\ncpu = "any"\n')
    assert load_config(path, {}).live_cpu == "any"


@pytest.mark.parametrize("text, message", [
    ("[http]\nport = 70000\n", "http port must be 0-65535"),
    ("[speech]\nclients = 0\n", "speech_clients must be 1-64"),
    ("[live]\nchannels = [1, 2]\n", "four MIDI channels"),
    ("[live]\nthru = 1\n", "[live] thru takes bool"),
    ('[midi]\ncpu = "first"\n', "cpu takes a core number, 'last' or 'any'"),
    ("[midi]\ncpu = -1\n", "cpu takes a core number >= 0"),
    ("[colour]\nred = 1\n", "unknown setting [colour] red"),
    ("port = 1\n", "'port' must be a [table]"),
])
def test_bad_settings_name_the_setting(tmp_path, text, message):
    path = tmp_path / "k.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, {})


def test_remote_addresses_need_the_flag_and_a_token(monkeypatch):
    monkeypatch.delenv("KANTOR_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="--allow-remote"):
        load_config(None, {"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="needs a token"):
        load_config(None, {"host": "::", "allow_remote": True})
    monkeypatch.setenv("KANTOR_TOKEN", "from-the-environment")
    config = load_config(None, {"osc_host": "10.0.0.5", "allow_remote": True})
    assert config.token == "from-the-environment"
    assert is_loopback("::1") and is_loopback("127.0.0.2") and is_loopback("localhost")
    assert not is_loopback("example.org") and not is_loopback("0.0.0.0")


def test_stream_requests_are_checked():
    request, rate = parse_stream_request('{"text": "Hi.", "rate": 2, "sample_rate": 48000}',
                                         100)
    assert (request.text, request.rate, rate) == ("Hi.", 2, 48000)
    assert parse_stream_request("Plain text.", 100)[0].text == "Plain text."
    for message, problem in (('{"text": 3}', "empty"), ('{"text": "a", "pitch": true}',
                                                         "pitch"),
                             ('{"text": "a", "phonemes": "yes"}', "phonemes"),
                             ("y" * 101, "at most 100")):
        with pytest.raises(SpeechRequestError, match=problem):
            parse_stream_request(message, 100)


def test_uploads_are_recognised_and_read_in_memory():
    data = BUNDLED_MELODY.read_bytes()
    assert sniff_melody(data) == "musicxml"
    assert sniff_melody(b"MThd\x00\x00\x00\x06") == "midi"
    assert sniff_melody(b"PK\x03\x04 zipped mxl") is None
    melody = read_melody_bytes(data, "musicxml", "hymn")
    assert melody.n_steps > 0
    with pytest.raises(ScoreFileError, match="empty"):
        read_melody_bytes(b"", "midi")
    with pytest.raises(ScoreFileError, match="not a readable MusicXML"):
        read_melody_bytes(b"\xff\xfe not utf-8", "musicxml")


def test_harmonize_options_are_bounded():
    for options, problem in ((HarmonizeOptions(iterations=10_000), "iterations"),
                             (HarmonizeOptions(chains=0), "chains"),
                             (HarmonizeOptions(settle_temperature=float("nan")),
                              "settle_temperature"),
                             (HarmonizeOptions(rule_weight=-1), "rule weight")):
        with pytest.raises(MelodyError, match=problem):
            options.gibbs_settings()


def test_latency_recorder_returns_the_latest_in_order():
    recorder = LatencyRecorder(capacity=5)
    for value in range(3):
        recorder.record(value)
    assert recorder.last(2).tolist() == [1, 2]
    for value in range(3, 12):
        recorder.record(value)
    assert recorder.last(3).tolist() == [9, 10, 11]
    assert recorder.last(100).tolist() == [7, 8, 9, 10, 11]
