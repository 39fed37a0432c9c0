"""Event mode's lower voices moving under a held melody note (``move_under``): a decision
at each 16th on the tempo, notes that come late, the chord kept through a legato gap,
fermatas, and the same music with and without answers computed ahead."""

import pytest

from kantor.engine.chorale.encoding import FIRST_PITCH_TOKEN, HOLD
from kantor.engine.chorale.live import (
    LEGATO_GAP_S,
    TIMED_STEPS_MAX,
    LiveHarmonizer,
    LiveSettings,
)
from tests.test_live_logic import Listener

NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0
SIXTEENTH_S = 0.125  # at the tempo these tests set, 120 bpm


@pytest.fixture(scope="module")
def live_models():
    return LiveHarmonizer.load().models


def moving(models, speculation: int = 0, **settings) -> LiveHarmonizer:
    settings = {"move_under": True, "tempo": 120.0, **settings}
    h = LiveHarmonizer(models, LiveSettings(speculation=speculation, **settings))
    h.prepare()
    return h


class Player:
    """Sends messages at given times and, in between, does what falls due at its time (as
    the service's worker does), answering ahead while idle if asked to; keeps every
    answer and what sounds per (channel, pitch)."""

    def __init__(self, h: LiveHarmonizer, idle: bool = False) -> None:
        self.h, self.idle, self.now = h, idle, 0.0
        self.answers: list[tuple[float, list[list[int]]]] = []
        self.ear = Listener()  # fails on a note started twice without a release

    @property
    def on(self) -> set[tuple[int, int]]:
        """(channel, pitch) sounding now."""
        return self.ear.on

    def _take(self, t: float, messages: list[list[int]]) -> None:
        self.answers.append((t, messages))
        self.ear.feed(messages)

    def wait_until(self, t: float) -> None:
        while self.idle and self.h.speculating:
            self.h.speculate()
        while (due := self.h.due_s) is not None and due < t:
            self._take(due, self.h.on_time(due))
            while self.idle and self.h.speculating:
                self.h.speculate()
        self.now = t

    def send(self, message: list[int], t: float) -> list[list[int]]:
        self.wait_until(t)
        out = self.h.process(message, t)
        self._take(t, out)
        return out


def timed_decisions(h: LiveHarmonizer) -> int:
    return h.stats.hits["timed"] + h.stats.misses["timed"]


def test_the_lower_voices_are_decided_each_16th_under_a_held_note(live_models):
    h = moving(live_models)
    player = Player(h)
    player.send([NOTE_ON, 72, 90], 0.0)
    before = len(player.answers)
    player.send([NOTE_OFF, 72, 0], 8 * SIXTEENTH_S - 0.002)  # a half note
    timed = player.answers[before:-1]
    assert timed_decisions(h) == 7 == len(timed) and h.timed_steps == 7
    for k, (t, messages) in enumerate(timed, start=1):
        # on its 16th, a little late, never as late as half a 16th
        assert k * SIXTEENTH_S < t < (k + 0.5) * SIXTEENTH_S
        assert all(status & 0x0F in (1, 2, 3) for status, _, _ in messages)
        assert all(pitch <= 72 for status, pitch, v in messages if status & 0xF0 == NOTE_ON)
    assert h.grid[0, h.past - 6: h.past + 1].tolist() == [HOLD] * 7  # the melody holds
    player.send([NOTE_ON, 71, 90], 8 * SIXTEENTH_S)
    assert h.step == 8 and h.timed_steps == 0  # the next note on its own 16th


def test_without_move_under_the_voices_change_only_with_the_melody(live_models):
    h = LiveHarmonizer(live_models, LiveSettings(tempo=120.0, move_under=False))
    h.prepare()
    h.process([NOTE_ON, 72, 90], 0.0)
    assert h.due_s is None
    h.apply_parameter("move_under", True)  # CC 29, HTTP, OSC and the settings file alike
    assert h.due_s == pytest.approx(SIXTEENTH_S, abs=0.03)


def test_no_motion_on_a_followed_tempo(live_models):
    """Followed (tempo 0), the tempo miscounts a tenth of the gaps: the voices change with
    the melody only, and end with it; setting the tempo starts the motion."""
    h = moving(live_models, tempo=0.0)
    player = Player(h)
    t = 0.0
    for pitch in (67, 69, 71, 72, 74):
        player.send([NOTE_ON, pitch, 90], t)
        assert h.due_s is None and not h.moving_under
        t += 0.5
        off = player.send([NOTE_OFF, pitch, 0], t - 0.002)
        assert len(off) == 4  # the chord ends with the melody note
    player.send([NOTE_ON, 76, 90], t)
    h.apply_parameter("tempo", 120.0)  # CC 28
    assert h.moving_under and h.due_s is not None
    player.wait_until(t + 0.49)
    assert timed_decisions(h) == 3


