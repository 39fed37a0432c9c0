"""MIDI ports around the live harmoniser (python-rtmidi).

Kantor opens a virtual input and output where the platform has them (ALSA and JACK on
Linux, CoreMIDI on macOS) or connects to existing ports by name (Windows, or when asked).
rtmidi's input thread only timestamps each message and puts it on a bounded queue; one
worker thread runs the processor and sends its answers. When the queue is full a new
message is dropped and counted, except a note-off, which is parked in a fixed table so
that no note the harmoniser started is left hanging; a parked note-off is played only
after everything queued before it, so it never overtakes its own note-on. Stopping (or
losing a port) sends a note-off for every note Kantor is sounding.
"""

from __future__ import annotations

import collections
import gc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rtmidi

from kantor.bridges.jack import JackServer, JackServerError, jack_running
from kantor.bridges.scheduling import OrdinaryWhileAhead
from kantor.engine.chorale.live import LiveHarmonizer
from kantor.engine.realtime import LatencyRecorder

log = logging.getLogger(__name__)

APIS = {
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "windows": rtmidi.API_WINDOWS_MM,
}


# JACK moves MIDI once per period; closing a port sooner would drop the last note-offs.
DRAIN_SECONDS = 0.25
# After the JACK server returns, connections are restored for this long (seconds): the
# ports at the other end come back when their own programs notice.
RESTORE_WINDOW_S = 30.0
# After a JACK xrun, note-offs sent this long before it (seconds) are sent again.
RESEND_OFFS_S = 0.25
# The idle worker wakes at least this often (seconds) for xruns and parked note-offs.
IDLE_WAKE_S = 0.05


class MidiPortError(RuntimeError):
    """A port could not be opened or found; the message says which and what exists."""


def compiled_apis() -> list[str]:
    """Names of the MIDI APIs this python-rtmidi build supports."""
    compiled = set(rtmidi.get_compiled_api())
    return [name for name, api in APIS.items() if api in compiled]


def pick_api(requested: str | None) -> str:
    """The API to use: the requested one, else JACK when a JACK server answers, ALSA when
    its sequencer exists, CoreMIDI on macOS, Windows MM on Windows."""
    available = compiled_apis()
    if requested:
        if requested not in APIS:
            raise MidiPortError(f"unknown MIDI API '{requested}' (choose from {', '.join(APIS)})")
        if requested not in available:
            raise MidiPortError(f"this python-rtmidi has no {requested} support "
                                f"(it has: {', '.join(available) or 'none'})")
        return requested
    import os
    import sys

    if sys.platform == "darwin" and "coremidi" in available:
        return "coremidi"
    if sys.platform.startswith("win") and "windows" in available:
        return "windows"
    if "jack" in available and jack_running():
        return "jack"
    if "alsa" in available and os.path.exists("/dev/snd/seq"):
        return "alsa"
    raise MidiPortError("no MIDI system found: start a JACK server (jackd) or load the ALSA "
                        "sequencer (snd-seq), or pass --api")


def start_private_jack(name: str = "kantor-jack", period: int = 1024) -> JackServer:
    """Start ``jackd -d dummy`` under ``name`` and point this process's clients at it
    (the name must differ from any client name, or libjack cannot connect)."""
    server = JackServer(name, period)
    try:
        server.start(timeout=10)
    except JackServerError as error:
        raise MidiPortError(f"no MIDI system is running and {error}") from None
    server.point_here()
    return server


