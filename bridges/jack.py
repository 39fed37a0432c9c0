"""Starting, finding and stopping JACK servers: the one place Kantor runs ``jackd``.

Kantor starts a server of its own when no MIDI system runs (``--start-jack``); the tests
and the benchmarks start private ones (dummy driver) under unique names. All of them stop
with SIGTERM: JACK keeps 8 server slots in /dev/shm, and a server killed with SIGKILL keeps
its slot until one of the same name starts again (:meth:`JackServer.stop` frees it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

MAX_SERVERS = 8  # JACK's registry of server slots in /dev/shm/jack-shm-registry


class JackServerError(RuntimeError):
    """jackd is missing, exited at start, or did not answer in time; the message says which."""


def jack_running(env: dict[str, str] | None = None) -> bool:
    """Whether a JACK server answers (``jack_lsp``; libjack's own probe from inside this
    process prints connection errors to the terminal). ``env`` picks the server through
    JACK_DEFAULT_SERVER; this process's environment by default."""
    if shutil.which("jack_lsp"):
        return subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode == 0
    import rtmidi  # no jack_lsp (jackd2 ships it): ask through RtMidi's JACK API

    try:
        probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="kantor-probe")
    except rtmidi.SystemError:
        return False
    try:
        probe.get_port_count()  # raises or returns 0 without a server; a server lists ports
        return True
    except rtmidi.SystemError:
        return False
    finally:
        probe.delete()


def realtime_allowed(priority: int = 70) -> bool:
    """Whether this user may run threads under SCHED_FIFO at ``priority`` (root, or an
    RLIMIT_RTPRIO at least that high)."""
    limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    return os.geteuid() == 0 or limit == resource.RLIM_INFINITY or limit >= priority


class JackServer:
    """``jackd -d dummy`` under ``name`` at ``period`` frames and ``rate`` Hz.

    ``realtime``: run JACK's threads under SCHED_FIFO at ``priority`` (``-R -P``), as a
    musician runs it; otherwise ``--no-realtime``. The server's log goes to a file
    (:meth:`log`): a pipe that nobody reads fills up with xrun reports and then blocks the
    server itself. ``env`` points child processes at this server; :meth:`point_here` does
    the same for this process. A context manager: stopped on exit.
    """

    def __init__(self, name: str | None = None, period: int = 1024, rate: int = 48000,
                 realtime: bool = False, priority: int = 70) -> None:
        self.name = name or f"kantor-{uuid.uuid4().hex[:8]}"
        self.period, self.rate = period, rate
        self.realtime, self.priority = realtime, priority
        self.process: subprocess.Popen | None = None
        self.killed = False  # its last stop was SIGKILL (its registry slot is taken)
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")
        self._log_path: Path | None = None

    def command(self) -> list[str]:
        scheduling = (["-R", "-P", str(self.priority)] if self.realtime
                      else ["--no-realtime"])
        return ["jackd", *scheduling, "-n", self.name, "-d", "dummy", "-r", str(self.rate),
                "-p", str(self.period)]

    def start(self, timeout: float = 15.0) -> JackServer:
        """Start the server and wait until it answers; :class:`JackServerError` if not."""
        if shutil.which("jackd") is None:
            raise JackServerError("jackd is not installed (Debian package jackd2: "
                                  "sudo apt-get install jackd2)")
        if self.running():  # it would answer for us while ours fails to start
            raise JackServerError(f"a JACK server named '{self.name}' already runs")
        self.killed = False  # a server of the same name takes the old slot back
        if self._log_path is None:
            handle, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
            os.close(handle)
            self._log_path = Path(path)
        with open(self._log_path, "a") as log:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                            stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JackServerError(f"jackd exited at start (code {self.process.returncode}):"
                                      f" {self.log()[-500:].strip()}")
            if self.running():
                return self
            time.sleep(0.05)
        self.stop()
        raise JackServerError(f"jackd did not come up within {timeout:g} s")

    def running(self) -> bool:
        """Whether this server answers now."""
        return jack_running(self.env)

    def point_here(self) -> None:
        """Point this process's JACK clients (libjack reads the environment) at the server."""
        os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    def log(self) -> str:
        """What jackd wrote so far (xrun reports among it)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

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
        """Stop the server by ``sig`` (a crash is SIGKILL); after SIGKILL, remove what it
        left in /dev/shm, as a supervisor restarting it would."""
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
        """Remove this server's segments and semaphores from /dev/shm."""
        for leftover in (glob.glob(f"/dev/shm/jack_{self.name}_*")
                         + glob.glob(f"/dev/shm/jack_sem.*_{self.name}_*")):
            with contextlib.suppress(OSError):
                os.unlink(leftover)

    def release_slot(self) -> None:
        """Free this server's entry in JACK's registry of 8 server slots if the process
        that held it is gone: a server that did not unregister (killed, or stopped while
        zombie clients held it) keeps its slot until one of the same name starts, and
        eight of them keep every new server from starting ("Too many servers")."""
        try:
            with open("/dev/shm/jack-shm-registry", "r+b") as registry:
                header = registry.read(24)
                if len(header) < 24 or header[:4] != b"KCAJ":
                    return
                header_length = struct.unpack_from("<I", header, 16)[0]
                entry = (header_length - 24) // MAX_SERVERS  # pid, then the name
                for slot in range(MAX_SERVERS):
                    registry.seek(24 + slot * entry)
                    data = registry.read(entry)
                    pid = struct.unpack_from("<i", data)[0]
                    name = data[4:].split(b"\0")[0].decode(errors="replace")
                    if name.endswith(f":{self.name}:") and pid and not process_alive(pid):
                        registry.seek(24 + slot * entry)
                        registry.write(bytes(entry))
        except OSError:
            return

    def stop(self) -> str:
        """Stop with SIGTERM and leave no slot, segment or log file behind; returns the log
        (what jackd wrote, xrun reports among it)."""
        self.kill(signal.SIGTERM)
        if self.killed:
            # A killed server keeps its entry in JACK's registry of 8 server slots until a
            # server of the same name starts: start one and stop it cleanly to free it.
            self.killed = False
            with contextlib.suppress(JackServerError):
                self.start()
            self.kill(signal.SIGTERM)
        self.clean_shm()  # semaphores of clients that were killed with the server
        self.release_slot()
        text = self.log()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        return text

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
