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

    def __init__(self) -> None:
        self.name = f"daw{uuid.uuid4().hex[:6]}"
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
