"""`kantor serve` against hostile clients and pages: a real service on a real JACK server,
real sockets. Foreign pages and hosts are refused, idle or slow connections cannot starve
anyone, every malformed request is a counted 4xx with a JSON error, never a 5xx."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from harness.hostile import HOSTILE_FILES
from harness.serve_process import ServeProcess, free_port
from kantor.engine.models import ASSETS, BUNDLED_MELODY

pytestmark = pytest.mark.jack

JSON = {"Content-Type": "application/json"}
MEDIA = {"midi": "audio/midi", "musicxml": "application/vnd.recordare.musicxml+xml"}


@pytest.fixture(scope="module")
def serve(jack_server, tmp_path_factory):
    settings = tmp_path_factory.mktemp("hostile") / "kantor.toml"
    settings.write_text("[limits]\nheader_timeout_s = 2.0\nbody_timeout_s = 2.0\n"
                        "ws_idle_s = 3.0\n")
    with ServeProcess("--no-audio", "--config", str(settings),
                      jack_server=jack_server) as process:
        yield process
    assert process.process.returncode == 0, process.text()[-2000:]
    assert "Traceback" not in process.text(), process.text()[-3000:]


@pytest.fixture
def http(serve):
    with httpx.Client(base_url=serve.url, timeout=60) as client:
        yield client


def errors(http) -> dict:
    return http.get("/v1/status").json()["errors"]


def test_pages_from_other_sites_and_rebound_names_are_refused(serve, http):
    own = f"http://127.0.0.1:{serve.http_port}"
    assert http.get("/v1/status", headers={"Host": "localhost"}).status_code == 200
    foreign_host = http.get("/v1/status", headers={"Host": f"evil.example:{serve.http_port}"})
    assert foreign_host.status_code == 403 and "evil.example" in foreign_host.json()["error"]
    cases = [  # (what a page could send, expected status)
        (dict(headers={**JSON, "Origin": "http://evil.example"}), 403),
        (dict(headers={**JSON, "Origin": "null"}), 403),  # sandboxed frames, file://
        (dict(headers={**JSON, "Origin": "http://localhost:3000"}), 403),  # another app
        (dict(headers={"Content-Type": "text/plain"}, content=b"{}"), 415),
        (dict(headers={"Content-Type": "application/x-www-form-urlencoded"},
              content=b"a=1"), 415),
        (dict(headers={"Content-Type": "multipart/form-data; boundary=x"}, content=b""), 415),
        (dict(), 415),  # no Content-Type: what fetch(..., {mode: "no-cors"}) sends
    ]
    for path in ("/v1/live/panic", "/v1/speech/cancel", "/v1/harmonize", "/v1/speak"):
        for request, status in cases:
            response = http.post(path, **request)
            assert response.status_code == status, (path, request, response.text)
            assert response.json()["error"]
    assert http.post("/v1/live/panic", headers={**JSON, "Origin": own}).json() == {
        "panic": True}
    with pytest.raises(InvalidStatus) as refused:
        connect(serve.ws_url, origin="http://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    with socket.create_connection(("127.0.0.1", serve.http_port)) as rebound:
        rebound.sendall(b"GET /v1/speech/stream HTTP/1.1\r\nHost: evil.example\r\n"
                        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                        b"dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        rebound.settimeout(10)
        assert rebound.recv(4096).startswith(b"HTTP/1.1 403")
    with connect(serve.ws_url, origin=own) as ws:
        ws.send("Fine.")
        assert json.loads(ws.recv(timeout=30))["type"] == "start"
    counted = errors(http)
    for name in ("http foreign host", "http foreign origin", "http simple content type",
                 "ws foreign origin", "ws foreign host"):
        assert counted.get(name, 0) >= 1, (name, counted)


def test_idle_connections_cannot_starve_the_service(serve, http):
    idle = []
    try:
        for _ in range(300):  # more than uvicorn's hard limit (256) and our cap
            sock = socket.create_connection(("127.0.0.1", serve.http_port))
            idle.append(sock)
        statuses = [httpx.get(f"{serve.url}/v1/status", timeout=10).status_code
                    for _ in range(20)]
        assert statuses == [200] * 20
        closed_for_newcomers = sum(1 for s in idle if _closed(s, 0.05))
        assert closed_for_newcomers >= 300 - 192  # the oldest idle ones made room
    finally:
        for sock in idle:
            sock.close()
    counted = errors(http)
    assert counted.get("http idle connection closed for a new one", 0) >= 300 - 192


def _closed(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_headers_and_stalled_bodies_are_cut_off(serve, http):
    started = time.monotonic()
    slow = socket.create_connection(("127.0.0.1", serve.http_port))
    slow.sendall(b"GET /v1/status HTTP/1.1\r\nHo")  # and nothing more
    assert _closed(slow, 10)
    assert 1.5 < time.monotonic() - started < 8  # header_timeout_s = 2
    slow.close()
    stalled = socket.create_connection(("127.0.0.1", serve.http_port))
    stalled.sendall(b"POST /v1/speak HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nContent-Length: 100\r\n\r\n{\"text\": ")
    stalled.settimeout(10)
    reply = b""
    while b'"error"' not in reply:
        piece = stalled.recv(4096)
        if not piece:
            break
        reply += piece
    stalled.close()
    assert reply.startswith(b"HTTP/1.1 408") and b'"error"' in reply
    counted = errors(http)
    assert counted["http header timeout"] >= 1 and counted["http body timeout"] >= 1


def test_every_malformed_request_is_a_counted_4xx(serve, http):
    before = errors(http)
    cases = [
        (http.post("/v1/speak", content=b'{"text": "hi", "rate": ' + b"1" * 5000 + b"}",
                   headers=JSON), 400),  # a number Python refuses to parse
        (http.post("/v1/speak", content=b"[" * 20000 + b"]" * 20000, headers=JSON), 400),
        (http.post("/v1/speak", json={"text": "QQ ZZ1", "phonemes": True}), 422),
        (http.post("/v1/speak", json={"text": "$" * 5000}), 413),  # 29 minutes of audio
        (http.get("/v1/nowhere"), 404),
        (http.put("/v1/status", headers=JSON), 405),
        (http.post("/v1/live/settings", content=b'{"temperature": ' + b"9" * 5000 + b"}",
                   headers=JSON), 400),
    ]
    for name, (data, kind, _) in HOSTILE_FILES.items():
        cases.append((http.post("/v1/harmonize", content=data,
                                headers={"Content-Type": MEDIA[kind]}), 422))
        # one line naming what is wrong (uploads are called "upload")
        assert cases[-1][0].json()["error"].startswith("upload: "), (name, cases[-1][0].text)
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert list(response.json()) == ["error"] and response.json()["error"]
    after = errors(http)
    assert not [k for k in after if k.startswith("http 5")], after
    assert after.get("http 422", 0) - before.get("http 422", 0) >= len(HOSTILE_FILES) + 1
    assert after.get("http 400", 0) - before.get("http 400", 0) == 3
    harmonized = http.post("/v1/harmonize?iterations=2", content=BUNDLED_MELODY.read_bytes(),
                           headers={"Content-Type": MEDIA["musicxml"]})
    assert harmonized.status_code == 200  # and the service goes on


def test_websocket_abuse_gets_errors_and_voices_come_back(serve, http):
    with connect(serve.ws_url) as ws:
        for message, expected in (("[" * 20000 + "]" * 20000, None),
                                  ('{"text": ' + "[" * 20000 + "]" * 20000 + "}",
                                   "malformed JSON"),
                                  ("[1, 2]", None),
                                  ('{"text": "hi", "rate": ' + "1" * 5000 + "}",
                                   "malformed JSON"),
                                  ("$" * 5000, "at most 1250"),
                                  (json.dumps({"text": "QQ", "phonemes": True}),
                                   "unknown phoneme")):
            ws.send(message)
            reply = json.loads(ws.recv(timeout=30))
            if expected is None:  # spoken as text, or refused: never a dropped socket
                while reply.get("type") not in ("end", "error"):
                    raw = ws.recv(timeout=30)
                    reply = json.loads(raw) if isinstance(raw, str) else {}
                continue
            assert reply["type"] == "error" and expected in reply["error"], (message, reply)
    # clients that connect and say nothing, or stop reading, give their voices back
    wait_for_free_voices(http)
    silent = [connect(serve.ws_url).__enter__() for _ in range(4)]
    try:
        started = time.monotonic()
        for ws in silent:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)
            assert closed.value.rcvd.code == 1000
        assert time.monotonic() - started < 10  # ws_idle_s = 3
    finally:
        for ws in silent:
            ws.close()
    wait_for_free_voices(http)
    deaf = [connect(serve.ws_url, max_queue=1).__enter__() for _ in range(4)]
    try:
        for ws in deaf:
            ws.send("This long text is never read by its client. " * 100)
        deadline = time.monotonic() + 30
        while True:  # a fifth client gets a voice once the deaf ones are dropped
            with connect(serve.ws_url) as ws:
                try:
                    ws.send("Now.")
                    reply = json.loads(ws.recv(timeout=30))
                except ConnectionClosed as closed:  # refused before it could ask
                    reply = {"type": "error", "error": closed.rcvd.reason}
            if reply["type"] == "start":
                break
            assert "busy" in reply["error"] and time.monotonic() < deadline, reply
            time.sleep(1)
    finally:
        for ws in deaf:
            ws.close()
    counted = errors(http)
    assert counted["ws idle"] >= 4 and counted["ws not reading"] >= 1


def wait_for_free_voices(http, timeout: float = 10.0) -> None:
    """Until every streaming voice is back (a closed client's is returned a moment after)."""
    deadline = time.monotonic() + timeout
    while http.get("/v1/status").json()["speech"]["streaming"]["clients_busy"]:
        assert time.monotonic() < deadline, "streaming voices were not given back"
        time.sleep(0.05)


def test_osc_bundles_without_messages_are_answered(serve):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    try:
        sock.sendto(OscBundleBuilder(IMMEDIATELY).build().dgram,
                    ("127.0.0.1", serve.osc_port))
        reply = OscMessage(sock.recv(65536))
    finally:
        sock.close()
    assert reply.address == "/kantor/error" and "without messages" in reply.params[0]


@pytest.mark.parametrize("damage, expected", [
    ("voice-acoustic.onnx", "does not match its card"),
    ("chorale-soprano.json", "has no 'context'"),
])
def test_broken_models_stop_serve_in_one_line(jack_server, tmp_path, damage, expected):
    assets = tmp_path / "assets"
    shutil.copytree(ASSETS, assets)
    target = assets / damage
    if damage.endswith(".onnx"):
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        card = json.loads(target.read_text())
        del card["context"]
        target.write_text(json.dumps(card))
    result = subprocess.run(
        [sys.executable, "-m", "kantor.bridges.cli", "serve", "--assets", str(assets),
         "--no-audio", "--api", "jack", "--port", str(free_port()), "--osc-port", "0"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "JACK_DEFAULT_SERVER": jack_server, "JACK_NO_START_SERVER": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("kantor:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
