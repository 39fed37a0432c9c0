"""`kantor serve` as users meet it: a real process on a real JACK server, driven by real
HTTP, WebSocket and OSC clients and a JACK MIDI client."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import mido
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness.jack_client import JackMidiClient
from harness.serve_process import ServeProcess, free_port
from kantor.bridges.cli import BUNDLED_MELODY
from kantor.bridges.jack import process_alive
from kantor.bridges.scorefiles import read_melody_bytes
from kantor.engine.models import ASSETS, sha256_of

pytestmark = pytest.mark.jack

SENTENCE = "The quick brown fox jumps over the lazy dog."
# POSTs carry a Content-Type no web form can send (the service refuses the others)
JSON = {"Content-Type": "application/json"}
MIDI = {"Content-Type": "audio/midi"}
MUSICXML = {"Content-Type": "application/vnd.recordare.musicxml+xml"}


@pytest.fixture(scope="module")
def serve(jack_server):
    with ServeProcess(jack_server=jack_server) as process:
        yield process
    assert process.process.returncode == 0, process.text()[-2000:]


@pytest.fixture
def http(serve):
    with httpx.Client(base_url=serve.url, timeout=60) as client:
        yield client


@pytest.fixture
def osc(serve):
    """(send(address, args) -> reply OscMessage, raw socket) talking to the service."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def send(address: str | bytes, arguments=()) -> OscMessage:
        data = address if isinstance(address, bytes) else build_msg(address,
                                                                   list(arguments)).dgram
        sock.sendto(data, ("127.0.0.1", serve.osc_port))
        return OscMessage(sock.recv(65536))

    yield send
    sock.close()


@pytest.fixture
def daw(serve):
    client = JackMidiClient()
    client.connect_to(serve.midi_in, serve.midi_out)
    yield client
    client.close()


def jack_ports() -> list[str]:
    return subprocess.run(["jack_lsp"], capture_output=True, text=True,
                          env=os.environ.copy()).stdout.split()


def wait_until(predicate, timeout: float = 10.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def stream(ws, message: str) -> tuple[dict, bytes, dict]:
    """Send one request; (header, PCM bytes, trailer or error)."""
    ws.send(message)
    header = json.loads(ws.recv(timeout=30))
    if header["type"] == "error":
        return header, b"", header
    pcm = bytearray()
    while True:
        item = ws.recv(timeout=30)
        if isinstance(item, bytes):
            pcm += item
        else:
            return header, bytes(pcm), json.loads(item)


# --------------------------------------------------------------------------- status

def test_status_shows_ports_models_and_counters(serve, http):
    status = http.get("/v1/status").json()
    live = status["live"]
    assert live["running"] and live["api"] == "jack"
    assert live["ports"] == {"input": serve.midi_in, "output": serve.midi_out}
    expected = {"SCHED_FIFO 10"} if os.geteuid() == 0 else {"SCHED_FIFO 10", "nice -10",
                                                             "normal"}
    policy, _, core = live["scheduling"].partition(", ")
    assert policy in expected  # root (CI) gets real-time scheduling
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) > 1:  # the live process keeps to the last core, every thread of it
        assert core == f"CPU {allowed[-1]}"
        threads = os.listdir(f"/proc/{live['pid']}/task")
        assert threads and all(os.sched_getaffinity(int(t)) == {allowed[-1]} for t in threads)
    ports = jack_ports()
    assert serve.midi_in in ports and serve.midi_out in ports
    assert all(p in ports for p in status["speech"]["output"]["ports"])
    cards = {m["name"]: m for m in status["models"]}
    assert len(cards) == 16  # the neural vocoder's and the tuned live networks' too
    assert live["model"] == {"playing": "tuned", "tuned_loaded": True}
    for name in ("chorale-live-bass", "voice-acoustic", "g2p-decoder", "voice-vocoder",
                 "chorale-live-tuned-bass"):
        assert cards[name]["sha256"] == sha256_of(ASSETS / f"{name}.onnx")
        assert cards[name]["metrics"]
    assert status["speech"]["streaming"]["clients_max"] == 4


