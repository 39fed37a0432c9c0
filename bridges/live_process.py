"""The live harmoniser in a process of its own, for ``kantor serve``.

Speech synthesis, HTTP, WebSocket and OSC all run Python in the service's main process,
and Python runs one thread at a time: a MIDI note arriving while a speech thread holds the
interpreter would wait for it (up to the 5 ms switch interval). So the live path - the
MIDI ports, their queue and the harmoniser - lives in a child process that does nothing
else, at a higher scheduling priority where the system allows. The parent talks to it over
a pipe, one request and one reply at a time (each numbered, so a reply that comes after
its request timed out is recognised and skipped):

    ("set", {name: value})  -> ("ok", parameters) or ("error", message)
    ("panic", None)         -> ("ok", None)
    ("status", None)        -> ("ok", status dict)
    ("latencies", n)        -> ("ok", {"count": answered so far, "ms": the last n, oldest first})
    ("stop", None)          -> ("ok", final status), then the child exits

The child stops by itself, releasing its notes, when the pipe closes (the parent died).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

from kantor.bridges.midi import MidiPortError
from kantor.bridges.scheduling import apply_core_choice, raise_priority, real_time

log = logging.getLogger(__name__)

# How many answered melody notes the status keeps (the "last phrase").
PHRASE_LENGTH = 16
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def note_name(pitch: int | None) -> str | None:
    """'C4' for MIDI 60; None for no note."""
    if pitch is None:
        return None
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass
class LiveConfig:
    """What the child needs to open ports and load the harmoniser (picklable)."""

    api: str
    client_name: str = "kantor"
    in_port: str | None = None
    out_port: str | None = None
    assets: str | None = None
    settings: dict = field(default_factory=dict)  # LiveSettings fields
    verbose: bool = False
    environment: dict = field(default_factory=dict)  # e.g. JACK_DEFAULT_SERVER
    cpu: str | int = "last"  # the core the process keeps to (scheduling.core_choice)


class LiveProcessError(RuntimeError):
    """The live process could not start, or stopped answering."""


class PhraseTracker:
    """Remembers the last chords the harmoniser answered with (worker thread only)."""

    def __init__(self, harmonizer) -> None:
        self.harmonizer = harmonizer
        self.chords: deque[tuple[float, tuple, float]] = deque(maxlen=PHRASE_LENGTH)

    def on_answer(self, message: list[int], answers: list[list[int]], seconds: float) -> None:
        if not (len(message) >= 3 and message[0] & 0xF0 == 0x90 and message[2] > 0):
            return
        sounding = self.harmonizer.sounding
        melody = self.harmonizer.thru_note if self.harmonizer.thru_note is not None \
            else message[1]
        chord = tuple(None if p is None else int(p)  # plain ints: the status is JSON
                      for p in (melody, sounding.get(1), sounding.get(2), sounding.get(3)))
        self.chords.append((time.time(), chord, seconds))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("note %s -> %s in %.2f ms", note_name(message[1]),
                      " ".join(note_name(p) or "-" for p in chord), seconds * 1000)

    def phrase(self) -> list[dict]:
        return [{"time": t, "notes": [note_name(p) for p in chord],
                 "midi": list(chord), "latency_ms": seconds * 1000}
                for t, chord, seconds in list(self.chords)]


def _child_logging(verbose: bool):
    """Log through a queue: the live worker never waits on the terminal."""
    import logging.handlers
    import queue

    records: queue.SimpleQueue = queue.SimpleQueue()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(levelname)s: live: %(message)s"))
    listener = logging.handlers.QueueListener(records, console)
    listener.start()
    return listener


def _child_main(connection, config: LiveConfig) -> None:
    """The live process: open ports, serve MIDI, answer the parent until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    os.environ.update(config.environment)
    listener = _child_logging(config.verbose)
    scheduling = raise_priority()  # ahead of synthesis for the CPU
    service = None
    try:
        from pathlib import Path

        from kantor.bridges.midi import LiveMidiService, MidiPorts
        from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings
        from kantor.engine.models import ASSETS, ModelError

        try:
            settings = LiveSettings.checked(**config.settings)
            harmonizer = LiveHarmonizer.load(Path(config.assets or ASSETS), settings)
            ports = MidiPorts(config.api, config.client_name, in_port=config.in_port,
                              out_port=config.out_port)
        except (MidiPortError, ModelError, TypeError) as error:
            connection.send(("error", str(error)))
            return
        tracker = PhraseTracker(harmonizer)
        service = LiveMidiService(harmonizer, ports, on_answer=tracker.on_answer)
        service.start()
        scheduling = real_time(service.worker_id) or scheduling
        core = apply_core_choice(config.cpu)  # every thread, the MIDI ones included
        scheduling += f", {core}" if core else ""
        connection.send(("ready", {"api": config.api, "input": ports.names.input,
                                   "output": ports.names.output,
                                   "pid": os.getpid(), "scheduling": scheduling}))
        _serve_parent(connection, service, harmonizer, tracker)
    finally:
        if service is not None and service.ports.midi_in is not None:
            service.stop()  # not yet stopped by the parent: release and close now
        listener.stop()
        from kantor.bridges.midi import ports_abandoned

        if ports_abandoned():  # ports of a JACK server that died: never close them
            os._exit(0)


