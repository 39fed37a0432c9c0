"""Answers computed ahead (speculation): the same music as computing on arrival, most notes
answered from the table, and never more than one network call between two messages."""

import pytest

from kantor.engine.chorale.live import CLOCKS_PER_STEP, LiveHarmonizer, LiveSettings

NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0
QUARTER_S = 0.5
# A hymn line (pitch, quarter notes, fermata): quarters, a half, eighths and two cadences.
HYMN = [(67, 1, False), (67, 1, False), (69, 1, False), (71, 1, False), (72, 2, True),
        (71, 1, False), (69, 0.5, False), (67, 0.5, False), (69, 1, False), (71, 1, False),
        (67, 2, True), (74, 1, False), (72, 1, False), (71, 1, False), (69, 1, False),
        (67, 2, True)]


@pytest.fixture(scope="module")
def live_models():
    return LiveHarmonizer.load().models


def harmonizer(models, speculation: int, **settings) -> LiveHarmonizer:
    """Voices that change only with the melody (test_live_motion.py answers ahead with
    move_under, which needs a player that calls on_time at each 16th)."""
    settings = {"move_under": False, **settings}
    h = LiveHarmonizer(models, LiveSettings(speculation=speculation, **settings))
    h.prepare()
    return h


def send(h: LiveHarmonizer, message: list[int], t: float, idle: bool) -> list[list[int]]:
    """One message; with ``idle`` the harmoniser then has all the time it wants (as the
    worker gives it between notes) to answer ahead."""
    out = h.process(message, t)
    while idle and h.speculating:
        h.speculate()
    return out


def play_events(h: LiveHarmonizer, idle: bool, melody=HYMN, repeats: int = 2) -> list:
    """The melody in event mode, legato (each release just before the next note), the
    pedal down over fermata notes; every answer with its message."""
    answers = []
    t = 0.0
    for _ in range(repeats):
        for pitch, quarters, fermata in melody:
            if fermata:
                answers.append(send(h, [CC, 64, 127], t - 0.001, idle))
            answers.append(send(h, [NOTE_ON, pitch, 90], t, idle))
            t += quarters * QUARTER_S
            answers.append(send(h, [NOTE_OFF, pitch, 0], t - 0.002, idle))
            if fermata:
                answers.append(send(h, [CC, 64, 0], t - 0.0015, idle))
        t += 2.0  # a breath between verses
    return answers


def play_clock(h: LiveHarmonizer, idle: bool, early: int) -> list:
    """The melody under MIDI clock, sent ``early`` steps ahead."""
    h.apply_parameter("lookahead", early)
    answers = [send(h, [0xFA], 0.0, idle)]
    t, tick = 0.0, QUARTER_S / 4 / CLOCKS_PER_STEP
    for pitch, quarters, _ in HYMN:
        answers.append(send(h, [NOTE_ON, pitch, 90], t, idle))
        for _ in range(round(quarters * 4) * CLOCKS_PER_STEP):
            answers.append(send(h, [0xF8], t, idle))
            t += tick
        answers.append(send(h, [NOTE_OFF, pitch, 0], t, idle))
    for _ in range((early + 2) * CLOCKS_PER_STEP):
        answers.append(send(h, [0xF8], t, idle))
        t += tick
    answers.append(send(h, [0xFC], t, idle))
    return answers


@pytest.mark.parametrize("temperature", [0.3, 0.0])
def test_event_mode_answers_are_the_same_with_and_without_speculation(live_models,
                                                                     temperature):
    plain = harmonizer(live_models, 0, temperature=temperature, seed=5)
    ahead = harmonizer(live_models, 96, temperature=temperature, seed=5)
    assert play_events(ahead, idle=True) == play_events(plain, idle=False)
    hits, misses = ahead.stats.hits["event"], ahead.stats.misses["event"]
    assert plain.stats.hits["event"] == 0
    # Only the first note of each verse has nothing to go by.
    assert misses <= 4 and hits >= 2 * len(HYMN) - 4, (hits, misses)


@pytest.mark.parametrize("early", [0, 2])
def test_clock_mode_answers_are_the_same_with_and_without_speculation(live_models, early):
    plain = harmonizer(live_models, 0, seed=2)
    ahead = harmonizer(live_models, 96, seed=2)
    assert play_clock(ahead, idle=True, early=early) == play_clock(plain, idle=False,
                                                                   early=early)
    assert ahead.stats.hits["clock"] > ahead.stats.misses["clock"]