def test_openapi_schema_describes_the_api(http):
    schema = http.get("/openapi.json").json()
    for path in ("/v1/speak", "/v1/harmonize", "/v1/status", "/metrics", "/v1/live/settings",
                 "/v1/live/panic", "/v1/speech/cancel"):
        assert path in schema["paths"], path
    assert "text" in schema["components"]["schemas"]["SpeakBody"]["properties"]


def test_metrics_are_prometheus_text(http):
    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["kantor_up"].samples[0].value == 1
    for name in ("kantor_live_notes_in", "kantor_speech_underflows", "kantor_stream_requests",
                 "kantor_harmonize_requests", "kantor_live_latency_seconds"):
        assert name in families, name


# --------------------------------------------------------------------------- speech

def test_speak_plays_on_the_service_output(http):
    before = http.get("/v1/status").json()["speech"]["output"]
    response = http.post("/v1/speak", json={"text": "Good morning. Shall we sing?"})
    assert response.status_code == 202
    assert response.json() == {"sentences": 2, "queued": 2, "dropped": 0}
    assert wait_until(lambda: http.get("/v1/status").json()["speech"]["output"]
                      ["utterances_done"] == before["utterances_done"] + 2, timeout=20)
    after = http.get("/v1/status").json()["speech"]["output"]
    assert after["underflows"] == before["underflows"]
    assert after["first_audio_ms"]["p50"] > 0


def test_cancel_silences_the_output(http):
    before = http.get("/v1/status").json()["speech"]["output"]
    http.post("/v1/speak", json={"text": "This sentence is rather long. " * 8})
    assert http.post("/v1/speech/cancel", headers=JSON).json() == {"cancelled": True}
    assert wait_until(lambda: not http.get("/v1/status").json()["speech"]["output"]
                      ["speaking"], timeout=5)
    after = http.get("/v1/status").json()["speech"]["output"]
    assert after["cancelled"] > before["cancelled"]


def test_websocket_streams_header_pcm_and_trailer(serve):
    from kantor.engine.speech.voice import Voice

    expected = Voice.load().synthesize(SENTENCE)
    with connect(serve.ws_url) as ws:
        header, pcm, trailer = stream(ws, SENTENCE)
        assert header == {"type": "start", "sample_rate": 24000, "channels": 1,
                          "format": "pcm_s16le"}
        assert trailer["type"] == "end" and not trailer["cancelled"]
        samples = np.frombuffer(pcm, dtype="<i2")
        assert trailer["samples"] == samples.size == expected.size  # same durations
        assert trailer["chunks"] > 1  # streamed, not one block
        assert np.sqrt(np.mean((samples / 32768.0) ** 2)) > 0.01
        assert 0 < trailer["first_audio_ms"] < trailer["total_ms"]
        # the same connection takes the next request, at another rate and speed
        header, pcm, trailer = stream(ws, json.dumps({"text": SENTENCE, "sample_rate": 48000,
                                                      "rate": 1.5}))
        assert header["sample_rate"] == 48000
        assert trailer["samples"] == len(pcm) // 2
        assert abs(trailer["audio_seconds"] - expected.size / 24000 / 1.5) < 0.3


def test_websocket_cancel_stops_a_stream(serve):
    with connect(serve.ws_url) as ws:
        ws.send(" ".join([SENTENCE] * 20))
        assert json.loads(ws.recv(timeout=30))["type"] == "start"
        assert isinstance(ws.recv(timeout=30), bytes)
        ws.send("cancel")
        received = 0
        while True:
            item = ws.recv(timeout=30)
            if isinstance(item, bytes):
                received += len(item)
            else:
                trailer = json.loads(item)
                break
        assert trailer["type"] == "end" and trailer["cancelled"]
        assert trailer["audio_seconds"] < 20 * 2.5  # far from the whole text
        _, pcm, trailer = stream(ws, "Still here.")
        assert trailer["type"] == "end" and len(pcm) > 0


