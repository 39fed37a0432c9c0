"""The live harmoniser: a processor that answers each melody note with alto, tenor and bass.

It keeps a short grid of what has sounded (16th steps, all four voices, as tokens) and,
for each new step, asks the live voice networks for the bass, then the alto, then the
tenor, each seeing the past, the soprano up to the lookahead and the voices already
decided. A voice's answer is a new pitch, a hold (keep sounding) or a rest.

Two timing modes, chosen by what arrives:

* **event mode** (no clock): every melody note is a new step; how many 16ths passed since
  the last one is counted in 16ths of the tempo (the ``tempo`` setting, or followed from
  the player's own notes). With the tempo set and ``move_under``, the lower voices are
  also decided at each 16th while the melody holds (the worker calls
  :meth:`LiveHarmonizer.on_time` when :attr:`LiveHarmonizer.due_s` comes), and they sound
  on through a legato gap, so the next note may tie or suspend a common tone;
* **clock mode** (MIDI clock 0xF8 after Start/Continue/Song Position): 6 clocks make a
  16th; the harmoniser decides every step, so lower voices can move under a held note,
  and with a lookahead of K steps it decides step ``now - K`` from a melody sent early.

Between two melody notes the processor answers ahead (:meth:`LiveHarmonizer.speculate`, run
by the worker while its queue is empty): for the likeliest next notes (pitch, steps passed,
pedal) it decides the voices in batched network calls and keeps the answers keyed by
everything the decision reads, random draws included. When a note arrives and its inputs
match an entry, the answer is sent from the table; otherwise it is computed then. Both
paths run the same code, so the music is the same with or without speculation.

The sustain pedal (CC64, or another CC) marks a fermata. Parameters can be set by CC
(see :data:`CC_PARAMETERS`). :meth:`LiveHarmonizer.process` takes raw MIDI bytes and
returns raw MIDI bytes; it allocates little and never loads or compiles anything:
:meth:`LiveHarmonizer.prepare` does that once.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from kantor.engine.chorale.contract import (
    allowed_tokens,
    gumbel_noise,
    live_hidden_by_decision,
    live_inputs,
    log_softmax,
)
from kantor.engine.chorale.encoding import (
    FAR,
    FIRST_PITCH_TOKEN,
    HOLD,
    HOLD_PITCH,
    LIVE_DECISION_ORDER,
    MASK,
    META_FIELDS,
    REST,
    REST_PITCH,
    START,
    STEPS_PER_QUARTER,
    TEXTBOOK_RANGES,
    VOICES,
    VoiceVocabulary,
    meta_columns,
)
from kantor.engine.chorale.explain import LiveDecision
from kantor.engine.chorale.keys import signature_tonic
from kantor.engine.chorale.live_settings import CC_PARAMETERS, LIVE_PARAMETERS, LiveSettings
from kantor.engine.chorale.rules import PieceContext, candidate_violations, rule_weight_vector
from kantor.engine.models import ASSETS, ModelError, OnnxModel, load_model

log = logging.getLogger(__name__)

LIVE_MODEL_STEM = "chorale-live-{voice}"
LIVE_TUNED_STEM = "chorale-live-tuned-{voice}"  # the same networks after RL tuning
CLOCKS_PER_STEP = 24 // STEPS_PER_QUARTER  # MIDI clock runs at 24 per quarter note
# CC number -> (parameter, converter from the 0-127 value)
CC_ALL_NOTES_OFF = 123
# Prior for ordering the speculative answers: how Bach's sopranos move from note to note
# (semitones -> share of the 16,493 moves between notes in the training chorales) ...
MELODY_INTERVAL_PRIOR = {-2: 0.261, 2: 0.205, 0: 0.151, -1: 0.132, 1: 0.107, 5: 0.034,
                         -3: 0.027, -4: 0.019, 3: 0.016, -5: 0.015, 7: 0.012, 4: 0.009,
                         -7: 0.007, 12: 0.002, 8: 0.0015, -8: 0.001, 9: 0.0007, -12: 0.0003}
# A melody note that is a chord's seventh resolves if the next different note steps down;
# a live player's next note is not known yet, so making one a seventh is charged the
# unresolved-seventh rule times the chance that it will not (Bach's sopranos: 54%).
MELODY_UNRESOLVED = 1.0 - (MELODY_INTERVAL_PRIOR[-1] + MELODY_INTERVAL_PRIOR[-2]) / (
    1.0 - MELODY_INTERVAL_PRIOR[0])
# The final-chord rule's share charged at a cadence on the melody's tonic, which may be
# the last for all a live harmoniser knows (Bach: the tonic triad in root position at
# 70% of such cadences within a chorale, 94% at its end).
TONIC_CADENCE = 0.5
# ... how long the notes are, in quarter notes ...
DURATION_PRIOR = {1.0: 0.689, 0.5: 0.179, 2.0: 0.104, 1.5: 0.015, 0.25: 0.011}
# ... and the fermata pedal: down for one note (a fermata is one note long), then up; from
# up it goes down before 13.7% of notes (worth two notes against this player's own: one
# who never touches it soon stops spending the table on pedal-down guesses).
PEDAL_DOWN_PRIOR = 0.137
PEDAL_PRIOR_NOTES = 2
PAUSE_PRIOR = 0.03  # a note after a pause (not legato): guessed at this share
STEPS_FLOOR = 0.005  # every step count is guessed at least at this share
SPECULATION_BATCH = 4  # rows per network call: one call is the longest a note can wait
# CPU time answering ahead may take per step, as a share of the time expected until the
# next note (so it is done before the note comes and never takes a whole core). Half
# covered 32-44 answers at 30 ms gaps under JACK, short of a first leap the prior gives
# 0.7%; three quarters cover about 80. The live process keeps to one core under JACK's
# real-time threads, so the rest of that core and the other cores stay free.
SPECULATION_SHARE = 0.75
SPECULATION_MAX_S = 0.1  # and never more than this a step, however slow the playing
RETIRED_LIMIT = 8  # tables and work set aside, unfreed, at most
TABLE_LIMIT = 1024  # answers kept ahead at most (each key is about 2.5 KB)
MISSES_KEPT = 32  # misses described in the status, the latest
CHORD_WINDOW_S = 0.03  # notes closer than this are one chord: the top note is the melody
LEGATO_GAP_S = 0.08  # a new note this soon after a release continues the phrase
# Event mode's tempo: a quarter note lasts QUARTER_RANGE_S (40-400 bpm), DEFAULT_QUARTER_S
# until the player's first joined notes say: the first TEMPO_LEARN_GAPS gaps are read as
# the likeliest note values; each later gap moves it TEMPO_FOLLOW of the way to its own. (The
# median of the latest 8 gaps taken as a quarter miscounted a quarter of the gaps of the
# test chorales at a steady tempo, and half their notes fell on the wrong 16th.)
QUARTER_RANGE_S = (0.15, 1.5)
DEFAULT_QUARTER_S = 0.5
TEMPO_LEARN_GAPS = 4
TEMPO_FOLLOW = 0.25
# Event mode, the tempo set (move_under): while the melody holds, the lower voices are decided
# at each 16th after its onset (as under MIDI clock), up to TIMED_STEPS_MAX of them. A
# timed step waits TIMED_GRACE_S past its time, or, where the melody's next note is
# likelier than not (a note value the player is likely to play ends there), LATE_SHARE of a
# 16th: a note that comes that late still counts as on that step, and is answered as one
# rather than replacing an answer just given.
TIMED_STEPS_MAX = 2 * STEPS_PER_QUARTER - 1
TIMED_GRACE_S = 0.02
LATE_SHARE = 0.45
# The alto and tenor under a held melody note are drawn at least at the networks' own
# belief, as the offline sampler draws off the beat: at a low temperature they hold
# whatever the networks hold at 60% or more, and never pass in eighths. (The bass keeps
# the player's temperature: drawn at 1.0 it walks away from the key and the cadence.)
MOTION_TEMPERATURE = 1.0
MOTION_VOICES = frozenset((1, 2))


@dataclass
class LiveStats:
    """Counters a status line shows; every drop has a reason."""

    notes_in: int = 0
    notes_out: int = 0
    steps: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    # Decisions answered from the speculative table (hit) or computed on arrival (miss),
    # by mode: "event", "clock", and "timed" (event mode's 16ths under a held note).
    hits: dict[str, int] = field(default_factory=lambda: {"event": 0, "clock": 0, "timed": 0})
    misses: dict[str, int] = field(
        default_factory=lambda: {"event": 0, "clock": 0, "timed": 0})
    speculated: int = 0  # answers computed ahead
    # The latest misses and why: what the table held then, whether answering ahead had
    # finished, and the melody note that came (so a benchmark can say what to guess next).
    recent_misses: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=MISSES_KEPT))

    def speculation(self) -> dict:
        """Hits, misses and hit rate per mode (None before the first decision)."""
        report = {}
        for mode in ("event", "clock", "timed"):
            hits, misses = self.hits[mode], self.misses[mode]
            report[mode] = {"hits": hits, "misses": misses,
                            "hit_rate": hits / (hits + misses) if hits + misses else None}
        report["answers_computed_ahead"] = self.speculated
        report["recent_misses"] = list(self.recent_misses)
        return report

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class LiveHarmonizer:
    """The live processor. Call :meth:`prepare` once, then :meth:`process` per message."""

    def __init__(self, models: dict[int, OnnxModel], settings: LiveSettings | None = None,
                 tuned: dict[int, OnnxModel] | None = None) -> None:
        """``models``: the live networks trained on Bach (the prior); ``tuned``: the same
        networks tuned by reinforcement learning (export/chorale/tutor.py), played while
        the ``tuned`` setting is on. Both sets must share one shape and vocabulary."""
        for name, chosen in (("", models), ("tuned ", tuned)):
            if chosen is not None and sorted(chosen) != sorted(LIVE_DECISION_ORDER):
                raise ModelError(f"the live harmoniser needs {name}alto, tenor and bass "
                                 "models")
        if tuned is not None:
            for v in LIVE_DECISION_ORDER:
                if any(tuned[v].card.get(k) != models[v].card.get(k)
                       for k in ("past", "lookahead_max", "vocabularies", "inputs")):
                    raise ModelError("the tuned live models differ from the prior in shape "
                                     "or vocabulary: re-export them from this prior")
        self._model_sets = {False: models, True: tuned}
        self.models = models
        card = models[LIVE_DECISION_ORDER[0]].card
        self.past = int(card["past"])
        try:
            self.meta_columns = meta_columns(card)
        except ValueError as error:
            raise ModelError(str(error)) from None
        self.max_lookahead = int(card["lookahead_max"])
        self.vocabularies = [VoiceVocabulary(**{k: c[k] for k in ("voice", "low", "high")})
                             for c in card["vocabularies"]]
        self.settings = settings or LiveSettings()
        # temperature scaling fitted on the validation chorales (the card's calibration):
        # logits / T are the networks' honest belief; 1 where a card has none
        self._calibration: dict[int, float] = {}
        self._select_models()
        self.stats = LiveStats()
        self._last: tuple | None = None  # what the last chord answered read (raw)
        self._prepared = False

    @property
    def has_tuned(self) -> bool:
        """Whether tuned networks were loaded (the ``tuned`` setting can play them)."""
        return self._model_sets[True] is not None

    @property
    def last_decision(self) -> LiveDecision | None:
        """What the last chord answered read and gave (None before one)."""
        if self._last is None:
            return None
        grid, meta, early, step, tuned = self._last
        return LiveDecision(grid, np.ascontiguousarray(meta[:, self.meta_columns]),
                            self.past, max(early - 1, 0), int(step),
                            "tuned" if tuned else "prior")

    @property
    def prior_models(self) -> dict[int, OnnxModel]:
        """The networks trained on Bach alone (the prior the tuned ones started from)."""
        return self._model_sets[False]

    @property
    def playing(self) -> str:
        """Which networks decide now: "tuned" or "prior"."""
        return "tuned" if self.settings.tuned and self.has_tuned else "prior"

    def _select_models(self) -> None:
        """Point the decisions at the set the ``tuned`` setting asks for (the prior where
        no tuned set was loaded), with that set's calibration."""
        self.models = self._model_sets[self.playing == "tuned"]
        self._calibration = {v: float(self.models[v].card.get("calibration", {}).get(
            "temperature", 1.0)) for v in LIVE_DECISION_ORDER}

    @classmethod
    def load(cls, assets: Path = ASSETS, settings: LiveSettings | None = None
             ) -> LiveHarmonizer:
        """Load and verify the shipped live models."""
        models = {v: load_model(Path(assets) / f"{LIVE_MODEL_STEM.format(voice=VOICES[v])}.onnx")
                  for v in LIVE_DECISION_ORDER}
        tuned_paths = {v: Path(assets) / f"{LIVE_TUNED_STEM.format(voice=VOICES[v])}.onnx"
                       for v in LIVE_DECISION_ORDER}
        tuned = ({v: load_model(path) for v, path in tuned_paths.items()}
                 if all(path.exists() for path in tuned_paths.values()) else None)
        return cls(models, settings, tuned)

    def check_parameter(self, name: str, value) -> float | int | bool:
        """``value`` converted for parameter ``name`` (see :data:`LIVE_PARAMETERS`);
        ValueError saying what is allowed when the name or value is not."""
        if name not in LIVE_PARAMETERS:
            raise ValueError(f"unknown live parameter '{name}' (settable: "
                             f"{', '.join(LIVE_PARAMETERS)})")
        return LIVE_PARAMETERS[name].check(
            value, high=self.max_lookahead if name == "lookahead" else None)

    def parameters(self) -> dict[str, float | int | bool]:
        """The settable parameters' current values."""
        return {name: getattr(self.settings, name) for name in LIVE_PARAMETERS}

    # ----------------------------------------------------------------- preparation
    def prepare(self) -> None:
        """Allocate the grid, precompute token tables and warm every session up."""
        self.window = self.past + 1 + self.max_lookahead
        # Grid columns: [0, past) is history, ``past`` is the step being decided, the
        # rest is the melody ahead (lookahead). Meta follows the same columns.
        self.grid = np.full((4, self.window), START, dtype=np.int64)
        self.meta = np.zeros((self.window, len(META_FIELDS)), dtype=np.int64)
        # Network inputs for up to SPECULATION_BATCH rows (a miss uses the first row).
        self._inputs = np.zeros((SPECULATION_BATCH, 4, self.window), dtype=np.int64)
        self._meta_in = np.zeros((SPECULATION_BATCH, self.window, self.meta_columns.size),
                                 dtype=np.int64)
        self._seen = np.zeros((4, self.window), dtype=np.int64)  # for decision keys
        self._token_pitch = [v.token_pitches() for v in self.vocabularies]
        self._candidates = [p[None, :].copy() for p in self._token_pitch]
        self._lows = np.array([v.low for v in self.vocabularies], dtype=np.int64)
        self._column = np.array([self.past], dtype=np.int64)
        # Lower voices not yet decided when ``voice`` decides (decisions follow
        # LIVE_DECISION_ORDER): they are silent at this step for its rule checks.
        self._hidden = {v: np.array([u > 0 and u not in LIVE_DECISION_ORDER[
            :LIVE_DECISION_ORDER.index(v) + 1] for u in range(4)])
            for v in LIVE_DECISION_ORDER}
        self._is_hold = [np.arange(v.size) == HOLD for v in self.vocabularies]
        self._allowed = {v: allowed_tokens(self._token_pitch[v], *TEXTBOOK_RANGES[v])
                         for v in LIVE_DECISION_ORDER}
        # What each network may see, per soprano lookahead: the training's masks exactly.
        self._hidden_by_ahead = [live_hidden_by_decision(self.window, self.past, ahead)
                                 for ahead in range(self.max_lookahead + 1)]
        # A player's end is unknown: no final-chord rule. A cadence is known when the
        # pedal goes down: the step it marks (grid column ``past``) gets the cadence rule.
        self._cadence = np.zeros(self.past + 1, dtype=bool)
        self._piece = self._piece_context()
        self._rule_weights = rule_weight_vector()
        self._rng = np.random.default_rng(self.settings.seed)
        self._noise: deque[list[np.ndarray]] = deque()  # drawn ahead, one entry a decision
        self._noise_serial = 0  # decisions that have consumed noise so far
        self._table: dict[tuple, tuple[int, ...]] = {}  # decision key -> A, T, B tokens
        self._work: Iterator[None] | None = None
        self._work_due = False
        # Work ahead and tables given up on the answer's path, freed later off it: closing
        # a suspended generator (its arrays) and freeing a table's keys cost ~50 and ~20 us
        # on a CPU gone cold between notes, most of a table hit's time.
        self._retired: list[object] = []
        self._spent_s = 0.0  # CPU time spent answering ahead since the last decision
        # answering ahead as a message found it: work left, CPU seconds spent this step
        self._work_before, self._spent_before = False, 0.0
        self.reset()
        for _ in range(5):  # first runs of a session are slow (each batch size): do them now
            for rows in range(1, SPECULATION_BATCH + 1):
                for models in (m for m in self._model_sets.values() if m is not None):
                    for v in LIVE_DECISION_ORDER:
                        models[v].run({"tokens": self._inputs[:rows],
                                       "meta": self._meta_in[:rows]})
        self.reset()
        self._prepared = True
        # The first note also loads the compiled rule kernels (Numba dispatch, ~25 ms):
        # play two notes, the second answered ahead, and forget them - state, counters and
        # random stream as if unplayed.
        channel = self.settings.melody_channel or 0
        self.process([0x90 | channel, 67, 64], 0.0)
        self.process([0x80 | channel, 67, 0], 0.2)
        while self.speculating:
            self.speculate()
        self.process([0x90 | channel, 69, 64], 0.25)
        self.process([0x80 | channel, 69, 0], 0.5)
        self.release_all()
        self.reset()
        self.stats = LiveStats()
        self._rng = np.random.default_rng(self.settings.seed)
        self._noise.clear()
        self._noise_serial = 0

    def reseed(self, seed: int) -> None:
        """Start the random stream of the draws over from ``seed`` (a take that does not
        depend on the ones before it); answers computed ahead with the old one go."""
        self.settings.seed = seed
        self._rng = np.random.default_rng(seed)
        self._noise.clear()
        self._noise_serial = 0
        self._retire_table()
        self._restart_ahead()

    def reset(self) -> None:
        """Forget the music so far (outputs must have been released first)."""
        self._last = None
        self.grid[:] = START
        self.meta[:] = 0
        for row in self.meta:  # the key holds from the first note on
            self._write_key(row)
        self.meta[:, 6:8] = FAR
        self.step = -1  # absolute step of grid column ``past``
        # Steps counted from a song position (a bar line) rather than from the first note
        self.song_position_known = False
        self._write_beats()  # the first note will be step 0
        self.sounding: dict[int, int] = {}  # voice -> MIDI pitch sounding on its channel
        self.thru_note: int | None = None  # melody pitch echoed (thru)
        self.melody_note: tuple[int, int] | None = None  # (channel, pitch) held by the player
        self.released: tuple[float, set[int]] | None = None  # last melody release, voices on
        # event mode: when a release becomes a pause (no legato note came), and the time
        # of the release that did
        self.pause_due_s: float | None = None
        self.pause_since_s: float | None = None
        # event mode, the melody held: 16ths decided by time since its onset, and when the
        # next is due (None: none; worked out off the answer's path when stale)
        self.timed_steps = 0
        self.timed_due_s: float | None = None
        self._timed_stale = False
        self.melody_velocity = 64
        self.last_onset_s: float | None = None
        self.quarter_s: float | None = None  # the tempo followed (event mode), seconds
        self.first_gaps: list[float] = []  # the joined gaps that set it
        self.clock_running = False
        self.clock_count = 0
        self.fermata = False
        # For guessing the next note: steps between recent notes (event mode) and how
        # each arrived ("held": over the last note, "legato": just after its release,
        # "detached": after a pause).
        self.recent_gaps: deque[float] = deque(maxlen=16)  # seconds between onsets
        self.recent_intervals: deque[int] = deque(maxlen=32)  # semitones between notes
        self.recent_arrivals: deque[str] = deque(maxlen=8)
        self.recent_pedal: deque[bool] = deque(maxlen=32)  # pedal down at each onset
        self._table.clear()
        self._restart_ahead()

    # ----------------------------------------------------------------- messages in
    def process(self, message: list[int] | bytes, now_s: float | None = None) -> list[list[int]]:
        """Handle one raw MIDI message that arrived at ``now_s`` (seconds, perf_counter);
        returns the messages to send, note-offs before note-ons."""
        if not self._prepared:
            raise RuntimeError("call prepare() before process()")
        now_s = time.perf_counter() if now_s is None else now_s
        # What fell due before this message (the worker normally does it on time; this
        # covers a caller that did not).
        out: list[list[int]] = self.on_time(now_s)
        # for a miss's description (two reads: this runs before every message)
        self._work_before, self._spent_before = (
            self._work is not None or self._work_due), self._spent_s
        # What was being computed ahead assumed the state before this message: start over
        # (entries already in the table stay: they are keyed by their exact inputs).
        self._restart_ahead()
        if not message:
            self.stats.drop("empty message")
            return out
        status = message[0]
        if status < 0x80 or (status != 0xF0 and max(message[1:], default=0) > 0x7F):
            self.stats.drop("malformed message")
            return out
        kind = status & 0xF0
        if status == 0xF0:
            self.stats.drop("sysex ignored")
        elif status == 0xF8:
            self._on_clock(out)
        elif status == 0xFA:  # Start: from the top
            self.release_all(out)
            self.melody_note = None
            self._jump_to(0)
            self.clock_running, self.clock_count = True, 0
        elif status == 0xFB:  # Continue: from the song position we are at
            self.clock_running, self.clock_count = True, 0
        elif status == 0xFC:
            self.clock_running = False
            self.release_all(out)
        elif status == 0xFF:  # system reset
            self.release_all(out)
            self.clock_running = False
            self.melody_note = None
        elif status == 0xF2 and len(message) >= 3:
            self.release_all(out)
            self.melody_note = None
            self._jump_to(message[1] | (message[2] << 7))
            self.clock_count = 0
        elif kind in (0x80, 0x90) and len(message) >= 3:
            channel = status & 0x0F
            if (self.settings.melody_channel is not None
                    and channel != self.settings.melody_channel):
                self.stats.drop("note on another channel")
            elif kind == 0x90 and message[2] > 0:
                self._on_note_on(channel, message[1], message[2], now_s, out)
            else:
                self._on_note_off(channel, message[1], now_s, out)
        elif kind == 0xB0 and len(message) >= 3:
            self._on_control(message[1], message[2], out)
        elif status >= 0xF0 or kind in (0xA0, 0xC0, 0xD0, 0xE0):
            pass  # other realtime/common or channel messages: not ours, nothing to do
        else:
            self.stats.drop("malformed message")
        return out

    def _on_control(self, number: int, value: int, out: list[list[int]]) -> None:
        if number == self.settings.fermata_cc:
            self.fermata = value >= 64
            self._timed_stale = True  # a fermata's chord holds: no timed steps under it
        elif number == CC_ALL_NOTES_OFF:
            self.release_all(out)
            self.melody_note = None
        elif number in CC_PARAMETERS:
            parameter = CC_PARAMETERS[number]
            self.apply_parameter(parameter.name, parameter.controller_value(value))

    def apply_parameter(self, name: str, value) -> None:
        """Set an already checked parameter (see :meth:`check_parameter`) while playing;
        a new key, mode, metre or pickup reaches every step the networks see, not only
        those to come."""
        if name == "lookahead":
            value = min(value, self.max_lookahead)
        setattr(self.settings, name, value)
        self._restart_ahead()
        self._timed_stale = True  # the tempo, or whether voices move under a note
        if name == "tuned":
            self._select_models()
            self._table.clear()  # answers of the other networks
        if name in ("key_sharps", "minor"):
            self.settings.tonic_degree = None  # a key set this way is major or relative minor
            self._piece = self._piece_context()
            if self._prepared:
                for column in range(self.window):
                    self._write_key(self.meta[column])
        if name in ("beats_per_bar", "pickup"):
            self._write_beats()  # the bar lines move for every step the networks see

    def _on_note_on(self, channel: int, pitch: int, velocity: int, now_s: float,
                    out: list[list[int]]) -> None:
        self.stats.notes_in += 1
        if self.melody_note is not None and self.last_onset_s is not None and (
                now_s - self.last_onset_s) < CHORD_WINDOW_S:
            if pitch <= self.melody_note[1]:
                self.stats.drop("chord note below the melody")
                return
            # A higher note of the same chord: it is the melody; decide this step again.
            self.melody_note = (channel, pitch)
            self.melody_velocity = velocity
            column = self._melody_column()
            self._set_melody(column, pitch)
            if column == self.past:
                self._decide(out, redo=True)
            return
        if self.clock_running:
            self.melody_note = (channel, pitch)
            self.melody_velocity = velocity
            self.last_onset_s = now_s
            column = self._melody_column()
            self._set_melody(column, pitch)
            if column == self.past:  # no lookahead: answer now, for the current step
                self._decide(out, redo=True)
            return
        # Event mode: this note starts a new step. A note that follows the last one's
        # release closely is legato: the voices count as sounding through the gap, so
        # the voice leading from the last chord is judged as such.
        legato = self.released is not None and now_s - self.released[0] < LEGATO_GAP_S
        continuing = self.released[1] if legato else set()
        gap = None if self.last_onset_s is None else now_s - self.last_onset_s
        steps = self._steps_since(gap, was_held=self.melody_note is not None or legato)
        self.recent_pedal.append(self.fermata)
        if gap is not None:
            self.recent_gaps.append(gap)
            self.recent_arrivals.append("held" if self.melody_note is not None
                                        else "legato" if legato else "detached")
        self.last_onset_s = now_s
        before = self._soprano_pitch() if gap is not None else -1
        self.melody_note = (channel, pitch)
        self.melody_velocity = velocity
        self.released = None
        self.pause_due_s = self.pause_since_s = None
        # Steps already decided by time under the last note count towards this one's; a
        # note later than its step's timed decision lands on that step and replaces it.
        steps -= self.timed_steps
        late = steps < 1
        self.timed_steps, self.timed_due_s, self._timed_stale = 0, None, True
        if not late:
            self._advance(steps, continuing)
        self._set_melody(self.past, pitch)
        if before >= 0:
            self.recent_intervals.append(self._soprano_pitch() - before)
        self._decide(out, redo=late)

    def _on_note_off(self, channel: int, pitch: int, now_s: float,
                     out: list[list[int]]) -> None:
        if self.melody_note != (channel, pitch):
            return  # a chord note we ignored, a note replaced by a newer one, or unknown
        self.melody_note = None
        self.released = (now_s, {0, *self.sounding})
        self.timed_due_s, self._timed_stale = None, False  # nothing moves under a rest
        if self.clock_running and self.settings.lookahead > 0:
            # Sent early: the release is heard when its step is decided (a note that
            # started in this very step still lasts the step).
            column = self._melody_column()
            self.grid[0, column + int(self.grid[0, column] >= FIRST_PITCH_TOKEN):] = REST
            return
        if self.clock_running:
            self.release_all(out)
            return
        # A note within LEGATO_GAP_S continues the phrase: moving under, the lower voices
        # sound on until then, so that it may tie a common tone or suspend one; otherwise
        # they end with the melody.
        if self.moving_under:
            self._restart_ahead()
            self._end_echo(out)
        else:
            self.release_all(out)
        self.pause_due_s = now_s + LEGATO_GAP_S

    @property
    def due_s(self) -> float | None:
        """When (seconds, the clock of ``process``'s ``now_s``) :meth:`on_time` has work:
        the next 16th decided by time under a held melody note, or the end of the legato
        gap after a release, from which on the next note is guessed as coming after a
        pause; None when nothing is due."""
        if self._timed_stale:
            self._schedule_timed()
        timed, pause = self.timed_due_s, self.pause_due_s
        if timed is None or pause is None:
            return pause if timed is None else timed
        return min(timed, pause)

    def on_time(self, now_s: float) -> list[list[int]]:
        """Do what is due by ``now_s`` (seconds) and return the messages to send:

        * under a held melody note (event mode, the tempo set, ``move_under`` on), decide
          the 16th whose time has come, so the lower voices may move (several at once, as
          one, if the call comes late);
        * once a release is ``LEGATO_GAP_S`` old with no note after it, answer ahead for a
          note after a pause (the guesses made at the release spent most of the table on
          a legato one)."""
        out: list[list[int]] = []
        if self._timed_stale:
            self._schedule_timed()
        if self.timed_due_s is not None and now_s >= self.timed_due_s:
            self._timed_step(now_s, out)
        if self.pause_due_s is not None and now_s >= self.pause_due_s:
            self.release_all(out)  # the voices kept through the legato gap end
            if self.released is not None:
                self.pause_since_s = self.released[0]
        return out

    @property
    def moving_under(self) -> bool:
        """Whether the lower voices move under held melody notes now: ``move_under`` on,
        no clock (which moves them anyway) and a tempo the player sets. (On a followed
        tempo, which miscounts a tenth of the gaps, moving made the settings of the
        validation chorales further from Bach's, not nearer.)"""
        return bool(self.settings.move_under and self.settings.tempo
                    and not self.clock_running)

    def _set_quarter_s(self) -> float | None:
        """A quarter note at the tempo the player set (seconds); None when followed."""
        return _followed(60.0 / self.settings.tempo) if self.settings.tempo else None

    def _sixteenth_s(self) -> float:
        """A 16th at the tempo the player set (seconds; the default tempo's if none is)."""
        return (self._set_quarter_s() or DEFAULT_QUARTER_S) / STEPS_PER_QUARTER

    def _schedule_timed(self) -> None:
        """When the next 16th under the held melody note is decided (``timed_due_s``; None
        when none is): its time, plus a short grace, or nearly half a 16th where the
        next melody note is likelier than not to come on it."""
        self._timed_stale = False
        self.timed_due_s = None
        if (not self.moving_under or self.fermata or self.melody_note is None
                or self.last_onset_s is None or self.timed_steps >= TIMED_STEPS_MAX):
            return
        sixteenth_s = self._sixteenth_s()
        step = self.timed_steps + 1
        steps_p = self._steps_likely(was_held=True)
        later = sum(p for s, p in steps_p.items() if s >= step)
        likely = later > 0 and steps_p[step] >= 0.5 * later  # hazard of a note here
        wait_s = LATE_SHARE * sixteenth_s
        if not likely:
            wait_s = min(TIMED_GRACE_S, wait_s)
        self.timed_due_s = self.last_onset_s + step * sixteenth_s + wait_s

    def _timed_step(self, now_s: float, out: list[list[int]]) -> None:
        """Decide the 16th (or, when called late, the latest of the 16ths) that fell due
        under the held melody note; the voices sounding may hold or move."""
        if self.fermata:  # a fermata's chord holds
            self.timed_due_s = None
            return
        steps = 1 + int((now_s - self.timed_due_s) / self._sixteenth_s())
        steps = max(1, min(steps, TIMED_STEPS_MAX - self.timed_steps))
        self.timed_steps += steps
        self._advance(steps)
        self._decide(out, redo=False, mode="timed")
        self._restart_ahead()
        self._timed_stale = True

    def _on_clock(self, out: list[list[int]]) -> None:
        """Clock 0 of a step is the one after Start/Continue/Song Position; every 6th
        clock after it begins the next step, which is decided at once."""
        if not self.clock_running:
            return
        boundary = self.clock_count > 0 and self.clock_count % CLOCKS_PER_STEP == 0
        self.clock_count += 1
        if boundary:
            self._advance(1)
            self._decide(out, redo=False)

    # ----------------------------------------------------------------- the grid
    def _early_steps(self) -> int:
        """How many steps early the melody arrives (clock mode only)."""
        if not self.clock_running:
            return 0
        return int(min(max(self.settings.lookahead, 0), self.max_lookahead))

    def _melody_column(self) -> int:
        """Grid column where arriving melody notes go: D steps ahead when the melody is
        sent D steps early, the current step otherwise."""
        return self.past + self._early_steps()

    def _set_melody(self, column: int, pitch: int, grid: np.ndarray | None = None) -> None:
        grid = self.grid if grid is None else grid
        grid[0, column] = self._melody_token(pitch)
        grid[0, column + 1:] = HOLD

    def _melody_token(self, pitch: int) -> int:
        """The soprano token of MIDI ``pitch``, folded by octaves into the soprano's range."""
        vocab = self.vocabularies[0]
        while pitch > vocab.high:
            pitch -= 12
        while pitch < vocab.low:
            pitch += 12
        return vocab.token_of_pitch(pitch)

    def _steps_since(self, gap_s: float | None, was_held: bool) -> int:
        """16th steps since the last melody note: the gap counted in 16ths of the tempo
        followed. The first ``TEMPO_LEARN_GAPS`` gaps between joined notes set that tempo
        (the quarter note under which they are the likeliest note values of Bach's
        sopranos); each later gap moves it a little towards its own, so that eighths
        count 2 and halves 8 and every note keeps its place in the beat."""
        if gap_s is None:
            return 1
        steps = self._steps_for(gap_s, was_held)
        if was_held and not self.settings.tempo:
            if len(self.first_gaps) < TEMPO_LEARN_GAPS:
                self.first_gaps.append(gap_s)
                self.quarter_s = _likeliest_quarter(self.first_gaps)
            elif gap_s / self.quarter_s * STEPS_PER_QUARTER < 2 * STEPS_PER_QUARTER + 0.5:
                heard_s = gap_s * STEPS_PER_QUARTER / steps  # (a pause longer says nothing)
                self.quarter_s = _followed(
                    self.quarter_s + TEMPO_FOLLOW * (heard_s - self.quarter_s))
        return steps

    def _steps_for(self, gap_s: float, was_held: bool) -> int:
        """What :meth:`_steps_since` will say of ``gap_s``, changing nothing."""
        if self.settings.tempo:  # the player says
            quarter_s = self._set_quarter_s()
        elif was_held and len(self.first_gaps) < TEMPO_LEARN_GAPS:  # still learning
            quarter_s = _likeliest_quarter([*self.first_gaps, gap_s])
        elif self.quarter_s is not None:
            quarter_s = self.quarter_s
        else:  # no tempo yet: a gap between joined notes will set it
            quarter_s = DEFAULT_QUARTER_S
        return int(min(max(round(gap_s / quarter_s * STEPS_PER_QUARTER), 1),
                           2 * STEPS_PER_QUARTER))

    def _jump_to(self, step: int) -> None:
        """Start/Continue/Song Position: the current step becomes ``step``, in silence;
        the music before it is forgotten."""
        self.grid[:] = START
        self.grid[:, self.past:] = REST
        self.step = step
        self.song_position_known = True
        self._write_meta(self.meta, step, 0, self.window, self.fermata)

    def _advance(self, steps: int, continuing: set[int] | frozenset = frozenset()) -> None:
        """Move the grid ``steps`` forward: the past scrolls left; new steps continue what
        sounds, or what was released legato (``continuing`` voices), or stay silent."""
        steps = max(1, min(steps, self.window))
        holds = [(self.melody_note is not None if v == 0 else v in self.sounding)
                 or v in continuing for v in range(4)]
        self.step += steps
        self._shift(self.grid, self.meta, self.step, steps, holds, self.fermata)
        self.stats.steps += steps

    def _shift(self, grid: np.ndarray, meta: np.ndarray, step: int, steps: int,
               holds: list[bool], fermata: bool) -> None:
        """Scroll ``grid`` and ``meta`` (in place) ``steps`` forward to absolute ``step``;
        voice v's new steps hold if ``holds[v]``, else rest."""
        grid[:, :-steps] = grid[:, steps:].copy()
        meta[:-steps] = meta[steps:].copy()
        # Steps that were ahead of the decided one now become history (after a jump of
        # several steps) or stay ahead: give them what actually sounds. Only a melody sent
        # early (clock mode with lookahead) holds real notes ahead; those are kept.
        first_new = self.past - steps + 1
        early = self._early_steps()
        for v in range(4):
            start = self.window - steps if v == 0 and early else first_new
            grid[v, start:] = HOLD if holds[v] else REST
        self._write_meta(meta, step, self.window - steps, self.window, fermata)
        # The pedal as it is now holds from this step on, as far as the networks look
        # ahead (columns that entered the window earlier carry the pedal of then: after a
        # step of one 16th, a fermata would read as one 16th long).
        meta[self.past:, 2] = fermata

    def _write_meta(self, meta: np.ndarray, step: int, first: int, last: int,
                    fermata: bool) -> None:
        """Metadata of grid columns ``first``..``last-1`` when column ``past`` is absolute
        step ``step``."""
        for column in range(first, last):
            row = meta[column]
            self._write_beat(row, step - self.past + column)
            row[2] = fermata
            self._write_key(row)
            row[6] = row[7] = FAR  # a player's next cadence and end are not known

    def _piece_context(self) -> PieceContext:
        """What the rules know of a live player's piece: the cadence marked now, the
        tonic of the key told, and that the melody's next note and the end are not known
        (a cadence on the melody's tonic may be the last)."""
        tonic = (signature_tonic(self.settings.key_sharps) + self._tonic_degree()) % 12
        return PieceContext(tonic=tonic, cadences=self._cadence,
                            melody_unresolved=MELODY_UNRESOLVED, tonic_cadence=TONIC_CADENCE)

    def _write_beats(self) -> None:
        """Beat and bar of every column in the window, as the step count now says."""
        for column in range(self.window):
            self._write_beat(self.meta[column], self.step - self.past + column)

    def _write_beat(self, row: np.ndarray, at: int) -> None:
        """Where absolute step ``at`` falls in the beat and the bar, into a metadata row.
        Under MIDI clock the song position counts from a bar line; without it the count
        starts at the first note, which comes the player's pickup before one."""
        pickup = 0 if self.song_position_known else self.settings.pickup_steps
        in_bar = (at - pickup) % self.settings.steps_per_bar
        row[0] = in_bar % STEPS_PER_QUARTER
        row[1] = in_bar == 0

    def _write_key(self, row: np.ndarray) -> None:
        """Key signature, mode and tonic into one metadata row."""
        row[3] = self.settings.key_sharps % 12
        row[4] = int(self.settings.minor)
        row[5] = self._tonic_degree()

    def _tonic_degree(self) -> int:
        """The tonic in semitones above the signature's major tonic: as set (a modal
        key), else 0 in major and 9 (the relative minor) in minor."""
        degree = self.settings.tonic_degree
        return (9 if self.settings.minor else 0) if degree is None else degree % 12

    # ----------------------------------------------------------------- deciding
    def _decide(self, out: list[list[int]], redo: bool, mode: str | None = None) -> None:
        """Choose alto, tenor and bass for the current step and emit what changes;
        ``redo`` replaces an answer already given for this step."""
        column = self.past
        if self.settings.thru:
            self._thru(self.grid[0, column], out)
        if self.grid[0, column] == REST:  # the melody rests: so does everyone
            for voice in LIVE_DECISION_ORDER:
                self._release(voice, out)
                self.grid[voice, column] = REST
            return
        earlier = self.grid[:, column].copy()  # this step's answer so far (redo)
        # A voice whose answer is replaced is released before it decides again.
        sounding = {v: p for v, p in self.sounding.items()
                    if not (redo and earlier[v] >= FIRST_PITCH_TOKEN)}
        key = self._decision_key(self.grid, self.meta, sounding, timed=mode == "timed")
        noise = self._take_noise()
        mode = mode or ("clock" if self.clock_running else "event")
        tokens = self._table.get(key)
        if tokens is None:
            self.stats.misses[mode] += 1
            if self.settings.speculation > 0:  # with none, every decision "misses"
                self.stats.recent_misses.append(self._describe_miss(mode, column))
            for _ in self._answer(self.grid[None], self.meta[None], sounding, noise,
                                  timed=mode == "timed"):
                pass  # decided in place, on the grid itself
            tokens = tuple(int(self.grid[v, column]) for v in LIVE_DECISION_ORDER)
        else:
            self.stats.hits[mode] += 1
        self._retire_table()  # every entry assumed the noise just used
        self._spent_s = 0.0
        for voice, token in zip(LIVE_DECISION_ORDER, tokens, strict=True):
            if redo and earlier[voice] >= FIRST_PITCH_TOKEN:
                self._release(voice, out)  # this step's earlier answer is replaced
            self.grid[voice, column] = token
            self._emit(voice, token, out)
        # kept for `why this note`: two plain copies (the tuple is replaced whole; the
        # LiveDecision is built only when asked for, off the answer's path)
        self._last = (self.grid.copy(), self.meta.copy(), self._early_steps(), self.step,
                      self.models is not self._model_sets[False])

    def _describe_miss(self, mode: str, column: int) -> dict:
        """What a decision that missed the table came with, and what the table held."""
        pitch = self.vocabularies[0].pitch_of_token(int(self.grid[0, column])) \
            if self.grid[0, column] >= FIRST_PITCH_TOKEN else None
        interval = (self.recent_intervals[-1] if self.recent_intervals
                    and mode == "event" else None)
        spent = self._spent_before >= self._speculation_allowance()
        return {"mode": mode, "step": int(self.step), "pitch": pitch, "interval": interval,
                "gap_s": round(self.recent_gaps[-1], 4) if self.recent_gaps else None,
                "table": len(self._table),
                "ahead_unfinished": self._work_before and not spent,
                "ahead_budget_spent": spent,
                "ahead_cpu_s": round(self._spent_before, 5)}

    def _decision_key(self, grid: np.ndarray, meta: np.ndarray, sounding: dict[int, int],
                      timed: bool = False) -> tuple:
        """Everything a decision on ``grid`` reads, hashable: two equal keys get the same
        answer. The lower voices at and after the step decided are hidden from it;
        ``timed`` (a 16th under a held note) draws the alto and tenor hotter."""
        seen = self._seen
        seen[:] = grid
        seen[self._hidden_by_ahead[max(self._early_steps() - 1, 0)][0]] = MASK
        settings = self.settings
        return (seen.tobytes(), meta.tobytes(), tuple(sorted(sounding.items())),
                self._early_steps(), settings.temperature, settings.rule_weight,
                self._noise_serial if settings.temperature > 0 else -1, timed)

    def _answer(self, rows: np.ndarray, metas: np.ndarray, sounding: dict[int, int],
                noise: list[np.ndarray] | None, timed: bool = False) -> Iterator[None]:
        """Decide bass, alto and tenor at column ``past`` of each grid in ``rows`` ([n, 4,
        window], written in place) with metadata ``metas``; one batched network call per
        voice, yielding after each so a waiting note is not held up longer than that.
        ``timed``: 16ths under a held melody note (drawn at MOTION_TEMPERATURE)."""
        n = rows.shape[0]
        centre = self.past
        inputs, meta_in = self._inputs[:n], self._meta_in[:n]
        meta_in[:] = metas[:, :, self.meta_columns]
        fermata = metas[:, :, META_FIELDS.index("fermata")]
        cadences = (fermata[:, centre] != 0) & (fermata[:, centre - 1] == 0)
        # A melody sent D steps early is known D-1 steps past the step being decided (the
        # notes for step now+D arrive during it, after its decision).
        hidden = self._hidden_by_ahead[max(self._early_steps() - 1, 0)]
        for index, voice in enumerate(LIVE_DECISION_ORDER):
            temperature = self.settings.temperature
            if timed and voice in MOTION_VOICES and temperature > 0:
                temperature = max(temperature, MOTION_TEMPERATURE)
            # The lower voices' present and future are hidden except those decided.
            live_inputs(rows, hidden[index], out=inputs)
            logits = self.models[voice].run({"tokens": inputs, "meta": meta_in})[0]
            for row in range(n):
                self._cadence[centre] = cadences[row]
                rows[row, voice, centre] = self._choose(
                    voice, logits[row], rows[row], sounding,
                    None if noise is None else noise[index], temperature)
            yield

    def _take_noise(self) -> list[np.ndarray] | None:
        """The Gumbel noise of the next decision (None at temperature 0, which draws none)."""
        if self.settings.temperature <= 0:
            return None
        noise = self._peek_noise()
        self._noise.popleft()
        self._noise_serial += 1
        return noise

    def _peek_noise(self) -> list[np.ndarray] | None:
        """The next decision's noise, drawn now if not yet: one vector per voice in decision
        order, from the one random stream, so drawing ahead changes nothing."""
        if self.settings.temperature <= 0:
            return None
        if not self._noise:
            self._noise.append([gumbel_noise(self._rng, self._token_pitch[v].size)
                                for v in LIVE_DECISION_ORDER])
        return self._noise[0]

    def _choose(self, voice: int, logits: np.ndarray, grid: np.ndarray,
                sounding: dict[int, int], gumbel: np.ndarray | None,
                temperature: float) -> int:
        """The token ``voice`` sings: drawn from softmax(scores / temperature) with the
        decision's Gumbel noise, or the likeliest one without noise."""
        scores = self._scores(voice, logits, grid, sounding)
        if gumbel is None:
            return int(np.argmax(scores))
        return int(np.argmax(scores / temperature + gumbel))

    def _scores(self, voice: int, logits: np.ndarray, grid: np.ndarray,
                sounding: dict[int, int]) -> np.ndarray:
        """What a decision draws from (float64 [vocab]): the calibrated log-probabilities,
        -inf where a token is not allowed, less the rule charges; the answer is drawn from
        softmax(scores / temperature)."""
        scores = log_softmax(logits.astype(np.float64) / self._calibration[voice])
        scores[~self._allowed[voice]] = -np.inf
        if voice not in sounding:
            scores[HOLD] = -np.inf  # nothing to hold: rest or a new note
        soprano = self._soprano_pitch(grid)
        if soprano >= 0:  # under a melody note every voice sings, and stays below it
            scores[REST] = -np.inf
            scores[self._token_pitch[voice] > soprano] = -np.inf
            if sounding.get(voice, -1) > soprano:
                scores[HOLD] = -np.inf
        if self.settings.rule_weight > 0:
            scores -= self.settings.rule_weight * self._violations(voice, grid)
        return scores

    def _soprano_pitch(self, grid: np.ndarray | None = None) -> int:
        """MIDI pitch the melody sounds at the current step, -1 if it rests."""
        grid = self.grid if grid is None else grid
        for column in range(self.past, -1, -1):
            token = grid[0, column]
            if token != HOLD:
                return self.vocabularies[0].pitch_of_token(int(token))  # -1: a rest
        return -1

    def _violations(self, voice: int, grid: np.ndarray) -> np.ndarray:
        """Rule breaks of each candidate against the soprano and the voices decided so
        far at this step (each pair is checked when its later voice decides)."""
        column = self.past
        raw, sounding = _grid_pitches(grid, column + 1, self._lows, self._hidden[voice])
        candidate = self._candidates[voice]
        candidate[0, HOLD] = sounding[voice, column - 1]
        return candidate_violations(raw, sounding, voice, self._column, candidate,
                                    self._is_hold[voice], self._piece, self._rule_weights)[0]

    # ----------------------------------------------------------------- answers ahead
    @property
    def speculating(self) -> bool:
        """True while answers ahead remain to be computed: call :meth:`speculate`."""
        return (self._prepared and self.settings.speculation > 0
                and (self._work is not None or self._work_due)
                and self._spent_s < self._speculation_allowance()
                and len(self._table) < TABLE_LIMIT)

    def _restart_ahead(self) -> None:
        """Start answering ahead over: the state it assumed has changed. The suspended work
        is set aside whole, freed by the next :meth:`speculate`."""
        if self._work is not None:
            self._set_aside(self._work)
        self._work, self._work_due = None, True

    def _retire_table(self) -> None:
        """Empty the table of answers ahead; its entries are freed by the next
        :meth:`speculate`."""
        if self._table:
            self._set_aside(self._table)
            self._table = {}

    def _set_aside(self, garbage: object) -> None:
        if len(self._retired) >= RETIRED_LIMIT:  # no time ahead for a while: free them now
            self._retired.clear()
        self._retired.append(garbage)

    def _speculation_allowance(self) -> float:
        """CPU seconds of answering ahead allowed this step: a share of the expected time
        between notes (clock mode decides one answer a step: a fixed small allowance)."""
        if self.clock_running:
            return 0.005
        expected_s = _median(self.recent_gaps) if self.recent_gaps else 0.5
        if self.timed_due_s is not None:  # the next decision comes within a 16th
            expected_s = min(expected_s, self._sixteenth_s())
        return min(SPECULATION_SHARE * expected_s, SPECULATION_MAX_S)

    def speculate(self) -> None:
        """Compute a little of the answers ahead: at most one batched network call
        (about 0.1-0.3 ms here). Call it while no message waits; any message restarts it."""
        started = time.thread_time()  # CPU time: waiting for the CPU costs nothing
        self._retired.clear()
        if self._work is None:
            self._work_due = False
            self._work = self._speculation()
        try:
            next(self._work)
        except StopIteration:
            self._work = None
        self._spent_s += time.thread_time() - started

    def _speculation(self) -> Iterator[None]:
        """Answer the likeliest next decisions, a batch at a time, into the table."""
        noise = self._peek_noise()
        # (sounding, rows, timed): the next timed 16th first, then the likeliest notes
        if self.clock_running:
            groups = [(*self._next_step_alone(), False)]
        else:
            if self._timed_stale:
                self._schedule_timed()
            groups = ([(*self._next_step_alone(), True)] if self.timed_due_s is not None
                      else [])
            groups.append((*self._likely_next_notes(min(
                self.settings.speculation, LIVE_PARAMETERS["speculation"].high)), False))
        yield  # ranking the guesses took a little: let a waiting note in
        for sounding, rows, timed in groups:
            rows = iter(rows)
            while chunk := list(itertools.islice(rows, SPECULATION_BATCH)):
                keys = {self._decision_key(grid, meta, sounding, timed): (grid, meta)
                        for grid, meta in chunk}
                todo = [(key, grid, meta) for key, (grid, meta) in keys.items()
                        if key not in self._table]
                yield  # keys cost a few microseconds each: let a waiting note in
                if not todo:
                    continue
                grids = np.stack([grid for _, grid, _ in todo])
                yield from self._answer(grids, np.stack([meta for _, _, meta in todo]),
                                        sounding, noise, timed)
                for (key, _, _), grid in zip(todo, grids, strict=True):
                    self._table[key] = tuple(int(grid[v, self.past])
                                             for v in LIVE_DECISION_ORDER)
                self.stats.speculated += len(todo)

    def _next_step_alone(self) -> tuple[dict[int, int], list[tuple[np.ndarray, np.ndarray]]]:
        """The next 16th as it will be if no note arrives before it (clock mode's next
        step, event mode's next timed step), and the voices sounding then."""
        holds = [self.melody_note is not None if v == 0 else v in self.sounding
                 for v in range(4)]
        grid, meta = self.grid.copy(), self.meta.copy()
        self._shift(grid, meta, self.step + 1, 1, holds, self.fermata)
        return dict(self.sounding), [(grid, meta)]

    def _likely_next_notes(self, limit: int
                           ) -> tuple[dict[int, int], Iterator[tuple[np.ndarray, np.ndarray]]]:
        """Event mode: up to ``limit`` (grid, meta) for the likeliest next melody notes -
        pitch, steps since this one and pedal - as the step will be when one arrives, and
        the voices sounding then (the same for every guess: under a held note, or after a
        release while moving under, what sounds; otherwise after a release, nothing)."""
        vocab = self.vocabularies[0]
        down_p = self._pedal_down_share()
        pedal_p = {True: down_p, False: 1 - down_p}
        # One way the next note may come: its probability, the voices holding into the
        # new steps (the melody's always do: a note-on continues it up to the new step),
        # {steps: probability} and {pitch: probability}.
        scenarios: list[tuple[float, list[bool], dict[int, float], dict[int, float]]] = []
        if self.last_onset_s is None:  # the first note: one step, nothing sounding
            pitches = {p: 1.0 / (vocab.high - vocab.low + 1)
                       for p in range(vocab.low, vocab.high + 1)}
            scenarios.append((1.0, [True, False, False, False], {1: 1.0}, pitches))
            return {}, self._rows(scenarios, pedal_p, limit)
        last = self._soprano_pitch()
        if last < 0:
            return {}, iter(())
        # The next interval: Bach's sopranos' (worth four notes) and this player's own.
        intervals = collections.Counter({i: 4 * p for i, p in MELODY_INTERVAL_PRIOR.items()})
        intervals.update(self.recent_intervals)
        total = sum(intervals.values())
        pitches = {last + interval: weight / total for interval, weight in intervals.items()
                   if vocab.low <= last + interval <= vocab.high}
        silent = [True, False, False, False]  # after a pause nothing Kantor played holds
        longest = 2 * STEPS_PER_QUARTER
        if self.pause_since_s is not None:
            # The legato gap has passed and the voices have ended: the next note comes
            # after a pause at least this long since the last note.
            shortest_s = self.pause_since_s + LEGATO_GAP_S - self.last_onset_s
            steps_p = self._steps_likely(False, at_least_s=shortest_s)
            steps_p[longest] += 1.0  # a breath: as likely as all the rest together
            scenarios.append((1.0, silent, self._after_timed(steps_p), pitches))
            return {}, self._rows(scenarios, pedal_p, limit)
        arrival = (max(set(self.recent_arrivals), key=list(self.recent_arrivals).count)
                   if self.recent_arrivals else "legato")
        over_held = arrival == "held" and self.melody_note is not None
        if over_held:  # what sounds now sounds on under the new note
            holds = [True] + [v in self.sounding for v in (1, 2, 3)]
            sounding = dict(self.sounding)
        elif arrival == "detached":
            holds, sounding = silent, {}
        elif self.moving_under:  # legato: the voices sound on through the gap
            holds = [True] + [v in self.sounding for v in (1, 2, 3)]
            sounding = dict(self.sounding)
        else:  # legato: the release ends the chord; its voices hold on the grid up to it
            kept = (self.sounding if self.melody_note is not None
                    else self.released[1] if self.released is not None else ())
            holds, sounding = [True] + [v in kept for v in (1, 2, 3)], {}
        if not over_held:  # ... or after a pause (a breath, a new phrase): the longest step
            scenarios.append((PAUSE_PRIOR, silent,
                              self._after_timed(collections.Counter({longest: 1.0})), pitches))
        # While 16ths are decided by time, a note comes before the next one or the table
        # is answered again after it.
        steps_p = (collections.Counter({1: 1.0}) if self.timed_due_s is not None
                   else self._after_timed(self._steps_likely(arrival != "detached")))
        scenarios.append((1.0 - (PAUSE_PRIOR if scenarios else 0.0), holds, steps_p, pitches))
        return sounding, self._rows(scenarios, pedal_p, limit)

    def _after_timed(self, steps_p: collections.Counter[int]) -> collections.Counter[int]:
        """``steps_p`` ({steps since the last note: weight}) as steps still to advance,
        less those already decided by time under it (one at least)."""
        done = self.timed_steps
        if not done:
            return steps_p
        left = collections.Counter({s - done: w for s, w in steps_p.items() if s > done})
        return left or collections.Counter({1: 1.0})

    def _steps_likely(self, was_held: bool, at_least_s: float = 0.0
                      ) -> collections.Counter[int]:
        """{steps: weight} the next note's gap may count (as :meth:`_steps_for` will count
        it): one of the recent gaps, or a note value of the prior at the current tempo
        (worth four notes), of those at least ``at_least_s`` long; any step count from
        that gap's on at ``STEPS_FLOOR``."""
        quarter_s = self._set_quarter_s() or self.quarter_s or DEFAULT_QUARTER_S
        gaps: collections.Counter[float] = collections.Counter()
        for gap in self.recent_gaps:
            gaps[gap] += 1.0
        for quarters, share in DURATION_PRIOR.items():
            gaps[quarters * quarter_s] += 4 * share
        gaps = collections.Counter({g: w for g, w in gaps.items() if g >= at_least_s})
        total = sum(gaps.values())
        steps_p: collections.Counter[int] = collections.Counter()
        for gap, weight in gaps.items():
            steps_p[self._steps_for(gap, was_held)] += weight / total
        # Any step count stays possible (a first gap sets the tempo, and a gap under
        # 0.15 s counts fewer steps than a quarter): the likely ones come first, these last.
        fewest = self._steps_for(at_least_s, was_held) if at_least_s > 0 else 1
        for steps in range(fewest, 2 * STEPS_PER_QUARTER + 1):
            steps_p[steps] += STEPS_FLOOR
        return steps_p

    def _pedal_down_share(self) -> float:
        """How likely the pedal is down at the next note: lifted after a fermata note,
        else Bach's share of fermatas blended with this player's recent use."""
        if self.fermata:
            return 0.1
        return ((PEDAL_PRIOR_NOTES * PEDAL_DOWN_PRIOR + sum(self.recent_pedal))
                / (PEDAL_PRIOR_NOTES + len(self.recent_pedal)))

    def _rows(self, scenarios, pedal_p: dict[bool, float], limit: int
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(grid, meta) of the ``limit`` likeliest (scenario, steps, pedal, pitch), ranked
        now and built as they are taken."""
        guesses = sorted(((p_way * p_steps * p_pedal * p_pitch, way, steps, pedal, pitch)
                          for way, (p_way, _, steps_p, pitches) in enumerate(scenarios)
                          for steps, p_steps in steps_p.items()
                          for pedal, p_pedal in pedal_p.items()
                          for pitch, p_pitch in pitches.items()), reverse=True)[:limit]
        return self._built(scenarios, guesses)

    def _built(self, scenarios, guesses) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The grid and metadata of each guess of :meth:`_rows`, one at a time."""
        bases: dict[tuple[int, int, bool], tuple[np.ndarray, np.ndarray]] = {}
        for _, way, steps, pedal, pitch in guesses:
            if (way, steps, pedal) not in bases:
                grid, meta = self.grid.copy(), self.meta.copy()
                self._shift(grid, meta, self.step + steps, steps, scenarios[way][1], pedal)
                bases[way, steps, pedal] = grid, meta
            grid, meta = bases[way, steps, pedal]
            grid = grid.copy()
            self._set_melody(self.past, pitch, grid)
            yield grid, meta

    # ----------------------------------------------------------------- output
    def _thru(self, token: int, out: list[list[int]]) -> None:
        channel = self.settings.channels[0]
        if token >= FIRST_PITCH_TOKEN:
            pitch = self.vocabularies[0].pitch_of_token(token)
            if self.thru_note is not None:
                out.append([0x80 | channel, self.thru_note, 0])
            out.append([0x90 | channel, pitch, self.melody_velocity])
            self.thru_note = pitch
            self.stats.notes_out += 1
        elif token == REST and self.thru_note is not None:
            out.append([0x80 | channel, self.thru_note, 0])
            self.thru_note = None

    def _emit(self, voice: int, token: int, out: list[list[int]]) -> None:
        if token == HOLD:
            return
        self._release(voice, out)
        if token >= FIRST_PITCH_TOKEN:
            pitch = self.vocabularies[voice].pitch_of_token(token)
            velocity = min(max(round(self.melody_velocity * self.settings.velocity_scale), 1),
                           127)
            out.append([0x90 | self.settings.channels[voice], pitch, velocity])
            self.sounding[voice] = pitch
            self.stats.notes_out += 1

    def _release(self, voice: int, out: list[list[int]]) -> None:
        pitch = self.sounding.pop(voice, None)
        if pitch is not None:
            out.append([0x80 | self.settings.channels[voice], pitch, 0])

    def release_all(self, out: list[list[int]] | None = None) -> list[list[int]]:
        """Note-offs for every note Kantor is sounding (panic, stop, shutdown)."""
        out = [] if out is None else out
        self._restart_ahead()
        self.pause_due_s = self.timed_due_s = None
        self._timed_stale = False
        for voice in list(self.sounding):
            self._release(voice, out)
        self._end_echo(out)
        return out

    def _end_echo(self, out: list[list[int]]) -> None:
        """The note-off of the melody's echo, if one sounds."""
        if self.thru_note is not None:
            out.append([0x80 | self.settings.channels[0], self.thru_note, 0])
            self.thru_note = None

    @property
    def sounding_notes(self) -> list[tuple[int, int]]:
        """(channel, pitch) of every note Kantor has on now."""
        notes = [(self.settings.channels[v], p) for v, p in self.sounding.items()]
        if self.thru_note is not None:
            notes.append((self.settings.channels[0], self.thru_note))
        return notes


def _likeliest_quarter(gaps_s: list[float]) -> float:
    """The quarter note (seconds) under which ``gaps_s`` are the likeliest run of Bach's
    soprano note values (DURATION_PRIOR; a gap that is none of them, within 15%, counts
    as a rare one), each gap tried as a quarter; then the mean quarter those values
    give (a player's gaps are not exact)."""
    def values(quarter_s: float) -> list[tuple[float, bool]]:
        chosen = []
        for gap in gaps_s:
            value = min(DURATION_PRIOR, key=lambda q: abs(gap / quarter_s - q))
            chosen.append((value, abs(gap / quarter_s - value) <= 0.15 * value))
        return chosen

    def log_likelihood(quarter_s: float) -> float:
        return sum(math.log(DURATION_PRIOR[value] if near else STEPS_FLOOR)
                   for value, near in values(quarter_s))

    best = max(gaps_s, key=log_likelihood)
    heard = [gap / value for gap, (value, near) in zip(gaps_s, values(best), strict=True)
             if near]
    return _followed(sum(heard) / len(heard))


def _followed(quarter_s: float) -> float:
    """A quarter note's length (seconds) within the tempi followed."""
    return min(max(quarter_s, QUARTER_RANGE_S[0]), QUARTER_RANGE_S[1])


def _median(values: Iterable[float]) -> float:
    """The median of a few gaps (statistics.median's result, at a third of its cost on
    the note-on path)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


@numba.njit(cache=True, nogil=True)
def _grid_pitches(grid, n_columns, lows, hidden):
    """Raw and sounding pitches (``int64 [4, n]``) of the grid's first ``n_columns``, with
    the ``hidden`` voices silent in the last column and padding read as rests."""
    n_voices = grid.shape[0]
    raw = np.empty((n_voices, n_columns), dtype=np.int64)
    sounding = np.empty((n_voices, n_columns), dtype=np.int64)
    for v in range(n_voices):
        current = -1
        for c in range(n_columns):
            token = grid[v, c]
            if c == n_columns - 1 and hidden[v]:
                token = REST
            if token == HOLD:
                raw[v, c] = HOLD_PITCH
            elif token >= FIRST_PITCH_TOKEN:
                raw[v, c] = lows[v] + token - FIRST_PITCH_TOKEN
                current = raw[v, c]
            else:
                raw[v, c] = REST_PITCH
                current = -1
            sounding[v, c] = current
    return raw, sounding
