"""The live service's queue under floods and fuzz, in memory: the real harmoniser and the
real worker thread, with an in-memory port pair (as mido tests its logic) so that the
order of what goes out can be checked exactly. Real JACK floods are in test_live_jack.py
and the reliability benchmark."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kantor.bridges.midi import LiveMidiService
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings


class _Input:
    def set_callback(self, callback) -> None:
        self.callback = callback

    def cancel_callback(self) -> None:
        pass


class MemoryPorts:
    """MidiPorts' surface, in memory: what the worker sends is kept in order."""

    api = "memory"
    lost = None

    def __init__(self) -> None:
        self.midi_in = _Input()
        self.sent: list[list[int]] = []

    def send(self, message: list[int]) -> None:
        self.sent.append(list(message))

    def close(self) -> None:
        self.midi_in = None


def sounding_after(messages: list[list[int]]) -> set[tuple[int, int]]:
    """(channel, key) of the notes still on at the end of ``messages``."""
    sounding: set[tuple[int, int]] = set()
    for message in messages:
        if len(message) == 3 and message[0] & 0xF0 in (0x80, 0x90):
            key = (message[0] & 0x0F, message[1])
            if message[0] & 0xF0 == 0x90 and message[2] > 0:
                sounding.add(key)
            else:
                sounding.discard(key)
    return sounding


@pytest.fixture(scope="module")
def harmonizer():
    return LiveHarmonizer.load(settings=LiveSettings(seed=1))


def drained(service: LiveMidiService, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (service.queue.qsize() or service._parked.is_set()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the last item is being handled


def test_a_parked_note_off_never_overtakes_its_note_on(harmonizer):
    ports = MemoryPorts()
    service = LiveMidiService(harmonizer, ports, queue_size=3)
    service.start()
    hold = threading.Event()
    try:
        assert service.call_soon(lambda: hold.wait(10) and None)  # the worker is busy
        time.sleep(0.05)
        for message in ([0x90, 60, 100], [0x90, 64, 100], [0x90, 67, 100],  # queue full
                        [0x80, 60, 0], [0x80, 64, 0], [0x90, 67, 0]):  # parked
            ports.midi_in.callback((message, 0.0))
        assert service.queue.full() and service._parked.is_set()
        hold.set()
        drained(service)
        assert sounding_after(ports.sent) == set(), ports.sent
        assert not harmonizer.sounding_notes
        assert service.status()["dropped"] == {}
    finally:
        hold.set()
        service.stop()


midi_bytes = st.integers(min_value=0, max_value=255)
messages = st.one_of(
    st.tuples(st.sampled_from([0x80, 0x90, 0x9F, 0x8F]), st.integers(0, 127),
              st.integers(0, 127)).map(list),  # notes on any channel
    st.tuples(st.sampled_from([0xB0, 0xB1]), st.sampled_from([20, 21, 22, 23, 24, 25, 64,
                                                              120, 123]),
              st.integers(0, 127)).map(list),  # Kantor's controllers
    st.lists(midi_bytes, min_size=0, max_size=6),  # anything at all, malformed included
    st.sampled_from([[0xF8], [0xFA], [0xFC], [0xF2, 0, 0], [0xF0, 1, 2, 0xF7]]),  # clock
)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stream=st.lists(messages, min_size=1, max_size=60), queue_size=st.sampled_from([2, 64]))
def test_any_byte_stream_leaves_no_note_hanging(harmonizer, stream, queue_size):
    """Whatever arrives (malformed, floods into a tiny queue, clock, controllers), once
    every key the stream pressed is released, nothing Kantor started still sounds and no
    message made the harmoniser fail."""
    harmonizer.release_all()
    ports = MemoryPorts()
    service = LiveMidiService(harmonizer, ports, queue_size=queue_size)
    service.start()
    try:
        pressed = set()
        for message in stream:
            ports.midi_in.callback((message, 0.0))
            if len(message) >= 3 and message[0] & 0xF0 == 0x90:
                pressed.add((message[0] & 0x0F, message[1] & 0x7F))
        drained(service)
        for channel, key in sorted(pressed):  # the player lets go of every key
            ports.midi_in.callback(([0x80 | channel, key, 0], 0.0))
            if service.queue.full():
                drained(service, 2.0)
        ports.midi_in.callback(([0xB0, 64, 0], 0.0))  # and of the pedal
        drained(service)
        assert sounding_after(ports.sent) == set(), (stream, ports.sent[-12:])
        assert "processing error" not in service.status()["dropped"]
    finally:
        service.stop()
