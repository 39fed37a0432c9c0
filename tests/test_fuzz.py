"""Property-based fuzzing (hypothesis) of everything a user or a network hands Kantor:
melody files into the readers, text into the speech front end, HTTP bodies, OSC datagrams
and WebSocket messages into a real ``kantor serve``. Each property is the same: a clean
answer (a melody within the limits or a one-line error; a 4xx with a JSON error; an OSC
reply), never a crash, a traceback or a 5xx. Examples are derandomised and bounded so the
whole file runs in about a minute; the live MIDI byte stream is fuzzed in
test_live_flood.py."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from websockets.sync.client import connect

from harness.hostile import END_OF_TRACK, HOSTILE_FILES, NOTE, musicxml, smf
from harness.serve_process import ServeProcess
from kantor.bridges.scorefiles import SERVICE_LIMITS, ScoreFileError, read_melody_bytes
from kantor.engine.models import BUNDLED_MELODY
from kantor.engine.speech.text import TextError

FAST = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

SEEDS_MIDI = [smf([NOTE * 8 + END_OF_TRACK]),
              smf([b"\x00\xff\x51\x03\x07\xa1\x20\x00\xff\x58\x04\x03\x02\x18\x08"
                   b"\x00\xff\x59\x02\x01\x00" + NOTE * 4 + END_OF_TRACK,
                   NOTE * 2 + END_OF_TRACK], file_type=1),
              *(data for data, kind, _ in HOSTILE_FILES.values() if kind == "midi"
                and len(data) < 10_000)]
SEEDS_XML = [musicxml(4), musicxml(3, beats="3"), BUNDLED_MELODY.read_bytes()]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with bytes flipped, inserted, cut or numbers changed."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "cut", "truncate", "number"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "cut" and data:
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "number":  # in XML: a digit run becomes another number
            digits = [i for i in range(len(data)) if 48 <= data[i] <= 57]
            if digits:
                i = draw(st.sampled_from(digits))
                value = draw(st.sampled_from([b"0", b"-1", b"999999999999", b"1e400",
                                              b"nan", b"3.5", b"65536"]))
                data[i:i + 1] = value
    return bytes(data)


def refused_or_bounded(data: bytes, kind: str) -> None:
    try:
        melody = read_melody_bytes(data, kind, "fuzz", SERVICE_LIMITS)
    except ScoreFileError as error:
        assert "\n" not in str(error) and str(error).startswith("fuzz: ")
        return
    assert 0 < melody.n_steps <= SERVICE_LIMITS.max_steps
    assert len(melody.soprano) == melody.n_steps


@settings(FAST, max_examples=400)
@given(data=st.one_of(mutated(SEEDS_MIDI), st.binary(max_size=200).map(lambda b: b"MThd" + b)))
def test_midi_reader_refuses_or_reads_within_limits(data):
    refused_or_bounded(data, "midi")


@settings(FAST, max_examples=80)
@given(data=mutated(SEEDS_XML))
def test_musicxml_reader_refuses_or_reads_within_limits(data):
    refused_or_bounded(data, "musicxml")


@pytest.fixture(scope="module")
def front_end():
    from kantor.engine.speech.frontend import FrontEnd

    return FrontEnd.load()


@settings(FAST, max_examples=150)
@given(text=st.one_of(st.text(max_size=120),
                      st.text(alphabet="0123456789$%./:-,{}()!?' abcAB£€", max_size=80)))
def test_front_end_reads_any_text_or_says_why(front_end, text):
    try:
        phrases = front_end.phrases(text)
    except TextError as error:
        assert "\n" not in str(error)
        return
    for phrase in phrases:
        for word in phrase.words:
            assert word.phones, (text, word)


@pytest.fixture(scope="module")
def serve(jack_server):
    with ServeProcess("--no-audio", jack_server=jack_server) as process:
        yield process
    text = process.text()
    assert "Traceback" not in text, text[-3000:]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["text", "rate", "pitch", "phonemes", "temperature",
                                     "lookahead", "thru", "key_sharps", "velocity_scale"]),
                    json_values, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64))


@pytest.mark.jack
@settings(FAST, max_examples=120)
@given(path=st.sampled_from(["/v1/speak", "/v1/live/settings", "/v1/harmonize",
                             "/v1/harmonize?iterations=1&output=musicxml", "/v1/live/panic",
                             "/v1/speech/cancel", "/v1/harmonize?fix=bass@1=C9&key=-8"]),
       body=st.one_of(bodies, mutated(SEEDS_MIDI[:2]).map(bytes)),
       content_type=st.sampled_from(["application/json", "audio/midi",
                                     "application/octet-stream"]))
def test_http_answers_every_body_with_a_clean_status(serve, path, body, content_type):
    response = httpx.post(f"{serve.url}{path}", content=body, timeout=60,
                          headers={"Content-Type": content_type})
    assert response.status_code < 500, (path, body[:80], response.text)
    if response.status_code >= 400:
        assert list(response.json()) == ["error"], response.text


osc_arguments = st.lists(st.one_of(st.integers(-2**31, 2**31 - 1), st.floats(width=32),
                                   st.text(max_size=30), st.booleans(),
                                   st.binary(min_size=1, max_size=8)),
                         max_size=4)


@pytest.mark.jack
@settings(FAST, max_examples=150)
@given(message=st.one_of(
    st.tuples(st.sampled_from(["/kantor/speak", "/kantor/speech/cancel", "/kantor/status",
                               "/kantor/live/temperature", "/kantor/live/thru",
                               "/kantor/live/key_sharps", "/kantor/live/nothing", "/x"]),
              osc_arguments).map(lambda m: build_msg(m[0], m[1]).dgram),
    st.binary(min_size=1, max_size=64)))
def test_osc_answers_every_datagram(serve, message):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    try:
        sock.sendto(message, ("127.0.0.1", serve.osc_port))
        reply = OscMessage(sock.recv(65536))
    finally:
        sock.close()
    assert reply.address in ("/kantor/ok", "/kantor/error", "/kantor/status")


@pytest.mark.jack
@settings(FAST, max_examples=80)
@given(message=st.one_of(st.text(max_size=60), bodies.map(lambda b: b.decode("latin-1")),
                         st.binary(max_size=16)))
def test_websocket_answers_every_message(serve, message):
    with connect(serve.ws_url, open_timeout=30) as ws:
        ws.send(message)
        reply = json.loads(ws.recv(timeout=60))
        assert reply["type"] in ("start", "error", "cancelled"), reply
        if reply["type"] == "start":  # it was something to say: PCM, then the trailer
            while isinstance(raw := ws.recv(timeout=60), bytes):
                pass
            assert json.loads(raw)["type"] in ("end", "error"), raw