class JackWatch:
    """Watches the JACK server from a client of its own (JACK-Client): its shutdown
    callback says within milliseconds that the server stopped or was killed; while it is
    gone a thread tries to reconnect every ``poll_s`` seconds. ``on_lost(reason)`` and
    ``on_back()`` run on that thread. While the server runs, the connections of
    ``watched`` ports (full names) are remembered, to be restored by
    :meth:`restore_connections` once they exist again."""

    def __init__(self, on_lost: Callable[[str], None], on_back: Callable[[], None],
                 name: str = "kantor-watch", poll_s: float = 0.5,
                 on_xrun: Callable[[], None] | None = None,
                 on_ports_gone: Callable[[list[str]], None] | None = None) -> None:
        self.on_lost, self.on_back, self.on_xrun = on_lost, on_back, on_xrun
        self.on_ports_gone = on_ports_gone
        self._ports_seen = False  # the watched ports existed once since the last (re)start
        self.name, self.poll_s = name, poll_s
        self.watched: list[str] = []
        self.connections: dict[str, set[str]] = {}  # our port -> ports connected to it
        self.lost_reason: str | None = None
        self.losses = self.returns = 0
        self.xruns = 0  # cycles the JACK graph ran late (what was in them may be lost)
        self.realtime = False  # whether the server runs real-time (jackd -R)
        self._restoring_until = 0.0  # monotonic time: restore connections until then
        self._client = None
        self._gone = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kantor-jack-watch",
                                        daemon=True)

    def start(self) -> bool:
        """Connect and start watching; False (nothing started) without libjack or a
        server."""
        try:
            import jack
        except (ImportError, OSError):  # JACK-Client, or libjack itself, missing
            log.debug("JACK-Client unavailable: a JACK server that dies goes unnoticed")
            return False
        jack.set_error_function(lambda message: log.debug("libjack: %s", message))
        jack.set_info_function(lambda message: None)
        if not self._connect():
            return False
        self._thread.start()
        return True

    def _connect(self) -> bool:
        import jack

        try:
            client = jack.Client(self.name, no_start_server=True)
        except jack.JackError as problem:
            log.debug("JACK watch: no server yet (%s)", problem)
            return False

        def shutdown(status, reason: str) -> None:  # a JACK thread: hand over, no more
            if self._client is not client:
                # a dead client's farewell: libjack cleans old clients up when a new one
                # connects, after the server returned; it says nothing of the new one
                return
            self.lost_reason = reason or "the JACK server stopped"
            self._gone.set()

        def xrun(delayed_us: float) -> None:  # a late cycle: MIDI in it may be lost
            self.xruns += 1
            if self.on_xrun is not None:
                self.on_xrun()  # a JACK thread: it must only hand work over

        client.set_shutdown_callback(shutdown)
        client.set_xrun_callback(xrun)
        self._client = client  # before activating: a loss from now on is this client's
        self.realtime = bool(client.realtime)
        self._gone.clear()
        try:
            client.activate()
        except jack.JackError as problem:
            log.debug("JACK watch: cannot activate (%s)", problem)
            self._client = None
            return False
        return True

    @property
    def running(self) -> bool:
        return self._client is not None and not self._gone.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._gone.wait(self.poll_s):
                try:  # ports come and go between two calls: a miss is tried again
                    if time.monotonic() < self._restoring_until:
                        self.restore_connections()  # the other side's may come later
                    else:
                        self._remember_connections()
                except Exception as problem:
                    log.debug("JACK connections: %s", problem)
                continue
            if self._stop.is_set():
                break
            self.losses += 1
            dead, self._client = self._client, None
            # Never closed: jack_client_close on a dead server's client can block for
            # ever inside libjack (it waited on its own thread, which waited for the GIL
            # to report an error), and with it the watch and every log line after it.
            _ABANDONED_CLIENTS.append(dead)
            log.error("JACK server lost (%s): MIDI and audio on it are off until it returns",
                      self.lost_reason)
            self._call(self.on_lost, self.lost_reason)
            while not self._stop.wait(self.poll_s):
                if self._connect():
                    self.returns += 1
                    log.warning("JACK server is back")
                    self.lost_reason = None
                    self._ports_seen = False
                    self._restoring_until = time.monotonic() + RESTORE_WINDOW_S
                    self._call(self.on_back)
                    break

    @staticmethod
    def _call(function, *arguments) -> None:
        try:
            function(*arguments)
        except Exception:  # the owner's problem must not end the watch
            log.exception("JACK watch callback failed")

    @staticmethod
    def _existing(client, names) -> set[str]:
        """Which of the ports ``names`` exist now. Only they are looked up: JACK-Client
        wraps every port a query returns (a pointer per port) while other clients' ports
        come and go (jackclient-python issue #70: a crash inside such a lookup)."""
        if not names:
            return set()
        pattern = "|".join(f"^{_posix_regex_literal(name)}$" for name in names)
        return {p.name for p in client.get_ports(name_pattern=pattern)}

    def _remember_connections(self) -> None:
        if not self.watched:  # the service's own watch only listens for the server
            return
        client = self._client
        existing = self._existing(client, self.watched)
        missing = [p for p in self.watched if p not in existing]
        if self.watched and not missing:
            self._ports_seen = True
        elif missing and self._ports_seen and not self._gone.is_set() \
                and self.on_ports_gone is not None:
            # the server runs but our ports went: JACK drops ("zombifies") a client that
            # misses its deadlines for seconds, and rtmidi's send then spins for ever
            self._ports_seen = False
            log.error("JACK dropped the ports %s (their client missed its deadlines)",
                      ", ".join(missing))
            self._call(self.on_ports_gone, missing)
            return
        seen = {}
        for port in list(self.watched):
            try:
                seen[port] = {p.name for p in client.get_all_connections(port)}
            except Exception:  # the port is not there (yet): keep what we knew
                continue
        if not self._gone.is_set():  # a dying server answers "no connections": not news
            self.connections.update(seen)

    def restore_connections(self) -> int:
        """Connect our watched ports again to the ports they were connected to, where
        those exist; how many connections were made."""
        client = self._client
        if client is None:
            return 0
        made = 0
        if not self.watched:
            return 0
        try:
            existing = self._existing(client, {*self.connections,
                                               *(p for ps in self.connections.values()
                                                 for p in ps)})
        except Exception:  # the server went again
            return 0
        for ours, theirs in self.connections.items():
            if ours not in existing:
                continue
            try:
                port = client.get_port_by_name(ours)
                already = {p.name for p in client.get_all_connections(port)}
            except Exception:  # a port went while we looked: next time
                continue
            for other in (theirs & existing) - already:
                source, destination = (ours, other) if port.is_output else (other, ours)
                try:
                    client.connect(source, destination)
                    made += 1
                except Exception as problem:  # already connected, or it just went
                    log.debug("reconnecting %s -> %s: %s", source, destination, problem)
        return made

    def status(self) -> dict:
        """Server state and how often it was lost and came back."""
        return {"server": "running" if self.running else "lost",
                "lost_reason": self.lost_reason, "losses": self.losses,
                "returns": self.returns, "xruns": self.xruns}

    def stop(self) -> None:
        self._stop.set()
        self._gone.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self._client is not None:
            _close_quietly(self._client)
            self._client = None


