"""Score the live harmoniser on held-out chorales, through its MIDI interface.

Each test soprano is played into :class:`LiveHarmonizer` as MIDI messages, as a DAW would
send it: with MIDI clock (a melody sent ``lookahead`` steps early) or without (event mode,
notes at a steady tempo). What comes out is read back onto the 16th grid and measured
with the same voice-leading yardstick as the offline sampler. The live networks' NLL per
lookahead is measured with the same masking the networks were trained with.
"""

from __future__ import annotations

import collections

import numpy as np

from kantor.engine.chorale.contract import live_hidden_by_decision, live_inputs, log_softmax
from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    LIVE_DECISION_ORDER,
    REST_PITCH,
    STEPS_PER_QUARTER,
    VOICES,
    pad_for_windows,
    raw_to_tokens,
    sounding_pitches,
)
from kantor.engine.chorale.keys import key_of_setting
from kantor.engine.chorale.live import CLOCKS_PER_STEP, LiveHarmonizer
from kantor.engine.chorale.rules import rates, voice_leading_report
from kantor.export.chorale.corpus import Chorale
from kantor.export.chorale.style import melody_of

STEP_SECONDS = 0.125  # a 16th at 120 bpm, for event-mode timestamps
EVENT_TEMPO_BPM = 60.0 / (4 * STEP_SECONDS)


def live_nll(harmonizer: LiveHarmonizer, chorales: list[Chorale], lookahead: int) -> dict:
    """Per-voice NLL (nats/token) and accuracy of Bach's lower voices, teacher-forced."""
    past, window = harmonizer.past, harmonizer.window
    context = max(past, window - past - 1)
    nll = collections.Counter()
    correct = collections.Counter()
    count = 0
    for chorale in chorales:
        tokens = raw_to_tokens(chorale.raw, harmonizer.vocabularies)
        padded, padded_meta = pad_for_windows(tokens, chorale.meta, context)
        n = tokens.shape[1]
        idx = np.arange(n)[:, None] + (context - past) + np.arange(window)[None, :]
        windows = padded[:, idx].transpose(1, 0, 2)  # [n, 4, W]
        meta = padded_meta[idx]
        count += n
        hidden = live_hidden_by_decision(window, past, lookahead)
        for i, voice in enumerate(LIVE_DECISION_ORDER):
            inputs = live_inputs(windows, hidden[i])
            logits = harmonizer.models[voice].run(
                {"tokens": inputs, "meta": np.ascontiguousarray(
                    meta[..., harmonizer.meta_columns])})[0]
            logp = log_softmax(logits.astype(np.float64))
            target = tokens[voice]
            nll[VOICES[voice]] -= float(logp[np.arange(n), target].sum())
            correct[VOICES[voice]] += int((logits.argmax(1) == target).sum())
    return {VOICES[v]: {"nll_per_token": nll[VOICES[v]] / count,
                        "accuracy": correct[VOICES[v]] / count} for v in LIVE_DECISION_ORDER}


def _melody_events(soprano: np.ndarray, step: int, channel: int = 0) -> list[list[int]]:
    """MIDI for what the soprano does at ``step``: releases, then a new note."""
    pitch = int(soprano[step])
    if pitch == HOLD_PITCH:
        return []
    events = []
    previous = sounding_pitches(soprano[:step][None])[0, -1] if step > 0 else -1
    if previous >= 0:
        events.append([0x80 | channel, int(previous), 0])
    if pitch != REST_PITCH:
        events.append([0x90 | channel, pitch, 90])
    return events


class _GridRecorder:
    """Reads the harmoniser's MIDI output back onto the grid, one voice per channel."""

    def __init__(self, n_steps: int, channels: tuple[int, ...]) -> None:
        self.raw = np.full((4, n_steps), REST_PITCH, dtype=np.int16)
        self.voice_of = {c: v for v, c in enumerate(channels)}
        self.current: dict[int, int] = {}
        self.onset: dict[int, int] = {}

    def feed(self, messages: list[list[int]]) -> None:
        for status, pitch, velocity in messages:
            voice = self.voice_of.get(status & 0x0F)
            if voice is None:
                continue
            if status & 0xF0 == 0x90 and velocity > 0:
                self.current[voice] = pitch
                self.onset[voice] = pitch
            elif self.current.get(voice) == pitch:
                del self.current[voice]
                self.onset.pop(voice, None)

    def close_step(self, step: int) -> None:
        for v in range(4):
            if v in self.onset:
                self.raw[v, step] = self.onset.pop(v)
            elif v in self.current:
                self.raw[v, step] = HOLD_PITCH


def _pedal(harmonizer: LiveHarmonizer, fermata: np.ndarray, step: int, now: float
           ) -> list[list[int]]:
    """The sustain pedal (the fermata controller) pressed or lifted where ``step``'s
    fermata differs from the step before, as a player marks a cadence."""
    before = bool(fermata[step - 1]) if step > 0 else False
    if bool(fermata[step]) == before:
        return []
    return harmonizer.process([0xB0, harmonizer.settings.fermata_cc,
                               127 if fermata[step] else 0], now)


def _send(harmonizer: LiveHarmonizer, messages: list[list[int]], now: float
          ) -> list[list[int]]:
    out: list[list[int]] = []
    for message in messages:
        out += harmonizer.process(message, now)
    return out


def _tell_key(harmonizer: LiveHarmonizer, chorale: Chorale) -> None:
    """The key as a player sends it: the signature (CC 25) and the mode (CC 26)."""
    harmonizer.apply_parameter("key_sharps", int(chorale.key_sharps))
    harmonizer.apply_parameter("minor", key_of_setting(chorale.raw).minor)