def test_clients_leaving_mid_stream_give_their_voices_back(serve, http):
    for _ in range(6):  # more than the pool: a leaked voice would show
        with connect(serve.ws_url) as ws:
            ws.send(SENTENCE * 10)
            assert json.loads(ws.recv(timeout=30))["type"] == "start"
            assert isinstance(ws.recv(timeout=30), bytes)
        # leaving the block closes the socket mid-stream
    assert wait_until(lambda: http.get("/v1/status").json()["speech"]["streaming"]
                      ["clients_busy"] == 0, timeout=10)
    with connect(serve.ws_url) as ws:
        assert stream(ws, "Back again.")[2]["type"] == "end"


def test_websocket_refuses_clients_beyond_its_voices(serve, http):
    refused_before = http.get("/v1/status").json()["speech"]["streaming"]["refused"]
    with contextlib.ExitStack() as held:
        clients = [held.enter_context(connect(serve.ws_url)) for _ in range(4)]
        for ws in clients:  # each holds a voice once its first request is answered
            assert stream(ws, "Hi.")[2]["type"] == "end"
        with connect(serve.ws_url) as extra:
            message = json.loads(extra.recv(timeout=10))
            assert message["type"] == "error" and "busy" in message["error"]
            with pytest.raises(ConnectionClosed) as closed:
                extra.recv(timeout=10)
            assert closed.value.rcvd.code == 1013
    assert http.get("/v1/status").json()["speech"]["streaming"]["refused"] == refused_before + 1
    with connect(serve.ws_url) as ws:  # voices came back
        assert stream(ws, "Hi.")[2]["type"] == "end"


def test_malformed_websocket_input_gets_errors_and_the_service_goes_on(serve, http):
    with connect(serve.ws_url) as ws:
        for message, expected in ((b"\x00\x01binary", "not binary"),
                                  ('{"text": "hi", ', "malformed JSON"),
                                  ('{"text": "hi", "volume": 3}', "unknown field"),
                                  ('{"text": "hi", "rate": "fast"}', "rate must be"),
                                  ('{"text": "hi", "sample_rate": 12345}', "sample_rate"),
                                  ('{"text": "{HH AH0 ZZ9}", "phonemes": false}', None),
                                  ("x" * 6000, "at most 5000"),
                                  ("   ", "empty")):
            ws.send(message)
            reply = json.loads(ws.recv(timeout=30))
            if expected is None:  # a word the front end rejects or speaks: either is fine
                while reply["type"] not in ("end", "error"):
                    reply = ws.recv(timeout=30)
                    reply = json.loads(reply) if isinstance(reply, str) else {"type": "pcm"}
                continue
            assert reply["type"] == "error" and expected in reply["error"], (message, reply)
        _, pcm, trailer = stream(ws, json.dumps({"text": "HH AH0 L OW1", "phonemes": True}))
        assert trailer["type"] == "end" and len(pcm) > 0
        ws.send(json.dumps({"text": "QQ ZZ1", "phonemes": True}))  # unknown phones
        reply = json.loads(ws.recv(timeout=30))  # refused before any audio starts
        assert reply["type"] == "error" and "unknown phoneme 'QQ'" in reply["error"]
    with connect(serve.ws_url) as ws:  # a message over the 64 KiB limit closes that socket
        ws.send("x" * 70000)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009
    with connect(serve.ws_url) as ws:
        assert stream(ws, "Fine.")[2]["type"] == "end"
    errors = http.get("/v1/status").json()["errors"]
    assert errors["ws binary message"] >= 1 and errors["ws bad request"] >= 6