def _posix_regex_literal(text: str) -> str:
    """``text`` as a POSIX extended regular expression matching only itself (JACK's port
    name patterns are POSIX, where Python's re.escape writes escapes it does not know)."""
    return "".join(f"\\{c}" if c in ".[]()*+?{}|^$\\" else c for c in text)


def _close_quietly(client) -> None:
    try:
        client.deactivate()
        client.close()
    except Exception as problem:  # a client of a dead server: nothing more to do
        log.debug("closing the JACK watch client: %s", problem)


# Ports of a JACK server that died. Closing their rtmidi clients is unsafe: libjack may
# crash on a dead client, and once the server is back its client numbers are reused, so
# closing an old client closes someone's new one (ours: the re-created ports vanished).
# They are kept here, never closed, and the process leaves with os._exit (see
# ports_abandoned), so no destructor runs them either.
_ABANDONED: list[MidiPorts] = []
_ABANDONED_CLIENTS: list = []  # JACK-Client clients of a dead server (JackWatch's)


def abandon(ports: MidiPorts) -> None:
    """Keep ``ports`` (of a JACK server that died) unclosed for the life of the process."""
    if ports.midi_in is not None:
        ports.midi_in.cancel_callback()
    _ABANDONED.append(ports)


def ports_abandoned() -> bool:
    """Whether this process holds ports of a dead JACK server: it must then end with
    ``os._exit`` (after flushing), or their destructors would close them."""
    return bool(_ABANDONED or _ABANDONED_CLIENTS)


