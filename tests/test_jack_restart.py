"""A JACK server that dies under Kantor, really killed (SIGTERM, or SIGKILL and its
/dev/shm slot cleaned as a supervisor would) and started again: noticed within a second,
reported, ports and connections back within 5 s of the server, and the service always
stoppable by SIGTERM within 10 s."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect

from harness.jack_client import ProcessDaw
from harness.serve_process import ServeProcess
from kantor.bridges.jack import JackServer

pytestmark = pytest.mark.jack

NOTICE_S = 1.0  # JACK loss noticed within
RETURN_S = 5.0  # ports back within, after the server is up again
STOP_S = 10.0  # SIGTERM to exit, at most


class Lines:
    """A process's output lines with the time each arrived (monotonic seconds)."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line))

    def first(self, text: str, after: float, timeout: float) -> float | None:
        """When a line containing ``text`` arrived after ``after``, waiting ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in list(self.lines):
                if when >= after and text in line:
                    return when
            time.sleep(0.02)
        return None

    def text(self) -> str:
        return "".join(line for _, line in self.lines)


def wait_until(predicate, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_kantor_live_comes_back_with_the_jack_server(sig):
    server = JackServer().start()
    # -v: the watch's reconnection attempts are in the output a failure shows
    live = subprocess.Popen([sys.executable, "-m", "kantor.bridges.cli", "-v", "live",
                             "--api", "jack", "--name", "klive", "--status-interval", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=server.env)
    output = Lines(live.stdout)
    daw = None
    try:
        assert output.first("ready", 0, 120), output.text()
        daw = ProcessDaw("dawrestart", server.env)
        daw.connect_to("klive:in", "klive-out:out")
        assert daw.answered(67)
        time.sleep(1.0)  # Kantor samples its connections every 0.5 s: now it knows them
        killed = time.monotonic()
        server.kill(sig)
        noticed = output.first("JACK server lost", killed, 5)
        assert noticed is not None and noticed - killed <= NOTICE_S, output.text()[-2000:]
        daw.kill()  # it dies with the server, as a real one would
        server.start()
        up = time.monotonic()
        back = wait_until(lambda: "klive:in" in server.ports()
                          and "klive-out:out" in server.ports(), RETURN_S + 5)
        assert back is not None and back <= RETURN_S, output.text()[-2000:]
        # the DAW's ports come back under the same names: Kantor reconnects them
        daw = ProcessDaw("dawrestart", server.env)
        restored = wait_until(lambda: daw.out in server.connections("klive:in")
                              and daw.inp in server.connections("klive-out:out"), 10)
        assert restored is not None, server.ports(connections=True)
        assert wait_until(lambda: daw.answered(69), 15, step=0.2) is not None, (
            output.text()[-3000:], daw.received[-20:])
        assert time.monotonic() - up < 30
        stopping = time.monotonic()
        live.send_signal(signal.SIGTERM)
        assert live.wait(timeout=STOP_S) == 0
        assert time.monotonic() - stopping <= STOP_S
        assert "Traceback" not in output.text()
    finally:
        if daw is not None:
            daw.kill()
        if live.poll() is None:
            live.kill()
            live.wait()
        server.stop()


@pytest.mark.parametrize("audio", [True, False], ids=["audio", "no-audio"])
def test_serve_reports_jack_loss_recovers_and_always_stops(audio):
    server = JackServer().start()
    arguments = () if audio else ("--no-audio",)
    service = ServeProcess(*arguments, jack_server=server.name)
    try:
        status = httpx.get(f"{service.url}/v1/status", timeout=10).json()
        assert status["live"]["lost"] is None and status["live"]["jack"]["server"] == "running"
        assert status["service"]["jack"]["server"] == "running"
        killed = time.monotonic()
        server.kill(signal.SIGKILL)

        def reported() -> bool:
            now = httpx.get(f"{service.url}/v1/status", timeout=10).json()
            return bool(now["live"]["lost"]) and now["service"]["jack"]["server"] == "lost"

        assert wait_until(reported, 5) is not None
        assert time.monotonic() - killed <= NOTICE_S + 0.5  # + the status round trip
        if audio:
            refused = httpx.post(f"{service.url}/v1/speak", json={"text": "Hello."})
            assert refused.status_code == 503 and "JACK" in refused.json()["error"]
            lost = httpx.get(f"{service.url}/v1/status").json()["speech"]["output"]["lost"]
            assert "JACK" in lost
        with connect(service.ws_url) as ws:  # streaming needs no JACK
            ws.send("Still here.")
            while isinstance(reply := ws.recv(timeout=30), bytes) or '"end"' not in reply:
                pass
        server.start()
        up = time.monotonic()
        back = wait_until(lambda: service.midi_in in server.ports()
                          and service.midi_out in server.ports(), RETURN_S + 5)
        assert back is not None and back <= RETURN_S, service.text()[-2000:]
        status = httpx.get(f"{service.url}/v1/status", timeout=10).json()
        assert status["live"]["lost"] is None and status["live"]["jack"]["returns"] == 1
        daw = ProcessDaw("dawserve", server.env)
        try:
            daw.connect_to(service.midi_in, service.midi_out)
            assert daw.answered(67)
        finally:
            daw.kill()
        assert time.monotonic() - up < 60
        server.kill(signal.SIGTERM)  # and stop while it is gone again
        time.sleep(NOTICE_S)
        stopping = time.monotonic()
        code = service.stop(timeout=STOP_S + 5)
        assert time.monotonic() - stopping <= STOP_S, service.text()[-2000:]
        assert code == 0, service.text()[-3000:]
        text = service.text()
        assert "Traceback" not in text and "Assertion" not in text, text[-4000:]
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()
        server.stop()


def test_a_second_kantor_with_the_same_name_is_refused(jack_server):
    first = subprocess.Popen([sys.executable, "-m", "kantor.bridges.cli", "live", "--api",
                              "jack", "--name", "dup"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert "ready" in first.stdout.readline()
        second = subprocess.run([sys.executable, "-m", "kantor.bridges.cli", "live", "--api",
                                 "jack", "--name", "dup"], capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2
        assert "JACK already has a client named 'dup'" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=STOP_S) == 0
