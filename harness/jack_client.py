"""A test MIDI client on JACK: plays into Kantor and listens to what comes back."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import rtmidi


def jack_connect(source: str, destination: str) -> None:
    """Connect two JACK ports with JACK's own tool (a real client nobody here wrote)."""
    subprocess.run(["jack_connect", source, destination], check=True, env=os.environ.copy())


class JackMidiClient:
    """Virtual ports '<name>:out' (to Kantor) and '<name>-in:in' (from Kantor)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"daw{uuid.uuid4().hex[:6]}"
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=self.name)
        self.out.open_virtual_port("out")
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{self.name}-in")
        self.inp.open_virtual_port("in")
        self.received: list[tuple[float, list[int]]] = []
        self.sounding: set[tuple[int, int]] = set()
        self._lock = threading.RLock()
        self.inp.set_callback(self._on_message)

    def _on_message(self, event, data=None) -> None:
        message = event[0]
        with self._lock:
            self.received.append((time.perf_counter(), message))
            if len(message) == 3 and message[0] & 0xF0 in (0x80, 0x90):
                key = (message[0] & 0x0F, message[1])
                if message[0] & 0xF0 == 0x90 and message[2] > 0:
                    self.sounding.add(key)
                else:
                    self.sounding.discard(key)

    def connect_to(self, kantor_in: str, kantor_out: str) -> None:
        jack_connect(f"{self.name}:out", kantor_in)
        jack_connect(kantor_out, f"{self.name}-in:in")

    def send(self, message: list[int]) -> float:
        sent = time.perf_counter()
        self.out.send_message(message)
        return sent

    def wait_for(self, predicate, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.005)
        return False

    def messages_since(self, index: int) -> list[list[int]]:
        with self._lock:
            return [m for _, m in self.received[index:]]

    def close(self) -> None:
        # Closing an input whose callback is still set can free it under rtmidi's thread
        # (a heap abort, "munmap_chunk(): invalid pointer", seen after the flood test)
        self.inp.cancel_callback()
        for port in (self.out, self.inp):
            port.close_port()
            port.delete()


PLAYER_SCRIPT = """
import sys, rtmidi
out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=sys.argv[1])
out.open_virtual_port("out")
print("ready", flush=True)
for line in sys.stdin:
    out.send_message([int(b) for b in line.split()])
"""


class ProcessDaw:
    """A DAW in processes of its own, so that it can die with a JACK server as a real one
    would (SIGKILL; closing rtmidi clients of a dead server can crash a process): a note
    player '<name>:out' (python-rtmidi) and JACK's own jack_midi_dump as '<name>-mon:input'.
    """

    def __init__(self, name: str, env: dict) -> None:
        import subprocess
        import sys

        self.name, self.env = name, env
        self.player = subprocess.Popen([sys.executable, "-c", PLAYER_SCRIPT, name], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
        self.monitor = subprocess.Popen(["stdbuf", "-oL", "jack_midi_dump", f"{name}-mon"],
                                        env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.received: list[list[int]] = []
        threading.Thread(target=self._read, daemon=True).start()
        assert self.player.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while f"{name}-mon:input" not in subprocess.run(
                ["jack_lsp"], env=env, capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "jack_midi_dump did not start"
            time.sleep(0.05)

    @property
    def out(self) -> str:
        return f"{self.name}:out"

    @property
    def inp(self) -> str:
        return f"{self.name}-mon:input"

    def _read(self) -> None:
        for line in self.monitor.stdout:  # "   0: 90 3c 64 note on ..."
            if ":" in line:
                try:
                    self.received.append([int(b, 16) for b in line.split(":")[1].split()[:3]])
                except ValueError:
                    continue

    def connect_to(self, kantor_in: str, kantor_out: str) -> None:
        import subprocess

        subprocess.run(["jack_connect", self.out, kantor_in], check=True, env=self.env)
        subprocess.run(["jack_connect", kantor_out, self.inp], check=True, env=self.env)

    def send(self, message: list[int]) -> None:
        self.player.stdin.write(" ".join(map(str, message)) + "\n")
        self.player.stdin.flush()

    def answered(self, pitch: int, timeout: float = 5.0) -> bool:
        """Play ``pitch`` and release it: True when four voices started and all stopped."""
        before = len(self.received)
        self.send([0x90, pitch, 100])
        deadline = time.monotonic() + timeout
        while sum(1 for m in self.received[before:] if m[0] & 0xF0 == 0x90 and m[2]) < 4:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        self.send([0x80, pitch, 0])
        while time.monotonic() < deadline:
            sounding = set()
            for m in self.received:
                key = (m[0] & 0x0F, m[1])
                if m[0] & 0xF0 == 0x90 and m[2]:
                    sounding.add(key)
                elif m[0] & 0xF0 in (0x80, 0x90):
                    sounding.discard(key)
            if not sounding:
                return True
            time.sleep(0.01)
        return False

    def kill(self) -> None:
        """SIGKILL both processes (by their ids)."""
        for process in (self.player, self.monitor):
            if process.poll() is None:
                process.kill()
            process.wait()