def test_a_note_later_than_its_timed_step_replaces_that_step(live_models):
    """A 16th after a note, where the next melody note is unlikely, the step is decided a
    little after its time; a note that still belongs to it is decided on it again (the
    voices struck there are released first), not a 16th later."""
    h = moving(live_models)
    player = Player(h)
    player.send([NOTE_ON, 72, 90], 0.0)
    player.wait_until(SIXTEENTH_S + 0.03)
    assert h.timed_steps == 1 and h.step == 1
    player.send([NOTE_OFF, 72, 0], SIXTEENTH_S + 0.035)
    player.send([NOTE_ON, 71, 90], SIXTEENTH_S + 0.04)  # counts as one 16th
    assert h.step == 1 and h.timed_steps == 0
    assert h.grid[0, h.past] >= FIRST_PITCH_TOKEN  # the new note, on that step
    player.send([NOTE_OFF, 71, 0], 0.5)
    player.wait_until(2.0)
    assert player.on == set()


def test_a_step_where_a_note_is_likely_waits_for_a_late_one(live_models):
    """On the beat after a quarter note the next note is likelier than not: the timed
    step waits nearly half a 16th, and a note 40 ms late is answered as on its beat."""
    h = moving(live_models)
    player = Player(h)
    player.send([NOTE_ON, 72, 90], 0.0)
    player.send([NOTE_OFF, 72, 0], 4 * SIXTEENTH_S + 0.038)
    player.send([NOTE_ON, 71, 90], 4 * SIXTEENTH_S + 0.04)
    assert h.step == 4 and timed_decisions(h) == 3


def test_the_chord_sounds_through_a_legato_gap_and_ends_after_it(live_models):
    h = moving(live_models)
    player = Player(h)
    player.send([NOTE_ON, 72, 90], 0.0)
    player.wait_until(0.49)
    off = player.send([NOTE_OFF, 72, 0], 0.498)
    assert off == [[0x80, 72, 0]]  # the melody's echo ends; the voices sound on
    assert h.due_s == pytest.approx(0.498 + LEGATO_GAP_S)
    on = player.send([NOTE_ON, 71, 90], 0.5)
    started = {status & 0x0F for status, _, v in on if status & 0xF0 == NOTE_ON and v}
    held = {v for v in (1, 2, 3) if h.grid[v, h.past] == HOLD}
    assert started == {0, 1, 2, 3} - held  # a held voice is not struck again
    player.send([NOTE_OFF, 71, 0], 1.0)
    assert len(player.on) == 3
    player.wait_until(1.0 + LEGATO_GAP_S + 0.001)  # a pause: the voices end
    assert player.on == set() and h.due_s is None


def test_a_fermata_chord_holds(live_models):
    h = moving(live_models)
    player = Player(h)
    player.send([CC, 64, 127], 0.0)
    player.send([NOTE_ON, 67, 90], 0.001)
    player.wait_until(2.0)
    assert timed_decisions(h) == 0 and h.due_s is None


def test_timed_work_is_bounded_however_long_a_note_is_held(live_models):
    h = moving(live_models)
    player = Player(h)
    player.send([NOTE_ON, 67, 90], 0.0)
    player.wait_until(30.0)
    assert timed_decisions(h) == TIMED_STEPS_MAX and h.due_s is None
    player.send([NOTE_ON, 69, 90], 30.0)  # over the held one
    assert h.step == 2 * 4  # the longest gap counted is two quarter notes
    # a worker that comes late decides once, for the latest 16th due
    late = moving(live_models)
    late.process([NOTE_ON, 67, 90], 0.0)
    out = late.on_time(0.55)
    assert timed_decisions(late) == 1 and late.timed_steps == 4 and late.step == 4
    assert all(status & 0x0F in (1, 2, 3) for status, _, _ in out)


HYMN = [(67, 1, False), (67, 1, False), (69, 1, False), (71, 1, False), (72, 2, True),
        (71, 1, False), (69, 0.5, False), (67, 0.5, False), (69, 1, False), (71, 1, False),
        (67, 2, True), (74, 1, False), (72, 2, False), (71, 1.5, False), (69, 0.5, False),
        (67, 2, True)]


def play_hymn(h: LiveHarmonizer, idle: bool) -> list:
    player = Player(h, idle)
    t = 0.0
    for pitch, quarters, fermata in HYMN:
        if fermata:
            player.send([CC, 64, 127], t - 0.001)
        player.send([NOTE_ON, pitch, 90], t)
        t += quarters * 4 * SIXTEENTH_S
        player.send([NOTE_OFF, pitch, 0], t - 0.002)
        if fermata:
            player.send([CC, 64, 0], t - 0.0015)
    player.wait_until(t + 1.0)
    assert player.on == set()
    return player.answers


def test_the_music_is_the_same_with_and_without_answers_ahead(live_models):
    plain, ahead = moving(live_models, 0, seed=3), moving(live_models, 96, seed=3)
    answers = play_hymn(ahead, idle=True)
    assert answers == play_hymn(plain, idle=False)
    assert timed_decisions(ahead) > 20
    # the inner voices moved under held notes (struck notes between the melody's own)
    melody_times = {t for t, messages in answers
                    if any(status == NOTE_ON for status, _, _ in messages)}  # channel 1
    moves = sum(1 for t, messages in answers if t not in melody_times
                for status, _, v in messages if status & 0xF0 == NOTE_ON and v)
    assert moves >= 3, f"{moves} notes struck under held melody notes"
    # every timed 16th was answered ahead; most melody notes too
    assert ahead.stats.misses["timed"] == 0
    assert ahead.stats.hits["event"] >= len(HYMN) - 3, ahead.stats.speculation()
