"""The live harmoniser on real JACK MIDI ports, in process and as the `kantor live` command."""

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.jack_client import JackMidiClient
from kantor.bridges.midi import LiveMidiService, MidiPorts, list_ports
from kantor.engine.chorale.encoding import TEXTBOOK_RANGES
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings

pytestmark = pytest.mark.jack


@pytest.fixture
def service(jack_server):
    ports = MidiPorts("jack", client_name="kantortest")
    live = LiveMidiService(LiveHarmonizer.load(settings=LiveSettings(seed=1)), ports)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def daw(service):
    client = JackMidiClient()
    client.connect_to(service.ports.names.input, service.ports.names.output)
    yield client
    client.close()


def voices_started(messages):
    return {m[0] & 0x0F: m[1] for m in messages if m[0] & 0xF0 == 0x90 and m[2] > 0}


def test_ports_are_visible_to_jack(service):
    sources, destinations = list_ports("jack")
    assert any("kantortest-out:out" in p for p in sources)
    assert any("kantortest:in" in p for p in destinations)


def test_every_melody_note_is_answered_and_released(daw):
    for pitch in (67, 67, 66, 64, 62, 67, 69, 71):
        before = len(daw.received)
        daw.send([0x90, pitch, 96])
        assert daw.wait_for(lambda c, b=before: len(voices_started(c.messages_since(b))) == 4)
        voices = voices_started(daw.messages_since(before))
        assert voices[0] == pitch
        for channel in (1, 2, 3):
            low, high = TEXTBOOK_RANGES[channel]
            assert low <= voices[channel] <= high and voices[channel] <= pitch
        daw.send([0x80, pitch, 0])
        assert daw.wait_for(lambda c: not c.sounding), f"stuck: {daw.sounding}"


def test_the_worker_does_what_falls_due_with_no_message_to_wake_it(daw, service):
    """A release that no note follows within the legato gap becomes a pause: the worker
    wakes for it on its own (LiveHarmonizer.due_s) and the guesses are made again."""
    harmonizer = service.harmonizer
    daw.send([0x90, 67, 96])
    assert daw.wait_for(lambda c: len(c.sounding) == 4)
    daw.send([0x80, 67, 0])
    assert daw.wait_for(lambda c: not c.sounding)
    deadline = time.monotonic() + 2.0
    while harmonizer.pause_since_s is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert harmonizer.pause_since_s is not None and harmonizer.due_s is None


def test_the_worker_decides_the_16ths_under_a_held_note(daw, service):
    """With move_under (CC 29) and a tempo (CC 28), the worker wakes at each 16th while
    the melody holds, with no message to wake it, and the voices end after the release."""
    harmonizer = service.harmonizer
    daw.send([0xB0, 28, 51])  # 120.5 bpm: a 16th is 0.125 s
    daw.send([0xB0, 29, 127])
    daw.send([0x90, 67, 96])
    assert daw.wait_for(lambda c: len(c.sounding) == 4)
    deadline = time.monotonic() + 2.0
    while harmonizer.timed_steps < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    timed = harmonizer.stats.hits["timed"] + harmonizer.stats.misses["timed"]
    assert harmonizer.timed_steps >= 3 and timed >= 3
    daw.send([0x80, 67, 0])
    assert daw.wait_for(lambda c: not c.sounding), f"stuck: {daw.sounding}"


def test_panic_cc_releases_everything(daw):
    daw.send([0x90, 72, 100])
    assert daw.wait_for(lambda c: len(c.sounding) == 4)
    daw.send([0xB0, 123, 0])
    assert daw.wait_for(lambda c: not c.sounding)


def test_stopping_the_service_releases_held_notes(daw, service):
    daw.send([0x90, 69, 100])
    assert daw.wait_for(lambda c: len(c.sounding) == 4)
    service.stop()
    assert daw.wait_for(lambda c: not c.sounding)


def test_flood_is_survived_without_stuck_notes(daw, service):
    notes = 2000
    for i in range(notes):  # 2000 notes in about a second, in bursts of 50
        pitch = 60 + i % 24
        daw.send([0x90, pitch, 100])
        daw.send([0x80, pitch, 0])
        if i % 50 == 49:
            time.sleep(0.025)
    assert daw.wait_for(lambda c: service.queue.empty() and not c.sounding, timeout=60), \
        f"stuck: {daw.sounding}"
    status = service.status()
    # Every melody note that arrived was either harmonised or counted as dropped.
    assert service.note_ons_arrived >= notes
    assert status["notes_in"] + status["dropped"].get("queue full", 0) == \
        service.note_ons_arrived
    daw.send([0x90, 70, 100])  # and the service still answers
    assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=5)
    daw.send([0x80, 70, 0])
    assert daw.wait_for(lambda c: not c.sounding)


def run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "kantor.bridges.cli", "live", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kantor_live_command_stops_cleanly_on_sigterm(jack_server):
    process = run_cli("--api", "jack", "--name", "kantorcli", "--status-interval", "0.2")
    try:
        line = process.stdout.readline()
        assert "ready" in line and "kantorcli:in" in line
        # as root (CI) the worker gets real-time scheduling, as in `kantor serve`
        expected = "SCHED_FIFO 10" if os.geteuid() == 0 else "scheduling"
        assert expected in line
        if len(os.sched_getaffinity(0)) > 1:  # and keeps to one core, said so
            assert f"CPU {max(os.sched_getaffinity(0))}" in line
        daw = JackMidiClient()
        daw.connect_to("kantorcli:in", "kantorcli-out:out")
        daw.send([0x90, 67, 100])
        assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, process.stderr.read()[-3000:]
        assert daw.wait_for(lambda c: not c.sounding), f"stuck: {daw.sounding}"
        assert "0 notes left sounding" in process.stdout.read()
        daw.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_kantor_live_lists_ports_and_explains_bad_ports(jack_server):
    result = subprocess.run([sys.executable, "-m", "kantor.bridges.cli", "live", "--api", "jack",
                             "--in-port", "no-such-port"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "no MIDI input port matches 'no-such-port'" in result.stderr
    time.sleep(0.1)
