"""The live processor with in-memory MIDI: timing modes, robustness, no stuck notes."""

import numpy as np
import pytest

from kantor.engine.chorale.encoding import TEXTBOOK_RANGES
from kantor.engine.chorale.live import (
    CLOCKS_PER_STEP,
    LEGATO_GAP_S,
    LiveHarmonizer,
    LiveSettings,
)

NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0


@pytest.fixture(scope="module")
def live_models():
    return LiveHarmonizer.load().models


@pytest.fixture
def make(live_models):
    def build(**settings) -> LiveHarmonizer:
        harmonizer = LiveHarmonizer(live_models, LiveSettings(**settings))
        harmonizer.prepare()
        return harmonizer
    return build


class Listener:
    """Tracks what a synth would be sounding, per (channel, pitch)."""

    def __init__(self):
        self.on: set[tuple[int, int]] = set()
        self.log: list[list[int]] = []

    def feed(self, messages):
        for status, pitch, velocity in messages:
            self.log.append([status, pitch, velocity])
            key = (status & 0x0F, pitch)
            if status & 0xF0 == NOTE_ON and velocity > 0:
                assert key not in self.on, f"note {key} started twice without a release"
                self.on.add(key)
            else:
                self.on.discard(key)


def play(harmonizer, listener, message, t):
    listener.feed(harmonizer.process(message, t))


def gap_passes(harmonizer, listener, released_at):
    """The legato gap after a release passes with no note: the voices kept through it
    end (the worker calls on_time then)."""
    listener.feed(harmonizer.on_time(released_at + LEGATO_GAP_S))


def test_each_melody_note_gets_three_voices_below_it(make):
    h, ear = make(), Listener()
    t = 0.0
    for pitch in (67, 72, 71, 69, 67, 66, 67):
        before = len(ear.log)
        play(h, ear, [NOTE_ON, pitch, 90], t)
        answer = ear.log[before:]
        starts = [(s & 0x0F, p) for s, p, v in answer if s & 0xF0 == NOTE_ON]
        voices = {c: p for c, p in starts}
        assert voices[0] == pitch  # thru on the soprano channel
        assert sorted(voices) == [0, 1, 2, 3]
        for channel, p in voices.items():
            if channel:
                low, high = TEXTBOOK_RANGES[channel]
                assert low <= p <= high and p <= pitch
        t += 0.4
        play(h, ear, [NOTE_OFF, pitch, 0], t)
        assert (0, pitch) not in ear.on  # the echo ends with the melody note ...
        gap_passes(h, ear, t)
        assert ear.on == set()  # ... and the chord once no legato note follows
        t += 0.1


def test_velocity_zero_is_a_note_off_and_stray_offs_are_ignored(make):
    h, ear = make(), Listener()
    play(h, ear, [NOTE_OFF, 60, 0], 0.0)  # never started
    assert ear.log == []
    play(h, ear, [NOTE_ON, 67, 80], 0.1)
    assert len(ear.on) == 4
    play(h, ear, [NOTE_ON, 67, 0], 0.5)
    gap_passes(h, ear, 0.5)
    assert ear.on == set()


def test_chord_keeps_its_top_note(make):
    h, ear = make(), Listener()
    play(h, ear, [NOTE_ON, 60, 80], 0.0)
    play(h, ear, [NOTE_ON, 67, 80], 0.005)  # higher, same chord: becomes the melody
    play(h, ear, [NOTE_ON, 64, 80], 0.010)  # lower: dropped
    assert (0, 67) in ear.on and (0, 60) not in ear.on and (0, 64) not in ear.on
    assert h.stats.dropped["chord note below the melody"] == 1
    play(h, ear, [NOTE_OFF, 64, 0], 0.3)
    play(h, ear, [NOTE_OFF, 60, 0], 0.3)
    assert len(ear.on) == 4  # releasing the chord's other notes changes nothing
    play(h, ear, [NOTE_OFF, 67, 0], 0.3)
    gap_passes(h, ear, 0.3)
    assert ear.on == set()


@pytest.mark.parametrize("message, reason", [
    ([0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], "sysex ignored"),
    ([60, 100], "malformed message"),  # running status without its status byte
    ([NOTE_ON, 200, 5], "malformed message"),  # data byte out of range
    ([], "empty message"),
    ([NOTE_ON, 60], "malformed message"),  # truncated
])
def test_bad_messages_are_counted_not_fatal(make, message, reason):
    h, ear = make(), Listener()
    play(h, ear, message, 0.0)
    assert h.stats.dropped[reason] == 1
    play(h, ear, [NOTE_ON, 67, 80], 0.1)  # still works afterwards
    assert len(ear.on) == 4