def test_malformed_http_input_gets_clear_errors(http):
    cases = [
        (http.post("/v1/speak", content=b"{not json", headers={
            "content-type": "application/json"}), 422, "invalid request"),
        (http.post("/v1/speak", json={"text": 5}), 422, "text"),
        (http.post("/v1/speak", json={"text": "hi", "loud": True}), 422, "loud"),
        (http.post("/v1/speak", json={"text": ""}), 422, "empty"),
        (http.post("/v1/speak", json={"text": "x" * 6000}), 413, "at most 5000"),
        (http.post("/v1/speak", json={"text": "hi", "rate": 0}), 422, "rate"),
        (http.post("/v1/speak", content=b"x" * 70000, headers=JSON), 413, "over 65536 bytes"),
        (http.post("/v1/live/settings", json={"temperature": 9}), 422, "temperature"),
        (http.post("/v1/live/settings", json={"volume": 1}), 422, "unknown live parameter"),
        (http.post("/v1/harmonize", content=b"not music", headers=MIDI), 415, "neither"),
        (http.post("/v1/harmonize", content=b"MThd\x00\x00\x00\x06broken", headers=MIDI), 422,
         "not a readable MIDI file"),
        (http.post("/v1/harmonize?input=musicxml", content=b"<score-partwise><oops",
                   headers=MUSICXML), 422,
         "not a readable MusicXML"),
        (http.post("/v1/harmonize?iterations=0", content=BUNDLED_MELODY.read_bytes(),
                   headers=MUSICXML), 422,
         "iterations"),
        (http.post("/v1/harmonize?fix=bass@1=Z9", content=BUNDLED_MELODY.read_bytes(),
                   headers=MUSICXML), 422,
         "Z9"),
        (http.post("/v1/harmonize", content=b"x" * 1_000_001, headers=MIDI), 413,
         "over 1000000 bytes"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert text in response.json()["error"], response.text

    def chunks():  # no Content-Length: the limit still holds
        for _ in range(20):
            yield b"x" * 8192

    assert http.post("/v1/speak", content=chunks(), headers=JSON).status_code == 413
    assert http.get("/v1/status").json()["live"]["running"]


def test_harmonize_upload_returns_midi_and_musicxml(http):
    upload = BUNDLED_MELODY.read_bytes()
    melody = read_melody_bytes(upload, "musicxml")
    response = http.post("/v1/harmonize?seed=3&iterations=10&fix=bass@1=G2", content=upload,
                         headers=MUSICXML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/midi"
    assert int(response.headers["x-kantor-rule-breaks"]) >= 0
    midi = mido.MidiFile(file=io.BytesIO(response.content))
    tracks = [[m for m in t if m.type == "note_on" and m.velocity > 0] for t in midi.tracks[1:]]
    assert len(tracks) == 4 and all(tracks)
    soprano = [m.note for m in tracks[0]]
    assert soprano == [int(p) for p in melody.soprano if p >= 0]
    assert tracks[3][0].note == 43  # the pinned G2
    again = http.post("/v1/harmonize?seed=3&iterations=10&fix=bass@1=G2", content=upload,
                         headers=MUSICXML)
    assert again.content == response.content  # same seed, same chorale
    score = http.post("/v1/harmonize?output=musicxml&iterations=5",
                      content=response.content, headers=MIDI)  # its own MIDI as the melody
    assert score.status_code == 200
    assert score.headers["content-type"] == "application/vnd.recordare.musicxml+xml"
    from music21 import converter

    parts = converter.parseData(score.content.decode(), format="musicxml").parts
    assert [p.partName for p in parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    last = http.get("/v1/status").json()["harmonize"]["last"]
    assert last["rule_breaks"] == int(score.headers["x-kantor-rule-breaks"])


# --------------------------------------------------------------------------- OSC

def test_osc_sets_parameters_speaks_and_answers_errors(osc, http):
    reply = osc("/kantor/live/temperature", [0.5])
    assert reply.address == "/kantor/ok" and reply.params[0] == "/kantor/live/temperature"
    assert http.get("/v1/status").json()["live"]["parameters"]["temperature"] == \
        pytest.approx(0.5)
    assert osc("/kantor/live/thru", [0]).address == "/kantor/ok"
    assert http.get("/v1/status").json()["live"]["parameters"]["thru"] is False
    assert osc("/kantor/live/thru", [1]).address == "/kantor/ok"
    requests = http.get("/v1/status").json()["speech"]["speak_requests"]
    reply = osc("/kantor/speak", ["Hello from OSC.", 1.2])
    assert reply.address == "/kantor/ok" and reply.params[1:] == [1, 0]
    assert http.get("/v1/status").json()["speech"]["speak_requests"] == requests + 1
    assert osc("/kantor/speech/cancel").address == "/kantor/ok"
    assert osc("/kantor/live/panic").address == "/kantor/ok"
    status = json.loads(osc("/kantor/status").params[0])
    assert status["live"]["running"]
    for message, expected in ((b"definitely not OSC", "not an OSC packet"),
                              (b"/kantor/speak\x00\x00\x00,s\x00\x00", "not an OSC packet"),
                              (build_msg("/nowhere", []).dgram, "unknown address"),
                              (build_msg("/kantor/live/temperature", ["hot"]).dgram,
                               "takes a number"),
                              (build_msg("/kantor/live/lookahead", [99]).dgram, "lookahead"),
                              (build_msg("/kantor/live/volume", [1]).dgram,
                               "unknown live parameter"),
                              (build_msg("/kantor/speak", []).dgram, "takes a text"),
                              (build_msg("/kantor/speak", ["x" * 6000]).dgram, "at most")):
        reply = osc(message)
        assert reply.address == "/kantor/error" and expected in reply.params[0], reply.params
    assert http.get("/v1/status").json()["errors"]["osc malformed"] >= 2


# --------------------------------------------------------------------------- live MIDI

def test_live_midi_is_answered_while_speech_streams(serve, daw, http):
    """Every melody note gets its three voices and every note is released, while two
    WebSocket clients pull speech and the output speaks."""
    stop = threading.Event()
    streamed = []

    def pull() -> None:
        with connect(serve.ws_url) as ws:
            while not stop.is_set():
                streamed.append(stream(ws, SENTENCE)[2]["type"])

    pullers = [threading.Thread(target=pull) for _ in range(2)]
    for thread in pullers:
        thread.start()
    http.post("/v1/speak", json={"text": SENTENCE * 3})
    notes_before = http.get("/v1/status").json()["live"]["notes_in"]
    melody = [67, 69, 71, 72, 74, 72, 71, 69, 67]
    try:
        for pitch in melody:
            daw.send([0x90, pitch, 90])
            assert daw.wait_for(lambda c, p=pitch: (0, p) in c.sounding and len(c.sounding)
                                == 4, timeout=3), daw.sounding
            time.sleep(0.05)
            daw.send([0x80, pitch, 0])
            assert daw.wait_for(lambda c: not c.sounding, timeout=3), daw.sounding
    finally:
        stop.set()
        for thread in pullers:
            thread.join(30)
    assert streamed and set(streamed) == {"end"}
    live = http.get("/v1/status").json()["live"]
    assert live["notes_in"] == notes_before + len(melody)
    assert live["sounding"] == 0 and live["latency_ms"]["p99"] > 0
    assert len(live["last_phrase"]) >= len(melody)
    assert live["last_phrase"][-1]["notes"][0] == "G4"


def test_panic_over_http_releases_held_notes(daw, http):
    daw.send([0x90, 72, 90])
    assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=3)
    assert http.post("/v1/live/panic", headers=JSON).json() == {"panic": True}
    assert daw.wait_for(lambda c: not c.sounding, timeout=3), daw.sounding
    daw.send([0x80, 72, 0])


def test_the_last_live_chord_is_explained_over_http(daw, http):
    daw.send([0x90, 71, 90])
    assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=3)
    answer = http.get("/v1/live/explain", params={"voice": "alto"})
    assert answer.status_code == 200, answer.text
    why = answer.json()
    assert why["voice"] == "alto" and why["network"] == "live (tuned)"
    assert why["completeness_error"] < 0.01 and why["top"]
    assert why["notes"][0][why["steps"].index(0)] == "B4"  # the melody note just played
    assert http.get("/v1/live/explain", params={"voice": "soprano"}).status_code == 422
    assert http.get("/v1/live/explain", params={"voice": "viola"}).status_code == 422
    daw.send([0x80, 71, 0])
    assert daw.wait_for(lambda c: not c.sounding, timeout=3)


# --------------------------------------------------------------------------- life cycle

def _nothing_left(service: ServeProcess, live_pid: int) -> None:
    assert service.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(live_pid, 0)
    ports = jack_ports()
    assert not [p for p in ports if p.startswith(service.midi_name)], ports
    for kind, port in ((socket.SOCK_STREAM, service.http_port),
                       (socket.SOCK_DGRAM, service.osc_port)):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # free again


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_releases_notes_and_leaves_nothing_behind(jack_server, sig):
    service = ServeProcess("--drain-seconds", "0.5", jack_server=jack_server)
    daw = JackMidiClient()
    try:
        daw.connect_to(service.midi_in, service.midi_out)
        live_pid = httpx.get(f"{service.url}/v1/status").json()["live"]["pid"]
        httpx.post(f"{service.url}/v1/speak", json={"text": SENTENCE * 4})
        daw.send([0x90, 67, 100])  # held through the stop
        assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=5)
        with connect(service.ws_url) as listener:  # a client mid-stream when the stop comes
            listener.send(SENTENCE * 30)
            assert json.loads(listener.recv(timeout=10))["type"] == "start"
            code = service.stop(sig)
            with pytest.raises(ConnectionClosed):  # closed by the service, not left hanging
                while True:
                    listener.recv(timeout=10)
        if sig == signal.SIGKILL:
            # the live process notices its parent is gone and releases its notes itself
            assert code == -signal.SIGKILL
            assert wait_until(lambda: not process_alive(live_pid), timeout=10)
        else:
            assert code == 0, service.text()[-2000:]
            assert "0 notes left sounding" in service.text()
        assert daw.wait_for(lambda c: not c.sounding, timeout=5), f"stuck: {daw.sounding}"
        assert wait_until(lambda: not [p for p in jack_ports()
                                       if p.startswith(service.midi_name)], timeout=5)
        _nothing_left(service, live_pid)
    finally:
        daw.close()
        service.stop()




def test_token_guards_every_surface(jack_server):
    token = "a-long-test-token-123"
    with ServeProcess("--token", token, "--no-audio", jack_server=jack_server) as service:
        assert httpx.get(f"{service.url}/v1/status").status_code == 401
        wrong = {"Authorization": "Bearer wrong-token-00000"}
        assert httpx.get(f"{service.url}/v1/status", headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{service.url}/v1/status", headers=right).status_code == 200
        assert httpx.get(f"{service.url}/").status_code == 200  # the page itself: no data
        with connect(service.ws_url) as ws:
            assert "token" in json.loads(ws.recv(timeout=10))["error"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1008
        with connect(f"{service.ws_url}?token={token}") as ws:
            assert stream(ws, "Hi.")[2]["type"] == "end"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(5)
        sock.sendto(build_msg("/kantor/speech/cancel", []).dgram,
                    ("127.0.0.1", service.osc_port))
        assert OscMessage(sock.recv(65536)).address == "/kantor/error"
        sock.sendto(build_msg("/kantor/speech/cancel", [token]).dgram,
                    ("127.0.0.1", service.osc_port))
        assert OscMessage(sock.recv(65536)).address == "/kantor/ok"
        sock.close()
        # --no-audio: speaking on the output is refused with the reason, streaming works
        refused = httpx.post(f"{service.url}/v1/speak", json={"text": "hi"}, headers=right)
        assert refused.status_code == 409 and "--no-audio" in refused.json()["error"]


def run_serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kantor.bridges.cli", "serve", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_refuses_to_listen_beyond_loopback_without_flag_and_token():
    result = run_serve("--host", "0.0.0.0")
    assert result.returncode == 2 and "--allow-remote" in result.stderr
    result = run_serve("--host", "0.0.0.0", "--allow-remote")
    assert result.returncode == 2 and "needs a token" in result.stderr
    result = run_serve("--osc-host", "192.0.2.1", "--allow-remote", "--token", "short")
    assert result.returncode == 2 and "at least 12" in result.stderr


def test_settings_file_and_its_errors(jack_server, tmp_path):
    good = tmp_path / "kantor.toml"
    good.write_text('[live]\ntemperature = 0.7\nkey = -2\n[speech]\nenabled = false\n'
                    '[limits]\nmax_body_bytes = 5000\n')
    with ServeProcess("--config", str(good), jack_server=jack_server) as service:
        status = httpx.get(f"{service.url}/v1/status").json()
        assert status["live"]["parameters"]["temperature"] == pytest.approx(0.7)
        assert status["live"]["parameters"]["key_sharps"] == -2
        assert status["speech"]["output"] is None
        assert httpx.post(f"{service.url}/v1/harmonize", content=b"x" * 6000,
                          headers=MIDI).status_code == 413
    bad = tmp_path / "bad.toml"
    bad.write_text("[live]\nswing = 3\n")
    result = run_serve("--config", str(bad))
    assert result.returncode == 2 and "unknown setting [live] swing" in result.stderr
    bad.write_text("[live]\ntempo = 400\n")
    result = run_serve("--config", str(bad))
    assert result.returncode == 2 and "tempo takes a number from 0 to 300" in result.stderr
    bad.write_text("[http]\nport = 'eighty'\n")
    result = run_serve("--config", str(bad))
    assert result.returncode == 2 and "[http] port takes int" in result.stderr
    bad.write_text("this is = not toml = at all")
    assert "not a readable TOML file" in run_serve("--config", str(bad)).stderr


def test_a_port_in_use_is_reported(jack_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port), "--osc-port", str(free_port(socket.SOCK_DGRAM)),
                           "--api", "jack")
    assert result.returncode == 2
    assert f"cannot listen for HTTP on 127.0.0.1:{port}" in result.stderr


def test_a_hung_or_dead_live_process_is_a_clear_503_everywhere(jack_server):
    # the live harmoniser's process really stopped (SIGSTOP: hung), then killed, under a
    # running service: live requests get a JSON 503 over HTTP and an error reply over OSC,
    # the rest of the service keeps going
    service = ServeProcess(jack_server=jack_server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(15)
    live_pid = None
    try:
        live_pid = httpx.get(f"{service.url}/v1/status").json()["live"]["pid"]
        os.kill(live_pid, signal.SIGSTOP)  # alive but silent: each request times out
        answer = httpx.post(f"{service.url}/v1/live/settings", json={"temperature": 0.4},
                            headers=JSON, timeout=30)
        assert answer.status_code == 503, answer.text
        assert "did not answer" in answer.json()["error"]
        sock.sendto(build_msg("/kantor/live/panic", []).dgram, ("127.0.0.1", service.osc_port))
        reply = OscMessage(sock.recv(65536))
        assert reply.address == "/kantor/error" and "did not answer" in reply.params[0]
        os.kill(live_pid, signal.SIGKILL)
        assert wait_until(lambda: not process_alive(live_pid), timeout=10)
        for method, path, body in (("POST", "/v1/live/settings", {"temperature": 0.4}),
                                   ("POST", "/v1/live/panic", None),
                                   ("GET", "/v1/live/latencies", None)):
            answer = httpx.request(method, f"{service.url}{path}", json=body, headers=JSON)
            assert answer.status_code == 503, (path, answer.text)
            assert "live harmoniser" in answer.json()["error"]
        assert httpx.get(f"{service.url}/v1/status").status_code == 200
        spoken = httpx.post(f"{service.url}/v1/speak", json={"text": "Still here."},
                            headers=JSON)
        assert spoken.status_code == 202, spoken.text
    finally:
        sock.close()
        if live_pid is not None and process_alive(live_pid):
            os.kill(live_pid, signal.SIGKILL)
        assert service.stop(signal.SIGTERM) == 0, service.text()[-2000:]


def test_note_on_latencies_are_kept_apart_from_the_rest(daw, http):
    # a note-on's answer (the chord: three network calls) and a note-off's (releases) are
    # timed apart, so a benchmark can quote the note-ons' percentiles on their own
    before = {kind: http.get("/v1/live/latencies", params={"last": 1, "kind": kind}).json()
              for kind in ("all", "note_on")}
    daw.send([0x90, 69, 90])
    assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=3)
    daw.send([0x80, 69, 0])
    assert daw.wait_for(lambda c: not c.sounding, timeout=3)
    after = {kind: http.get("/v1/live/latencies", params={"last": 2, "kind": kind}).json()
             for kind in ("all", "note_on")}
    assert after["all"]["count"] - before["all"]["count"] == 2  # the note-on and the note-off
    assert after["note_on"]["count"] - before["note_on"]["count"] == 1
    assert after["note_on"]["ms"][-1] in after["all"]["ms"]  # the same measurement
    assert http.get("/v1/live/latencies", params={"kind": "offs"}).status_code == 422
