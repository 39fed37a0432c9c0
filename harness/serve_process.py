"""`kantor serve` as a real process for tests and benchmarks: started on free loopback
ports against a given JACK server, waited for until it says "ready", stopped by signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on now (TCP or UDP) on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    """``kantor serve`` in a subprocess; ``output`` collects its stdout+stderr lines."""

    def __init__(self, *args: str, jack_server: str | None = None, osc: bool = True,
                 ready_timeout: float = 120.0, env: dict | None = None) -> None:
        self.http_port = free_port()
        self.osc_port = free_port(socket.SOCK_DGRAM) if osc else 0
        self.midi_name = f"ks{os.getpid() % 10000}{self.http_port}"
        environment = dict(os.environ, **(env or {}))
        if jack_server:
            environment.update(JACK_DEFAULT_SERVER=jack_server, JACK_NO_START_SERVER="1")
        command = [sys.executable, "-m", "kantor.bridges.cli", "serve",
                   "--port", str(self.http_port), "--osc-port", str(self.osc_port),
                   "--name", self.midi_name, *args]
        if jack_server and "--api" not in args:
            command += ["--api", "jack"]
        if jack_server and "--no-audio" not in args and "--hostapi" not in args:
            command += ["--hostapi", "jack"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1,
                                        env=environment)
        self.output: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + ready_timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(2)
                self.process.kill()
                raise RuntimeError("kantor serve did not become ready:\n"
                                   + "".join(self.output[-40:]))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if "kantor serve: ready" in line:
                self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/v1/speech/stream"

    @property
    def midi_in(self) -> str:
        return f"{self.midi_name}:in"

    @property
    def midi_out(self) -> str:
        return f"{self.midi_name}-out:out"

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the service and wait for it to exit; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        self._reader.join(5)
        return self.process.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