def _status(service, harmonizer, tracker) -> dict:
    status = service.status()
    status["parameters"] = harmonizer.parameters()
    status["model"] = {"playing": harmonizer.playing, "tuned_loaded": harmonizer.has_tuned}
    status["last_phrase"] = tracker.phrase()
    status["api"] = service.ports.api
    status["ports"] = asdict(service.ports.names)
    return status


def _serve_parent(connection, service, harmonizer, tracker) -> None:
    while True:
        try:
            if not connection.poll(0.5):
                continue
            number, command, argument = connection.recv()
        except (EOFError, OSError):
            log.warning("the service went away: releasing notes and stopping")
            return
        if command == "stop":
            service.stop()
            final = _status(service, harmonizer, tracker)
            connection.send((number, "ok", final))
            return
        try:
            reply = _command(command, argument, service, harmonizer, tracker)
            connection.send((number, "ok", reply))
        except ValueError as error:
            connection.send((number, "error", str(error)))


def _command(command: str, argument, service, harmonizer, tracker):
    if command == "status":
        return _status(service, harmonizer, tracker)
    if command == "latencies":
        last, kind = argument if isinstance(argument, tuple) else (argument, "all")
        recorder = service.note_on_latency if kind == "note_on" else service.latency
        count = recorder.count
        recent = recorder.last(int(last))
        return {"count": count, "ms": [round(v * 1000, 4) for v in recent.tolist()]}
    if command == "last_decision":  # what the last chord read: explained by the parent
        return harmonizer.last_decision
    if command == "panic":
        if not service.call_soon(harmonizer.release_all):
            raise ValueError("the live queue is full: panic not queued, try again")
        return None
    if command == "set":
        if not isinstance(argument, dict) or not argument:
            raise ValueError("set takes {parameter: value}")
        checked = {name: harmonizer.check_parameter(name, value)
                   for name, value in argument.items()}

        def apply() -> None:
            for name, value in checked.items():
                harmonizer.apply_parameter(name, value)

        if not service.call_soon(apply):
            raise ValueError("the live queue is full: setting not applied, try again")
        parameters = harmonizer.parameters()
        parameters.update(checked)
        return parameters
    raise ValueError(f"unknown live command '{command}'")


class LiveProcess:
    """The parent's handle on the live child process."""

    def __init__(self, config: LiveConfig) -> None:
        self.config = config
        self._context = multiprocessing.get_context("spawn")  # no fork with threads running
        self._connection = None
        self._process = None
        self._lock = threading.Lock()
        self._number = 0  # of the last request sent
        self.info: dict = {}
        self.final_status: dict | None = None

    def start(self, timeout: float = 120.0) -> dict:
        """Start the child and wait until its ports are open and its models warm; returns
        the port names. MidiPortError (ports) or LiveProcessError (anything else)."""
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_child_main, args=(child, self.config),
                                              name="kantor-live", daemon=True)
        self._process.start()
        child.close()
        self._connection = parent
        if not parent.poll(timeout):
            self._kill()
            raise LiveProcessError(f"the live process was not ready within {timeout:.0f} s")
        try:
            kind, payload = parent.recv()
        except EOFError:
            self._process.join(5)
            raise LiveProcessError(f"the live process exited at start (code "
                                   f"{self._process.exitcode})") from None
        if kind == "error":
            self._process.join(10)
            raise MidiPortError(payload)
        self.info = payload
        return payload

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def request(self, command: str, argument=None, timeout: float = 5.0):
        """Send one command and return its reply; ValueError for a refused command,
        LiveProcessError when the child does not answer."""
        with self._lock:
            if not self.alive or self._connection is None:
                raise LiveProcessError("the live harmoniser is not running")
            self._number += 1
            deadline = time.monotonic() + timeout
            try:
                self._connection.send((self._number, command, argument))
                while True:
                    if not self._connection.poll(max(0.0, deadline - time.monotonic())):
                        raise LiveProcessError(f"the live harmoniser did not answer "
                                               f"'{command}' within {timeout:g} s")
                    number, kind, payload = self._connection.recv()
                    if number == self._number:
                        break  # older numbers: late replies to requests that timed out
            except (EOFError, OSError) as error:
                raise LiveProcessError(f"the live harmoniser stopped ({error})") from None
        if kind == "error":
            raise ValueError(payload)
        return payload

    def set(self, **parameters) -> dict:
        """Set live parameters (see LIVE_PARAMETERS); returns them all."""
        return self.request("set", parameters)

    def panic(self) -> None:
        """Note-offs for every note the harmoniser sounds, in order with the MIDI."""
        self.request("panic")

    def status(self) -> dict:
        return self.request("status")

    def last_decision(self):
        """What the last chord answered read and gave (a LiveDecision), None before one."""
        return self.request("last_decision")

    def latencies(self, last: int, kind: str = "all") -> dict:
        """{"count": messages answered so far, "ms": the last ``last`` latencies, oldest
        first} - arrival to answers sent, in milliseconds; ``kind`` "note_on" counts
        note-ons alone."""
        return self.request("latencies", (last, kind))

    def stop(self, timeout: float = 10.0) -> dict | None:
        """Release every note, close the ports and end the child; its final status."""
        if self._process is None:
            return self.final_status
        try:
            if self.alive:
                self.final_status = self.request("stop", timeout=timeout)
        except (LiveProcessError, ValueError) as error:
            log.warning("live process: %s", error)
        self._process.join(timeout)
        if self._process.is_alive():
            self._kill()
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None
        return self.final_status

    def _kill(self) -> None:
        self._process.kill()
        self._process.join(5)