def test_an_unexpected_note_is_computed_on_arrival_with_the_same_answer(live_models):
    """Leaps no prior expects (a tritone plus an octave down, folded into the soprano's
    range as a tritone, and the tritone back) miss the table and are answered exactly as
    without speculation."""
    melody = [*HYMN[:4], (71 - 18, 1, False), *HYMN[5:8]]
    plain, ahead = harmonizer(live_models, 0), harmonizer(live_models, 96)
    assert play_events(ahead, True, melody, 1) == play_events(plain, False, melody, 1)
    assert ahead.stats.misses["event"] == 3  # the first note and the two tritones


def test_each_step_of_speculation_makes_at_most_one_network_call(live_models):
    h = harmonizer(live_models, 96)
    calls = []
    for model in h.models.values():
        run = model.run
        model.run = lambda inputs, run=run: calls.append(len(inputs["tokens"])) or run(inputs)
    try:
        h.process([NOTE_ON, 67, 90], 0.0)
        h.process([NOTE_OFF, 67, 0], 0.5)
        h.process([NOTE_ON, 69, 90], 1.0)
        h.process([NOTE_OFF, 69, 0], 1.5)
        calls.clear()
        steps = 0
        while h.speculating:
            before = len(calls)
            h.speculate()
            assert len(calls) - before <= 1
            steps += 1
        assert calls and max(calls) <= 4 and steps >= len(calls)
        assert h.stats.speculated >= 32
    finally:
        for model in h.models.values():
            del model.run


def test_status_reports_hits_and_misses(live_models):
    h = harmonizer(live_models, 96)
    play_events(h, idle=True, repeats=1)
    report = h.stats.speculation()
    assert report["event"]["hits"] + report["event"]["misses"] == len(HYMN)
    assert report["event"]["hit_rate"] == report["event"]["hits"] / len(HYMN)
    assert report["clock"]["hit_rate"] is None
    assert h.check_parameter("speculation", 0) == 0
    with pytest.raises(ValueError, match="speculation"):
        h.check_parameter("speculation", 1000)


def test_the_first_note_is_answered_ahead_too(live_models):
    """Before the first note everything but its pitch is known: any soprano pitch hits."""
    for pitch in (60, 67, 79):
        plain, ahead = harmonizer(live_models, 0), harmonizer(live_models, 96)
        while ahead.speculating:
            ahead.speculate()
        assert ahead.process([NOTE_ON, pitch, 90], 0.0) == plain.process([NOTE_ON, pitch, 90],
                                                                         0.0)
        assert ahead.stats.hits["event"] == 1


def test_work_ahead_is_bounded_however_the_state_changes(live_models):
    """Messages that change the state between two notes each start the work ahead again;
    the answers kept and the CPU spent per step stay bounded."""
    from kantor.engine.chorale.live import TABLE_LIMIT

    h = harmonizer(live_models, 256)
    h.process([NOTE_ON, 67, 90], 0.0)
    h.process([NOTE_OFF, 67, 0], 30.0)  # a slow player: the time allowance is at its cap
    for value in range(0, 128, 4):  # 32 key signatures, each a new state
        send(h, [CC, 25, value], 30.0, idle=True)
    assert len(h._table) <= TABLE_LIMIT
    assert not h.speculating


def test_work_given_up_on_the_answer_path_is_freed_off_it_and_bounded(live_models):
    """A note-on sets the work ahead and the table aside instead of freeing them while the
    player waits; the next step of work ahead frees them."""
    h = harmonizer(live_models, 96)
    h.process([NOTE_ON, 67, 90], 0.0)
    h.process([NOTE_OFF, 67, 0], 0.25)
    for _ in range(20):  # work ahead until the first answers are in, then suspended
        h.speculate()
        if h._table:
            break
    assert h._work is not None and h._table
    h.process([NOTE_ON, 69, 90], 0.5)
    assert len(h._retired) == 2  # the suspended work and the old table, not yet freed
    h.speculate()
    assert len(h._retired) == 0


def test_a_first_gap_shorter_than_any_note_value_is_answered_ahead(live_models):
    """The first gap sets the tempo; under 0.15 s it counts fewer steps than a quarter
    note, which no note value of the prior gives: every step count is guessed too."""
    h = harmonizer(live_models, 96)
    send(h, [NOTE_ON, 67, 90], 0.0, idle=True)
    send(h, [NOTE_OFF, 67, 0], 0.015, idle=True)
    send(h, [NOTE_ON, 69, 90], 0.03, idle=True)
    assert h.stats.hits["event"] == 1 and h.stats.misses["event"] == 1  # the first note