def list_ports(api: str) -> tuple[list[str], list[str]]:
    """(MIDI sources, MIDI destinations) visible through ``api``."""
    midi_in = rtmidi.MidiIn(APIS[api], name="kantor-list")
    midi_out = rtmidi.MidiOut(APIS[api], name="kantor-list")
    try:
        return midi_in.get_ports(), midi_out.get_ports()
    finally:
        midi_in.delete()
        midi_out.delete()


def _find_port(ports: list[str], wanted: str, kind: str) -> int:
    matches = [i for i, name in enumerate(ports) if wanted.lower() in name.lower()]
    if not matches:
        raise MidiPortError(f"no MIDI {kind} port matches '{wanted}' (available: "
                            f"{'; '.join(ports) or 'none'})")
    return matches[0]


def _open(port, wanted: str | None, kind: str, label: str, virtual_name: str,
          virtual_ok: bool) -> str:
    """Open ``port`` on the existing port matching ``wanted``, else as a virtual port;
    return the name a user connects to."""
    if wanted:
        index = _find_port(port.get_ports(), wanted, kind)
        port.open_port(index, label)
        return port.get_ports()[index]
    if not virtual_ok:
        option = "--in-port" if kind == "input" else "--out-port"
        raise MidiPortError(f"this platform has no virtual MIDI ports: pass {option} NAME "
                            "(e.g. a loopMIDI port)")
    port.open_virtual_port(label)
    return virtual_name


@dataclass
class PortNames:
    """What a user connects to: printed at start."""

    input: str
    output: str


class MidiPorts:
    """Kantor's MIDI input and output, virtual or connected to existing ports."""

    def __init__(self, api: str, client_name: str = "kantor", in_port: str | None = None,
                 out_port: str | None = None) -> None:
        self.api = api
        self.client_name, self.in_port, self.out_port = client_name, in_port, out_port
        self.lost: str | None = None
        virtual_ok = api != "windows"
        try:
            self.midi_in = rtmidi.MidiIn(APIS[api], name=client_name, queue_size_limit=4096)
            self.midi_out = rtmidi.MidiOut(APIS[api], name=f"{client_name}-out")
        except rtmidi.SystemError as error:
            raise MidiPortError(f"cannot open the {api} MIDI system: {error}") from None
        if api == "jack":
            # JACK renames a second client "name-01" without a word: the ports printed
            # and connected by name would not be ours
            taken = [p for p in (*self.midi_in.get_ports(), *self.midi_out.get_ports())
                     if p.startswith((f"{client_name}:", f"{client_name}-out:"))]
            if taken:
                self.close()
                raise MidiPortError(f"JACK already has a client named '{client_name}' "
                                    f"(port {taken[0]}; another kantor?): choose another "
                                    "--name")
        self.midi_in.ignore_types(sysex=False, timing=False, active_sense=True)
        for port in (self.midi_in, self.midi_out):
            port.set_error_callback(self._on_error)
        try:
            in_name = _open(self.midi_in, in_port, "input", "in", f"{client_name}:in",
                            virtual_ok)
            out_name = _open(self.midi_out, out_port, "output", "out",
                             f"{client_name}-out:out", virtual_ok)
        except (MidiPortError, rtmidi.RtMidiError) as error:
            self.close()
            raise MidiPortError(str(error)) from None
        self.names = PortNames(in_name, out_name)

    def _on_error(self, kind, message: str, data=None) -> None:
        log.error("MIDI error (%s): %s", kind, message)
        self.lost = message

    def reopen(self) -> MidiPorts:
        """The same ports opened afresh (after the JACK server came back)."""
        return MidiPorts(self.api, self.client_name, self.in_port, self.out_port)

    def send(self, message: list[int]) -> None:
        self.midi_out.send_message(message)

    def close(self) -> None:
        if getattr(self, "midi_in", None) is not None:
            self.midi_in.cancel_callback()  # never close an input under a live callback
        for port in (getattr(self, "midi_in", None), getattr(self, "midi_out", None)):
            if port is not None:
                port.close_port()
                port.delete()
        self.midi_in = self.midi_out = None