def test_all_notes_off_and_release_all(make):
    h, ear = make(), Listener()
    play(h, ear, [NOTE_ON, 67, 80], 0.0)
    play(h, ear, [CC, 123, 0], 0.1)
    assert ear.on == set()
    play(h, ear, [NOTE_ON, 69, 80], 0.2)
    ear.feed(h.release_all())
    assert ear.on == set() and h.sounding_notes == []


def test_cc_sets_parameters_and_pedal_marks_fermatas(make):
    h, ear = make(), Listener()
    play(h, ear, [CC, 20, 0], 0.0)
    assert h.settings.temperature == 0
    play(h, ear, [CC, 23, 0], 0.0)
    assert h.settings.thru is False
    play(h, ear, [CC, 64, 127], 0.0)
    play(h, ear, [NOTE_ON, 67, 80], 0.1)
    assert h.meta[h.past, 2] == 1
    assert all(s & 0x0F != 0 for s, _, _ in ear.log)  # no thru


def test_the_pedal_holds_as_far_as_the_networks_look_ahead(make):
    """A fermata reads as lasting from its note on, whatever the step size: columns ahead
    that entered the window with the pedal up are marked too (they once read as a
    fermata one 16th long after a short step), and none once it is lifted."""
    h, ear = make(tempo=120.0), Listener()
    play(h, ear, [NOTE_ON, 67, 80], 0.0)
    play(h, ear, [NOTE_OFF, 67, 0], 0.123)
    play(h, ear, [CC, 64, 127], 0.124)
    play(h, ear, [NOTE_ON, 69, 80], 0.125)  # a 16th later: one step
    assert h.step == 1 and h.meta[h.past:, 2].tolist() == [1] * (h.window - h.past)
    assert h.meta[h.past - 1, 2] == 0  # the step before the cadence stays as it was
    play(h, ear, [NOTE_OFF, 69, 0], 0.623)
    play(h, ear, [CC, 64, 0], 0.624)
    play(h, ear, [NOTE_ON, 71, 80], 0.625)
    assert h.meta[h.past:, 2].tolist() == [0] * (h.window - h.past)


def downbeats(h) -> list[int]:
    """Absolute steps the networks are told are downbeats, over the window they see."""
    return [h.step - h.past + c for c in range(h.window) if h.meta[c, 1]]


def test_the_player_places_the_bar_lines_with_the_metre_and_the_pickup(make):
    """Without clock the bar is counted from the first note: a 3/4 hymn with a one-beat
    pickup has its downbeats a beat after the first note, then every 12 16ths; set while
    playing (CC 30, CC 31 in 16ths), every step seen moves with them."""
    h, ear = make(tempo=120.0), Listener()
    assert h.past == 16 and h.window == 25
    play(h, ear, [CC, 30, 3], 0.0)  # three beats a bar
    play(h, ear, [CC, 31, 4], 0.0)  # a pickup of four 16ths
    assert (h.settings.beats_per_bar, h.settings.pickup) == (3, 1.0)
    play(h, ear, [NOTE_ON, 67, 80], 0.0)
    assert h.step == 0
    assert downbeats(h) == [-8, 4]  # steps -16 to 8 are in view
    assert h.meta[h.past, 0] == 0  # the pickup itself falls on a beat
    h.apply_parameter("pickup", 0.0)  # the player says it starts on a downbeat after all
    assert downbeats(h) == [-12, 0]
    h.apply_parameter("pickup", 0.5)  # an eighth-note pickup: off the beat
    assert h.meta[h.past, 0] == 2 and downbeats(h) == [-10, 2]
    # under a song position the DAW counts from a bar line: the pickup does not apply
    play(h, ear, [0xF2, 0, 0], 0.1)
    assert downbeats(h) == [-12, 0]


def clock(h, ear, steps, t):
    for _ in range(steps * CLOCKS_PER_STEP):
        play(h, ear, [0xF8], t)
    return t


def test_clock_mode_moves_voices_on_the_grid_and_stop_releases(make):
    h, ear = make(temperature=0.0), Listener()
    play(h, ear, [0xFA], 0.0)  # start
    play(h, ear, [0xF8], 0.0)
    play(h, ear, [NOTE_ON, 67, 80], 0.0)
    assert len(ear.on) == 4
    step_before = h.step
    clock(h, ear, 8, 0.0)
    assert h.step == step_before + 8
    assert h.meta[h.past, 0] == h.step % 4  # beat position from the clock
    play(h, ear, [0xFC], 0.0)  # stop
    assert ear.on == set()


