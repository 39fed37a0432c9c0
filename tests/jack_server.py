"""A real JACK server for tests (dummy driver, 1024-frame periods) that can be killed and
started again under the same name, as a crashing or restarted server would be."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
import uuid


class JackServer:
    """``jackd --no-realtime -n NAME -d dummy``; ``env`` points clients at it."""

    def __init__(self, name: str | None = None, period: int = 1024) -> None:
        if shutil.which("jackd") is None:
            raise RuntimeError("jackd is not installed (Debian package jackd2; `make test` "
                               "installs it as root)")
        self.name = name or f"kantor-test-{uuid.uuid4().hex[:8]}"
        self.period = period
        self.process: subprocess.Popen | None = None
        self.killed = False  # its last stop was SIGKILL (its registry slot is taken)
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    def start(self, timeout: float = 15.0) -> JackServer:
        self.killed = False  # a server of the same name takes the old slot back
        self.process = subprocess.Popen(
            ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy", "-r", "48000", "-p",
             str(self.period)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"jackd exited: {self.process.stderr.read()[-500:]}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"jackd did not come up within {timeout:g} s")

    def running(self) -> bool:
        return subprocess.run(["jack_lsp"], env=self.env, capture_output=True).returncode == 0

    def ports(self, connections: bool = False) -> str:
        """``jack_lsp`` (``-c``: with connections), as text."""
        return subprocess.run(["jack_lsp", *(["-c"] if connections else [])], env=self.env,
                              capture_output=True, text=True).stdout

    def connections(self, port: str) -> list[str]:
        """Ports connected to ``port`` (from ``jack_lsp -c``)."""
        found, current = [], None
        for line in self.ports(connections=True).splitlines():
            if line.startswith((" ", "\t")):
                if current == port:
                    found.append(line.strip())
            else:
                current = line.strip()
        return found

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server by ``sig``; after SIGKILL, remove what it left in /dev/shm (JACK
        keeps 8 server slots there), as a supervisor restarting it would."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            sig = signal.SIGKILL
        if sig == signal.SIGKILL:
            self.clean_shm()
            self.killed = True

    def clean_shm(self) -> None:
        for leftover in (glob.glob(f"/dev/shm/jack_{self.name}_*")
                         + glob.glob(f"/dev/shm/jack_sem.*_{self.name}_*")):
            with contextlib.suppress(OSError):
                os.unlink(leftover)

    def release_slot(self) -> None:
        """Free this server's entry in JACK's registry of 8 server slots if the process
        that held it is gone: a server that did not unregister (killed, or stopped while
        zombie clients held it) keeps its slot until one of the same name starts, and
        eight of them keep every new server from starting ("Too many servers")."""
        import struct

        try:
            with open("/dev/shm/jack-shm-registry", "r+b") as registry:
                header = registry.read(24)
                if len(header) < 24 or header[:4] != b"KCAJ":
                    return
                header_length = struct.unpack_from("<I", header, 16)[0]
                entry = (header_length - 24) // 8  # MAX_SERVERS = 8: pid, then the name
                for slot in range(8):
                    registry.seek(24 + slot * entry)
                    data = registry.read(entry)
                    pid = struct.unpack_from("<i", data)[0]
                    name = data[4:].split(b"\0")[0].decode(errors="replace")
                    if name.endswith(f":{self.name}:") and pid and not _alive(pid):
                        registry.seek(24 + slot * entry)
                        registry.write(bytes(entry))
        except OSError:
            return

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        if self.killed:
            # A killed server keeps its entry in JACK's registry of 8 server slots until a
            # server of the same name starts: start one and stop it cleanly to free it.
            self.killed = False
            self.start()
            self.kill(signal.SIGTERM)
        self.clean_shm()  # semaphores of clients that were killed with the server
        self.release_slot()

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