def test_the_status_says_what_missed(live_models):
    melody = [*HYMN[:4], (71 - 18, 1, False), *HYMN[5:8]]
    h = harmonizer(live_models, 96)
    play_events(h, True, melody, 1)
    misses = h.stats.speculation()["recent_misses"]
    assert [(m["pitch"], m["interval"]) for m in misses] == [(67, None), (65, -6), (71, 6)]
    assert all(m["mode"] == "event" and not m["ahead_unfinished"] for m in misses[1:])
    assert misses[1]["table"] > 0  # guesses were ready, none of them this tritone


def test_the_pedal_guess_follows_the_player(live_models):
    """A player who never presses the pedal soon stops costing the table pedal-down
    guesses; one who marks fermatas often gets them guessed more."""
    plain, pedalling = harmonizer(live_models, 96), harmonizer(live_models, 96)
    assert plain._pedal_down_share() == pytest.approx(0.137)
    for i in range(16):
        send(plain, [NOTE_ON, 67 + i % 3, 90], i * 0.5, idle=False)
        send(plain, [NOTE_OFF, 67 + i % 3, 0], i * 0.5 + 0.49, idle=False)
        if i % 2:
            send(pedalling, [CC, 64, 127], i * 0.5 - 0.01, idle=False)
        send(pedalling, [NOTE_ON, 67 + i % 3, 90], i * 0.5, idle=False)
        send(pedalling, [NOTE_OFF, 67 + i % 3, 0], i * 0.5 + 0.49, idle=False)
        if i % 2:
            send(pedalling, [CC, 64, 0], i * 0.5 + 0.495, idle=False)
    assert plain._pedal_down_share() < 0.02
    assert pedalling._pedal_down_share() > 0.4


def test_a_note_after_a_pause_is_answered_ahead(live_models):
    """Once a release is LEGATO_GAP_S old with no note after it, the guesses are made
    again for a note after a pause (the ones made at the release went mostly to a legato
    note): phrases that begin on another note after a breath are still answered from the
    table, and the music is the one computed on arrival."""
    from kantor.engine.chorale.live import LEGATO_GAP_S

    line = [67, 69, 71, 72, 71, 69, 67, 66, 67, 64, 62, 60, 62, 64, 65, 67]

    def phrases(h, idle):
        answers, firsts, t = [], 0, 0.0
        for phrase in range(8):
            start = (phrase * 5) % len(line)  # each phrase starts elsewhere in the line
            for i, pitch in enumerate(line[start:] + line[:start]):
                misses = h.stats.misses["event"]
                answers.append(send(h, [NOTE_ON, pitch, 90], t, idle))
                if i == 0 and phrase:
                    firsts += h.stats.misses["event"] - misses
                t += 0.3
                answers.append(send(h, [NOTE_OFF, pitch, 0], t - 0.002, idle))
            t += 1.5  # a breath: the worker calls on_time when the gap has passed
            assert h.due_s == pytest.approx(t - 1.5 - 0.002 + LEGATO_GAP_S)
            answers.append(h.on_time(h.due_s))
            while idle and h.speculating:
                h.speculate()
        return answers, firsts

    ahead, plain = harmonizer(live_models, 96), harmonizer(live_models, 0)
    (answers, missed), (computed, _) = phrases(ahead, True), phrases(plain, False)
    assert answers == computed
    assert missed <= 2, f"{missed} of 7 phrase starts missed the table"
    assert ahead.due_s is None  # nothing more is due


def test_process_does_what_fell_due_when_on_time_was_not_called(live_models):
    from kantor.engine.chorale.live import LEGATO_GAP_S

    h = harmonizer(live_models, 96)
    send(h, [NOTE_ON, 67, 90], 0.0, idle=True)
    send(h, [NOTE_OFF, 67, 0], 0.5, idle=True)
    assert h.due_s == pytest.approx(0.5 + LEGATO_GAP_S) and h.pause_since_s is None
    send(h, [CC, 1, 0], 0.5 + LEGATO_GAP_S, idle=True)  # any message, after the gap
    assert h.due_s is None and h.pause_since_s == 0.5
    send(h, [NOTE_ON, 69, 90], 2.0, idle=True)
    assert h.pause_since_s is None and h.due_s is None