def test_song_position_sets_the_bar(make):
    h, ear = make(), Listener()
    play(h, ear, [0xF2, 12, 0], 0.0)  # 16th number 12: beat 4 of bar 1
    play(h, ear, [0xFB], 0.0)
    assert h.step == 12 and h.meta[h.past, 1] == 0
    clock(h, ear, 4, 0.0)  # the four steps 12-15 (their first clocks at 12 come first)
    play(h, ear, [0xF8], 0.0)  # first clock of step 16: the downbeat
    assert h.step == 16 and h.meta[h.past, 1] == 1


def test_lookahead_delays_the_answer_by_the_early_steps(make):
    h, ear = make(lookahead=2, temperature=0.0), Listener()
    play(h, ear, [0xFA], 0.0)
    play(h, ear, [0xF8], 0.0)
    play(h, ear, [NOTE_ON, 67, 80], 0.0)  # meant for step 2
    assert ear.log == []
    clock(h, ear, 1, 0.0)
    assert ear.log == []  # step 1: still silence
    clock(h, ear, 1, 0.0)  # step 2 begins: the melody and its chord sound now
    assert (0, 67) in ear.on and len(ear.on) == 4
    play(h, ear, [NOTE_OFF, 67, 0], 0.0)  # released at step 4 ...
    assert len(ear.on) == 4
    clock(h, ear, 2, 0.0)
    assert ear.on == set()  # ... when step 4 is decided


def test_same_seed_same_answers(make):
    answers = []
    for _ in range(2):
        h, ear = make(seed=5), Listener()
        for i, pitch in enumerate((67, 69, 71, 72, 74)):
            play(h, ear, [NOTE_ON, pitch, 90], i * 0.5)
            play(h, ear, [NOTE_OFF, pitch, 0], i * 0.5 + 0.45)
        answers.append(ear.log)
    assert answers[0] == answers[1]


def test_reseeding_makes_a_take_independent_of_the_ones_before(make):
    def take(h):
        ear = Listener()
        for i, pitch in enumerate((67, 69, 71, 72, 74)):
            play(h, ear, [NOTE_ON, pitch, 90], 10.0 + i * 0.5)
            play(h, ear, [NOTE_OFF, pitch, 0], 10.0 + i * 0.5 + 0.45)
        ear.feed(h.release_all())
        h.reset()
        return ear.log

    fresh = take(make(seed=7))
    played = make(seed=1)
    take(played)  # a take before uses up draws ...
    played.reseed(7)
    assert take(played) == fresh  # ... which reseeding forgets


def test_flood_stays_bounded_and_releases_everything(make):
    h, ear = make(), Listener()
    rng = np.random.default_rng(0)
    t = 0.0
    held = set()
    for _ in range(3000):  # random mashing, a thousand events a second
        pitch = int(rng.integers(55, 85))
        if pitch in held and rng.random() < 0.5:
            play(h, ear, [NOTE_OFF, pitch, 0], t)
            held.discard(pitch)
        else:
            play(h, ear, [NOTE_ON, pitch, int(rng.integers(1, 128))], t)
            held.add(pitch)
        t += 0.001
    for pitch in held:
        play(h, ear, [NOTE_OFF, pitch, 0], t)
    gap_passes(h, ear, t)
    assert ear.on == set()


def test_event_mode_history_holds_the_previous_chord(make):
    from kantor.engine.chorale.encoding import FIRST_PITCH_TOKEN, HOLD

    h, ear = make(), Listener()
    t = 0.0
    for pitch in (67, 69, 71):  # legato quarters at 120 bpm: four 16ths apart
        play(h, ear, [NOTE_OFF, pitch - 2, 0], t)
        play(h, ear, [NOTE_ON, pitch, 90], t)
        t += 0.5
    # The chord before the current one: an onset four steps back, held until now.
    previous = h.grid[:, h.past - 4:h.past]
    assert (previous[:, 0] >= FIRST_PITCH_TOKEN).all()
    assert (previous[:, 1:] == HOLD).all()


def test_prepare_leaves_no_trace_and_loads_every_kernel(make):
    """prepare() plays one note to load the compiled rule kernels; afterwards the
    harmoniser is as if nothing was played (counters, sounding notes, random stream)."""
    h = make(seed=3)
    assert h.stats.notes_in == 0 and h.stats.notes_out == 0 and not h.sounding_notes
    assert h.step == -1
    fresh = np.random.default_rng(3)
    assert h._rng.random() == fresh.random()
    import subprocess
    import sys

    probe = ("from kantor.engine.chorale import live, rules\n"
             "h = live.LiveHarmonizer.load(); h.prepare()\n"
             "print(len(live._grid_pitches.signatures), "
             "len(rules._candidate_violations.signatures))")
    counts = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    assert counts == ["1", "1"]  # compiled (or loaded from cache) before the first note