class LiveMidiService:
    """Runs a :class:`LiveHarmonizer` between :class:`MidiPorts`: callback -> bounded
    queue -> worker thread -> output port."""

    def __init__(self, harmonizer: LiveHarmonizer, ports: MidiPorts,
                 queue_size: int = 1024,
                 on_answer: Callable[[list[int], list[list[int]], float], None] | None = None
                 ) -> None:
        self.harmonizer = harmonizer
        self.ports = ports
        # Called by the worker after each message that was answered: (message, answers,
        # seconds from arrival to sent). Keep it short: it runs on the live path.
        self.on_answer = on_answer
        # (arrival, message or control call, sequence number)
        self.queue: queue.Queue[tuple[float, list[int] | Callable[[], list[list[int]]],
                                      int]] = queue.Queue(maxsize=queue_size)
        self._sequence = itertools.count()  # next() is atomic: rtmidi's and control threads
        self._last_queued = -1  # newest MIDI item queued (written by rtmidi's thread only)
        self.latency = LatencyRecorder()
        self.note_on_latency = LatencyRecorder()  # note-ons alone (three network calls)
        self.dropped_full_queue = 0
        self.note_ons_arrived = 0  # counted on arrival, before any queue
        self.send_errors = 0
        self.not_sent = 0  # answers dropped because the output was gone (JACK stopped)
        self.messages_sent = 0  # handed to the output port (what a receiver should count)
        # (time, note-off) lately sent: sent again after a JACK xrun, which can lose them
        self._recent_offs: collections.deque[tuple[float, list[int]]] = \
            collections.deque(maxlen=1024)
        self.offs_resent = 0
        self._xrun = threading.Event()  # set by the JACK watch: the worker sends offs again
        self.watch: JackWatch | None = None  # on JACK: notices the server die and return
        # note-offs the queue refused, by channel and key: the sequence number of the last
        # item queued before each (it must be handled first), -1 where none is parked
        self._parked_offs = np.full((16, 128), -1, dtype=np.int64)
        self._parked_lock = threading.Lock()  # held for a few array operations only
        self._parked = threading.Event()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="kantor-live", daemon=True)

    def start(self) -> None:
        """Prepare the processor (models warm) and start listening."""
        self.harmonizer.prepare()
        # Everything allocated so far lives for the whole session: keep the garbage
        # collector from walking it on the live path (its pauses are milliseconds).
        gc.collect()
        gc.freeze()
        self.ports.midi_in.set_callback(self._on_message)
        self._worker.start()
        if self.ports.api == "jack":
            watch = JackWatch(self._jack_lost, self._jack_back,
                              name=f"{self.ports.client_name}-watch",
                              on_xrun=self._xrun.set, on_ports_gone=self._ports_gone)
            watch.watched = [f"{self.ports.client_name}:in",
                             f"{self.ports.client_name}-out:out"]
            if watch.start():
                self.watch = watch

    def _offs_again(self) -> list[list[int]]:
        """(Worker thread, after a JACK xrun.) The note-offs sent in the last
        ``RESEND_OFFS_S`` for notes that are not sounding again: a late cycle can lose
        them on the way to the synthesizer, which would hold those notes for ever. A
        second note-off for a silent note is harmless."""
        now = time.perf_counter()
        sounding = set(self.harmonizer.sounding_notes)
        again = {(m[0] & 0x0F, m[1]): m for t, m in self._recent_offs
                 if now - t <= RESEND_OFFS_S}
        messages = [m for key, m in again.items() if key not in sounding]
        self.offs_resent += len(messages)
        return messages

    # the JACK watch's thread
    def _ports_gone(self, missing: list[str]) -> None:
        """JACK dropped our client while the server runs: stop sending into it, forget
        what sounded (it went with the ports), open them again."""
        self.ports.lost = f"JACK dropped the ports {', '.join(missing)}"
        self.call_soon(self.harmonizer.release_all)
        self._jack_back()

    def _jack_lost(self, reason: str) -> None:
        self.ports.lost = f"JACK server lost ({reason})"
        # what sounded died with the server: forget it (the note-offs cannot go out, and
        # are counted as not sent), so nothing is held when the server returns
        self.call_soon(self.harmonizer.release_all)

    def _jack_back(self, attempts: int = 5) -> None:
        old = self.ports
        for attempt in range(attempts):
            try:
                new = old.reopen()
                break
            except MidiPortError as error:  # the server is still starting: try again
                if attempt == attempts - 1:
                    old.lost = f"JACK is back but the ports cannot be re-created: {error}"
                    log.error("%s", old.lost)
                    return
                time.sleep(0.2)
        new.midi_in.set_callback(self._on_message)
        self.ports = new
        abandon(old)
        restored = self.watch.restore_connections() if self.watch is not None else 0
        log.warning("MIDI ports re-created (%s, %s); %d connection(s) restored",
                    new.names.input, new.names.output, restored)

    # rtmidi's thread: timestamp and hand over, nothing else.
    def _on_message(self, event, data=None) -> None:
        arrived = time.perf_counter()
        message = event[0]
        if len(message) >= 3 and message[0] & 0xF0 == 0x90 and message[2] > 0:
            self.note_ons_arrived += 1
        number = next(self._sequence)
        try:
            self.queue.put_nowait((arrived, message, number))
            self._last_queued = number
        except queue.Full:
            status = message[0] if message else 0
            if len(message) >= 3 and (status & 0xF0 == 0x80 or (
                    status & 0xF0 == 0x90 and message[2] == 0)):
                with self._parked_lock:  # after its note-on, which is queued (or dropped)
                    self._parked_offs[status & 0x0F, message[1] & 0x7F] = self._last_queued
                self._parked.set()
            else:
                self.dropped_full_queue += 1

    def _run(self) -> None:
        # A processor that can answer ahead does so, a batch at a time, whenever nothing
        # waits in the queue (the pass-through baseline of the benchmarks cannot); the
        # processor bounds it to a share of the time between notes. Under a real-time
        # JACK server (its threads above the worker's SCHED_FIFO 10) it keeps the worker's
        # scheduling; otherwise it works ahead under ordinary scheduling.
        ahead = getattr(self.harmonizer, "speculate", None)
        # A processor with timed work (a release turning into a pause) says when it is
        # due; the worker wakes for it when no message comes first.
        timed = hasattr(self.harmonizer, "on_time")
        ordinary = OrdinaryWhileAhead()
        while not self._stop.is_set():
            if self._xrun.is_set():  # not through the queue: a flood keeps it full
                self._xrun.clear()
                self._send_all(self._offs_again())
            busy = ahead is not None and self.harmonizer.speculating
            due = self.harmonizer.due_s if timed else None
            try:
                if busy:
                    arrived, message, number = self.queue.get_nowait()
                else:
                    ordinary.restore()  # wake for the next message at full priority
                    wait = IDLE_WAKE_S if due is None else min(
                        max(due - time.perf_counter(), 0.0), IDLE_WAKE_S)
                    arrived, message, number = self.queue.get(timeout=wait)
            except queue.Empty:
                if due is not None and time.perf_counter() >= due:
                    ordinary.restore()
                    self._call(lambda: self.harmonizer.on_time(time.perf_counter()))
                elif self._parked.is_set():  # everything queued before them was handled
                    ordinary.restore()
                    self._release_parked(None)
                elif busy:
                    watch = self.watch
                    if watch is None or not watch.realtime:
                        ordinary.lower()
                    self._speculate(ahead)
                continue
            ordinary.restore()
            if callable(message):  # a control call from call_soon, in order with the notes
                self._call(message)
            else:
                self._handle(message, arrived)
            if self._parked.is_set():
                self._release_parked(number)

    def _speculate(self, ahead: Callable[[], None]) -> None:
        try:
            ahead()
        except Exception:  # a bug in answering ahead must not stop the answers
            log.exception("answering ahead failed; turned off")
            self.harmonizer.settings.speculation = 0

    def _call(self, function: Callable[[], list[list[int]]]) -> None:
        try:
            self._send_all(function() or [])
        except Exception:  # a bad control call must not kill the worker
            log.exception("control call failed")

    def _handle(self, message: list[int], arrived: float) -> None:
        try:
            answers = self.harmonizer.process(message, arrived)
        except Exception:  # a processor bug must not kill the service: log, count, go on
            log.exception("processing %s failed", message)
            self.harmonizer.stats.drop("processing error")
            answers = self.harmonizer.release_all()
        self._send_all(answers)
        if answers:
            seconds = time.perf_counter() - arrived
            self.latency.record(seconds)
            if len(message) >= 3 and message[0] & 0xF0 == 0x90 and message[2] > 0:
                self.note_on_latency.record(seconds)
            if self.on_answer is not None:
                self.on_answer(message, answers, seconds)

    def _release_parked(self, handled: int | None) -> None:
        """Play the parked note-offs whose preceding items are all handled (sequence
        numbers up to ``handled``; None: the queue is empty, so all of them)."""
        with self._parked_lock:
            parked = self._parked_offs >= 0
            ready = parked if handled is None else parked & (self._parked_offs <= handled)
            keys = np.argwhere(ready)
            self._parked_offs[ready] = -1
            if not (self._parked_offs >= 0).any():
                self._parked.clear()
        for channel, note in keys:
            self._handle([0x80 | int(channel), int(note), 0], time.perf_counter())

    def _send_all(self, messages: list[list[int]]) -> None:
        ports = self.ports
        if ports.lost:  # rtmidi's JACK send spins for ever once a dead server's buffer fills
            self.not_sent += len(messages)
            return
        for message in messages:
            try:
                ports.send(message)
                self.messages_sent += 1
                if message[0] & 0xF0 == 0x80 or (message[0] & 0xF0 == 0x90
                                                 and message[2] == 0):
                    self._recent_offs.append((time.perf_counter(), message))
            except Exception as error:  # a vanished port: count it, keep going
                self.send_errors += 1
                log.debug("send failed: %s", error)

    @property
    def worker_id(self) -> int | None:
        """The worker thread's system id (for scheduling), once started."""
        return self._worker.native_id

    def call_soon(self, function: Callable[[], list[list[int]] | None]) -> bool:
        """Run ``function`` on the worker thread, in order with the MIDI already queued
        (so it never races the harmoniser), and send the messages it returns. False (and
        nothing run) when the queue is full."""
        number = next(self._sequence)
        try:
            self.queue.put_nowait((time.perf_counter(), function, number))
        except queue.Full:
            return False
        return True

    def panic(self) -> None:
        """Note-offs for everything Kantor sounds. Only call it when the worker is not
        running (:meth:`stop` does); while it runs, send CC 123 through the input."""
        self._send_all(self.harmonizer.release_all())

    def stop(self) -> None:
        """Stop listening, release every sounding note, close the ports."""
        if self.watch is not None:
            self.watch.stop()
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        if self.ports.midi_in is not None:
            self.ports.midi_in.cancel_callback()
        self.panic()  # whatever is still queued, nothing Kantor started keeps sounding
        if self.ports.lost and self.watch is not None and not self.watch.running:
            abandon(self.ports)  # on a dead JACK server: see abandon()
            return
        time.sleep(DRAIN_SECONDS)
        self.ports.close()

    def status(self) -> dict:
        """Counters and latency percentiles for a status line."""
        stats = self.harmonizer.stats
        dropped = dict(stats.dropped)
        if self.dropped_full_queue:
            dropped["queue full"] = self.dropped_full_queue
        if self.send_errors:
            dropped["send errors"] = self.send_errors
        if self.not_sent:
            dropped["not sent: output gone"] = self.not_sent
        return {"notes_in": stats.notes_in, "notes_out": stats.notes_out,
                "messages_sent": self.messages_sent, "note_ons_arrived": self.note_ons_arrived,
                "note_offs_resent_after_xruns": self.offs_resent,
                "latency_ms": self.latency.percentiles_ms(), "dropped": dropped,
                "speculation": (stats.speculation() if hasattr(stats, "speculation")
                                else None),
                "sounding": len(self.harmonizer.sounding_notes), "lost": self.ports.lost,
                "jack": self.watch.status() if self.watch is not None else None}