def metre_of(chorale: Chorale) -> tuple[int, float]:
    """(quarter-note beats a bar, quarters from the melody's first note to its first bar
    line): what a player tells the harmoniser of the piece (CC 30, CC 31)."""
    melody = melody_of(chorale)
    bar = melody.steps_per_bar
    onsets = np.flatnonzero(chorale.raw[0] >= 0)
    first = int(onsets[0]) if onsets.size else 0  # the harmoniser counts from here
    pickup = (-melody.bar_offset_steps - first) % bar
    return bar // STEPS_PER_QUARTER, pickup / STEPS_PER_QUARTER


def _tell_metre(harmonizer: LiveHarmonizer, chorale: Chorale) -> None:
    """The metre and the pickup as a player sets them (CC 30 and 31)."""
    beats, pickup = metre_of(chorale)
    harmonizer.apply_parameter("beats_per_bar", beats)
    harmonizer.apply_parameter("pickup", pickup)


def play_clock_mode(harmonizer: LiveHarmonizer, chorale: Chorale, early: int) -> np.ndarray:
    """The harmoniser's answer to a soprano sent ``early`` steps ahead under MIDI clock.

    Chorale step s is harmoniser step ``p0 + early + s``; its melody is sent during
    harmoniser step ``p0 + s``. ``p0`` (a Song Position) puts the chorale's bar lines where
    the harmoniser counts them."""
    settings = harmonizer.settings
    settings.lookahead = early
    _tell_key(harmonizer, chorale)
    _tell_metre(harmonizer, chorale)
    harmonizer.reset()
    soprano = chorale.raw[0]
    n = soprano.shape[0]
    bar = settings.steps_per_bar
    first_downbeat = int(np.flatnonzero(chorale.meta[:, 1])[0]) if chorale.meta[:, 1].any() else 0
    p0 = (bar - first_downbeat - early) % bar
    recorder = _GridRecorder(n, settings.channels)
    now = 0.0
    tick_s = STEP_SECONDS / CLOCKS_PER_STEP
    recorder.feed(_send(harmonizer, [[0xF2, p0 & 0x7F, p0 >> 7], [0xFB]], now))
    fermata = chorale.meta[:, 2].astype(bool)
    for j in range(n + early):
        if 0 <= j - early < n:  # the pedal as the step it marks is decided
            recorder.feed(_pedal(harmonizer, fermata, j - early, now))
        recorder.feed(harmonizer.process([0xF8], now))  # the step's first clock
        if j < n:
            recorder.feed(_send(harmonizer, _melody_events(soprano, j), now))
        if j - early >= 0:
            recorder.close_step(j - early)
        for _ in range(CLOCKS_PER_STEP - 1):
            now += tick_s
            recorder.feed(harmonizer.process([0xF8], now))
        now += tick_s
    recorder.feed(harmonizer.process([0xFC], now))
    return recorder.raw


def play_event_mode(harmonizer: LiveHarmonizer, chorale: Chorale,
                    tell_tempo: bool = True) -> np.ndarray:
    """The answer to the soprano played with no clock, at a steady tempo; the player says
    the tempo (CC 28, as a DAW user would) or, without ``tell_tempo``, leaves the
    harmoniser to follow it."""
    harmonizer.settings.lookahead = 0
    _tell_key(harmonizer, chorale)
    _tell_metre(harmonizer, chorale)
    harmonizer.apply_parameter("tempo", EVENT_TEMPO_BPM if tell_tempo else 0.0)
    harmonizer.reset()
    soprano = chorale.raw[0]
    recorder = _GridRecorder(soprano.shape[0], harmonizer.settings.channels)
    fermata = chorale.meta[:, 2].astype(bool)
    for step in range(soprano.shape[0]):
        recorder.feed(_pedal(harmonizer, fermata, step, step * STEP_SECONDS))
        for message in _melody_events(soprano, step):
            recorder.feed(harmonizer.process(message, step * STEP_SECONDS))
        # what falls due before the next 16th, at its time (as the service's worker does)
        next_s = (step + 1) * STEP_SECONDS
        while (due := harmonizer.due_s) is not None and due < next_s:
            recorder.feed(harmonizer.on_time(due))
            if harmonizer.due_s == due:  # on_time must move on: never loop on one time
                raise RuntimeError(f"on_time({due}) left the same work due")
        recorder.close_step(step)
    recorder.feed(harmonizer.release_all())
    return recorder.raw


def live_yardstick(harmonizer: LiveHarmonizer, chorales: list[Chorale],
                   lookaheads: tuple[int, ...] = (0, 1, 2, 4, 8)) -> dict:
    """Voice-leading rates of the live answers per lookahead (clock mode) and in event mode,
    with Bach's own settings of the same chorales for reference."""
    results = {}
    bach = collections.Counter()
    for chorale in chorales:
        bach.update(voice_leading_report(chorale.raw, chorale.meta))
    results["bach"] = {"rates": rates(bach)}
    modes = [(f"clock_melody_{k}_steps_early", k) for k in lookaheads
             if k <= harmonizer.max_lookahead] + [("event_mode", None)]
    for name, k in modes:
        totals = collections.Counter()
        soprano_kept = 0
        for chorale in chorales:
            raw = (play_event_mode(harmonizer, chorale) if k is None
                   else play_clock_mode(harmonizer, chorale, k))
            soprano_kept += int(np.array_equal(sounding_pitches(raw[0]),
                                               sounding_pitches(chorale.raw[0])))
            raw[0] = chorale.raw[0]  # rates are of the lower voices against the melody
            totals.update(voice_leading_report(raw, chorale.meta))
        results[name] = {"rates": rates(totals), "counts": dict(totals),
                         "soprano_echoed_exactly": f"{soprano_kept}/{len(chorales)}"}
    return results