def test_the_key_and_mode_reach_the_networks(make):
    from kantor.engine.chorale.encoding import META_FIELDS

    mode, tonic = META_FIELDS.index("mode"), META_FIELDS.index("tonic")
    h = make(key_sharps=2)
    play(h, Listener(), [NOTE_ON, 71, 90], 0.0)
    assert h.meta[h.past, mode] == 0 and h.meta[h.past, tonic] == 0  # D major
    h.process([CC, 26, 127], 0.1)  # minor: the relative minor, B
    play(h, Listener(), [NOTE_ON, 74, 90], 0.5)
    assert h.meta[h.past, mode] == 1 and h.meta[h.past, tonic] == 9
    modal = make(key_sharps=0, minor=True, tonic_degree=2)  # D Dorian
    play(modal, Listener(), [NOTE_ON, 62 + 12, 90], 0.0)
    assert modal.meta[modal.past, tonic] == 2
    assert h.check_parameter("minor", "on") is True


def _decided_steps(h, notes, quarter_s: float, legato_s: float = 0.002) -> list[int]:
    """Play ``notes`` (pitch, quarter notes) joined at ``quarter_s`` a quarter; the step
    each note was decided at."""
    steps, t = [], 0.0
    for pitch, quarters in notes:
        h.process([NOTE_ON, pitch, 90], t)
        steps.append(h.step)
        t += quarters * quarter_s
        h.process([NOTE_OFF, pitch, 0], t - legato_s)
    return steps


# Eighths first, then quarters, a half and eighths: the median of the latest gaps taken as
# a quarter counted these quarters as halves.
MIXED = [(67, 0.5), (69, 0.5), (71, 0.5), (72, 0.5), (74, 1), (72, 1), (71, 2), (69, 0.5),
         (67, 0.5), (69, 1), (71, 1), (72, 1), (71, 1), (69, 2)]
MIXED_STEPS = [0, 2, 4, 6, 8, 12, 16, 24, 26, 28, 32, 36, 40, 44]


def test_event_mode_counts_steps_in_the_tempo_the_player_sets(make):
    for bpm in (60.0, 144.0):
        h = make(tempo=bpm)
        assert _decided_steps(h, MIXED, 60.0 / bpm) == MIXED_STEPS
    h = make()
    h.apply_parameter("tempo", 90.0)  # CC 28, HTTP, OSC and flags set it the same way
    assert _decided_steps(h, MIXED, 60.0 / 90) == MIXED_STEPS


def test_event_mode_follows_a_steady_tempo_and_keeps_the_beat(make):
    """Not told the tempo: the first gaps are read as the likeliest note values of
    Bach's sopranos, and every note then lands on its own 16th of the beat."""
    # (Four eighths first would be read as quarters: equal gaps are likeliest quarters.)
    opening = [(67, 1), (69, 1), (71, 0.5), (72, 0.5)]
    for quarter_s in (0.4, 0.75):
        assert _decided_steps(make(), opening + MIXED, quarter_s) == [
            0, 4, 8, 10, *(12 + s for s in MIXED_STEPS)]


def test_event_mode_follows_a_player_who_slows_down(make):
    h = make()
    notes = [(67 + i % 5, 1) for i in range(24)]
    steps, t, quarter_s = [], 0.0, 0.5
    for pitch, _ in notes:
        h.process([NOTE_ON, pitch, 90], t)
        steps.append(h.step)
        t += quarter_s
        quarter_s *= 1.03  # 3% slower each note: half as fast after 24 notes
        h.process([NOTE_OFF, pitch, 0], t - 0.002)
    assert steps == [4 * i for i in range(24)]
    assert h.quarter_s == pytest.approx(0.5 * 1.03 ** 22, rel=0.1)


def test_the_likeliest_quarter_reads_gaps_as_bachs_note_values():
    from kantor.engine.chorale.live import _likeliest_quarter

    assert _likeliest_quarter([0.25, 0.25, 0.5, 0.5]) == 0.5  # eighths then quarters
    assert _likeliest_quarter([1.0, 0.5, 0.5, 0.5]) == 0.5  # a half first
    assert _likeliest_quarter([0.6]) == 0.6
    assert _likeliest_quarter([0.01, 0.01]) == 0.15  # within the tempi followed
