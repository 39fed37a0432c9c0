"""A musicologist's reading of a four-part setting: the textbook features that tell Bach.

Everything here is measured on raw pitches ``int16 [4, T]`` (the 16th grid of
:mod:`kantor.engine.chorale.encoding`) with the piece's metadata and its :class:`Key`:

* texture, per lower voice: note values (16th ... longer than a half), repeated notes,
  steps and leaps, passing notes and suspensions per beat;
* harmony on every quarter beat where all four voices sound: chord kind (complete or
  incomplete triad, seventh chord, other), quality, inversion, scale degree of the root,
  doublings, the leading tone in minor, sevenths and whether they resolve down by step;
* cadences at fermatas (root motion into the fermata chord, its degree, root position)
  and the final chord;
* the chord progression, as symbols for an n-gram model of Bach's progressions
  (:class:`ChordBigram`).

Chord roots come from music21's analysis (:meth:`music21.chord.Chord.root`), not from the
harmoniser's own code, so the yardstick does not share the thing it measures. Each
feature is a (count, denominator) pair so settings can be pooled or compared one by one.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from kantor.engine.chorale.encoding import HOLD_PITCH, STEPS_PER_QUARTER, sounding_pitches
from kantor.engine.chorale.keys import Key
from kantor.engine.chorale.rules import RATE_DENOMINATORS, voice_leading_report

LOWER_VOICES = {1: "alto", 2: "tenor", 3: "bass"}
NOTE_VALUES = (("16th", 1, 1), ("eighth", 2, 2), ("dotted_eighth", 3, 3), ("quarter", 4, 4),
               ("half", 5, 8), ("longer", 9, 1 << 30))  # (name, shortest, longest) in 16ths
SEVENTH_KINDS = ("dom7", "min7", "hdim7", "dim7", "maj7", "other7")
TRIAD_KINDS = ("maj", "min", "dim", "aug")
KINDS = (*TRIAD_KINDS, *SEVENTH_KINDS, "other")
DEGREE_NAMES = ("I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII")

Feature = tuple[float, float]  # (count, denominator)


@dataclass(frozen=True)
class ChordInfo:
    """One sonority read as a chord: ``root`` pitch class (-1 if none), ``kind`` (one of
    :data:`KINDS`), ``inversion`` (0 root position ... 3; -1 for ``other``), the pitch
    class of its seventh (-1 if none), whether every tone of the kind is present."""

    root: int
    kind: str
    inversion: int
    seventh: int
    complete: bool


_TRIAD_SHAPES = {(4, 7): "maj", (3, 7): "min", (3, 6): "dim", (4, 8): "aug"}
_SEVENTH_SHAPES = {(4, 10): "dom7", (3, 10): "min7", (3, 6, 10): "hdim7", (3, 6, 9): "dim7",
                   (4, 11): "maj7", (4, 7, 10): "dom7", (3, 7, 10): "min7",
                   (4, 7, 11): "maj7"}


@functools.cache
def analyse_chord(pitch_classes: tuple[int, ...], bass: int) -> ChordInfo:
    """Read the pitch classes of a sonority (any order) over ``bass`` as a chord."""
    from music21 import chord

    classes = sorted(set(pitch_classes))
    if len(classes) < 2:
        return ChordInfo(-1, "other", -1, -1, False)
    pitches = [48 + bass] + [60 + pc for pc in classes if pc != bass]
    root = chord.Chord(pitches).root().pitchClass
    intervals = {(pc - root) % 12 for pc in classes}
    third = 4 if 4 in intervals else 3 if 3 in intervals else None
    fifth = next((f for f in (7, 6, 8) if f in intervals), None)
    seventh = next((s for s in (10, 11) if s in intervals), None)
    if seventh is None and third == 3 and fifth == 6 and 9 in intervals:
        seventh = 9
    allowed = {0, third, fifth, seventh} - {None}
    if third is None or not intervals <= allowed:
        return ChordInfo(root, "other", -1, -1, False)
    bass_interval = (bass - root) % 12
    inversion = {0: 0, third: 1, fifth: 2, seventh: 3}.get(bass_interval, -1)
    if seventh is not None:
        shape = tuple(i for i in (third, fifth, seventh) if i is not None)
        kind = _SEVENTH_SHAPES.get(shape) or _SEVENTH_SHAPES.get((third, seventh), "other7")
        return ChordInfo(root, kind, inversion, (root + seventh) % 12, fifth is not None)
    kind = _TRIAD_SHAPES.get((third, fifth)) if fifth is not None else (
        "maj" if third == 4 else "min")
    return ChordInfo(root, kind, inversion, -1, fifth is not None)


# --------------------------------------------------------------------------- helpers
def _notes(row: np.ndarray) -> list[tuple[int, int, int]]:
    """(onset step, length in steps, MIDI pitch or -1 for a rest) of one voice."""
    events = np.flatnonzero(row != HOLD_PITCH)
    ends = np.append(events[1:], row.size)
    return [(int(s), int(e - s), int(row[s])) for s, e in zip(events, ends, strict=True)]


def _next_onset_pitch(row: np.ndarray, step: int) -> int:
    """Pitch of the voice's next event after ``step`` (-1 for a rest or the end)."""
    later = np.flatnonzero(row[step + 1:] != HOLD_PITCH)
    return int(row[step + 1 + later[0]]) if later.size else -1


def _next_different_pitch(row: np.ndarray, step: int, pitch: int) -> int:
    """The voice's next pitch after ``step`` that is not ``pitch`` struck again (-1 for
    a rest or the end): where a repeated seventh finally goes."""
    for later in row[step + 1:]:
        if later in (HOLD_PITCH, pitch):
            continue
        return int(later)
    return -1


def beat_steps(meta: np.ndarray, sounding: np.ndarray) -> np.ndarray:
    """Quarter-beat steps where all four voices sound."""
    on_beat = np.flatnonzero(meta[:, 0] == 0)
    return on_beat[(sounding[:, on_beat] >= 0).all(axis=0)]


def chord_at(sounding: np.ndarray, step: int) -> ChordInfo:
    """The chord of the four voices sounding at ``step`` (all must sound)."""
    column = sounding[:, step]
    return analyse_chord(tuple(sorted({int(p) % 12 for p in column})), int(column[3]) % 12)


def _dissonant(upper: int, lower: int, against_bass: bool) -> bool:
    interval = (upper - lower) % 12
    return interval in (1, 2, 10, 11) or (against_bass and interval == 5)


# --------------------------------------------------------------------------- features
def setting_features(raw: np.ndarray, meta: np.ndarray, key: Key) -> dict[str, Feature]:
    """Every feature of one setting as (count, denominator)."""
    raw = np.asarray(raw)
    sounding = sounding_pitches(raw).astype(np.int64)
    beats = beat_steps(meta, sounding)
    n_beats = float(max(int((meta[:, 0] == 0).sum()), 1))
    features: dict[str, Feature] = {}

    for v, name in LOWER_VOICES.items():
        notes = [n for n in _notes(raw[v]) if n[2] >= 0]
        for value, shortest, longest in NOTE_VALUES:
            count = sum(shortest <= length <= longest for _, length, _ in notes)
            features[f"{name}_{value}"] = (count, len(notes))
        intervals = [b[2] - a[2] for a, b in itertools.pairwise(notes)
                     if b[0] == a[0] + a[1]]  # consecutive, no rest between
        sizes = np.abs(np.asarray(intervals, dtype=np.int64))
        features[f"{name}_repeated"] = (int((sizes == 0).sum()), sizes.size)
        features[f"{name}_step"] = (int(((sizes >= 1) & (sizes <= 2)).sum()), sizes.size)
        features[f"{name}_leap"] = (int((sizes >= 3).sum()), sizes.size)
        features[f"{name}_big_leap"] = (int((sizes >= 8).sum()), sizes.size)
        features[f"{name}_notes_per_beat"] = (len(notes), n_beats)
        passing = 0
        for a, b, c in zip(notes, notes[1:], notes[2:], strict=False):
            if meta[b[0], 0] == 0 or b[0] != a[0] + a[1] or c[0] != b[0] + b[1]:
                continue
            first, second = b[2] - a[2], c[2] - b[2]
            if 1 <= abs(first) <= 2 and 1 <= abs(second) <= 2 and first * second > 0:
                passing += 1
        features[f"{name}_passing_per_beat"] = (passing, n_beats)
        features[f"{name}_suspensions_per_beat"] = (
            _suspensions(raw, sounding, v, np.flatnonzero(meta[:, 0] == 0)), n_beats)

    chords = [chord_at(sounding, t) for t in beats]
    n_chords = len(chords)
    kinds = Counter(c.kind for c in chords)
    for kind in KINDS:
        features[f"kind_{kind}"] = (kinds[kind], n_chords)
    triads = [c for c in chords if c.kind in TRIAD_KINDS]
    sevenths = [c for c in chords if c.kind in SEVENTH_KINDS]
    features["complete_triads"] = (sum(c.complete for c in triads), n_chords)
    features["incomplete_triads"] = (sum(not c.complete for c in triads), n_chords)
    features["seventh_chords"] = (len(sevenths), n_chords)
    features["other_sonorities"] = (kinds["other"], n_chords)
    rooted = [c for c in chords if c.inversion >= 0]
    for inversion, name in enumerate(("root_position", "first_inversion", "second_inversion",
                                      "third_inversion")):
        features[name] = (sum(c.inversion == inversion for c in rooted), len(rooted))
    degrees = Counter((c.root - key.tonic) % 12 for c in chords if c.kind != "other")
    for degree, name in enumerate(DEGREE_NAMES):
        features[f"degree_{name}"] = (degrees[degree], n_chords)
    doubled = Counter()
    complete_four = 0
    for t, c in zip(beats, chords, strict=True):
        if c.kind in TRIAD_KINDS and c.complete:
            complete_four += 1
            classes = Counter(int(p) % 12 for p in sounding[:, t])
            double = max(classes, key=classes.get)
            doubled[{0: "root", 3: "third", 4: "third", 6: "fifth", 7: "fifth", 8: "fifth"}.get(
                (double - c.root) % 12, "fifth")] += 1
    for what in ("root", "third", "fifth"):
        features[f"doubled_{what}"] = (doubled[what], complete_four)

    resolved = total = 0
    for t, c in zip(beats, chords, strict=True):
        if c.seventh < 0:
            continue
        for v in range(4):
            if int(sounding[v, t]) % 12 != c.seventh:
                continue
            following = _next_different_pitch(raw[v], t, int(sounding[v, t]))
            if following < 0:
                continue
            total += 1
            resolved += int(sounding[v, t]) - following in (1, 2)
    features["sevenths_resolved"] = (resolved, total)
    leading = (key.tonic + 11) % 12
    with_leading = sum(bool((sounding[:, t] % 12 == leading).any()) for t in beats)
    features["leading_tone_in_minor"] = (with_leading, n_chords) if key.minor else (0, 0)
    lt_total = lt_up = 0
    for t, c in zip(beats, chords, strict=True):
        if c.root != (key.tonic + 7) % 12 or c.kind not in ("maj", "dom7"):
            continue
        for v in range(3):  # the bass's leading tone is free to leap
            if int(sounding[v, t]) % 12 == leading:
                following = _next_onset_pitch(raw[v], t)
                if following >= 0:
                    lt_total += 1
                    lt_up += following - int(sounding[v, t]) == 1
    features["leading_tone_resolves_up"] = (lt_up, lt_total)

    features.update(_cadence_features(sounding, meta, beats, chords, key))
    counts = voice_leading_report(raw, meta)
    for rule, denominator in RATE_DENOMINATORS.items():
        if rule != "complete_chords":
            features[rule] = (counts[rule], counts[denominator])
    features["sonority_changes_per_beat"] = (counts["chord_changes"], n_beats)
    return features


def _suspensions(raw: np.ndarray, sounding: np.ndarray, voice: int,
                 beats: np.ndarray) -> int:
    """Beats where ``voice`` holds a note over from before the beat, dissonant against
    another voice, and then steps down to its next note."""
    count = 0
    for t in beats:
        if t == 0 or raw[voice, t] != HOLD_PITCH or sounding[voice, t] < 0:
            continue
        pitch = int(sounding[voice, t])
        dissonant = False
        for u in range(4):
            other = int(sounding[u, t])
            if u == voice or other < 0:
                continue
            upper, lower = (pitch, other) if voice < u else (other, pitch)
            dissonant |= _dissonant(upper, lower, against_bass=max(voice, u) == 3)
        following = _next_onset_pitch(raw[voice], t)
        if dissonant and following >= 0 and pitch - following in (1, 2):
            count += 1
    return count


def _cadence_features(sounding: np.ndarray, meta: np.ndarray, beats: np.ndarray,
                      chords: list[ChordInfo], key: Key) -> dict[str, Feature]:
    """Root motion into, degree and position of the chord at each fermata; the final."""
    fermata = meta[:, 2].astype(bool)
    starts = np.flatnonzero(fermata & ~np.concatenate([[False], fermata[:-1]]))
    by_step = dict(zip(beats.tolist(), chords, strict=True))
    motions = Counter()
    degrees = Counter()
    root_position = n = 0
    for start in starts:
        at = [t for t in beats if start <= t < start + STEPS_PER_QUARTER]
        before = [t for t in beats if t < start]
        if not at or not before:
            continue
        arrival = by_step[at[0]]
        if arrival.kind == "other":
            continue
        # The approach chord: the last beat chord before the fermata with another root.
        approach = next((by_step[t] for t in reversed(before)
                         if by_step[t].kind != "other" and by_step[t].root != arrival.root),
                        None)
        n += 1
        root_position += arrival.inversion == 0
        degree = (arrival.root - key.tonic) % 12
        degrees[{0: "I", 5: "IV", 7: "V"}.get(degree, "other")] += 1
        if approach is not None:
            fall = (approach.root - arrival.root) % 12
            motions[{7: "fifth_down", 5: "fifth_up", 1: "step", 2: "step", 10: "step",
                     11: "step"}.get(fall, "other")] += 1
    out: dict[str, Feature] = {f"fermata_{k}": (motions[k], n)
                               for k in ("fifth_down", "fifth_up", "step", "other")}
    out |= {f"fermata_on_{k}": (degrees[k], n) for k in ("I", "IV", "V", "other")}
    out["fermata_root_position"] = (root_position, n)
    final = chord_at(sounding, sounding.shape[1] - 1) if (sounding[:, -1] >= 0).all() else (
        ChordInfo(-1, "other", -1, -1, False))
    out["final_on_tonic"] = (float(final.root == key.tonic), 1.0)
    out["final_root_position"] = (float(final.inversion == 0), 1.0)
    out["final_complete_triad"] = (float(final.kind in TRIAD_KINDS and final.complete), 1.0)
    out["final_major"] = (float(final.kind == "maj"), 1.0)
    return out


# --------------------------------------------------------------------------- progressions
def chord_symbols(raw: np.ndarray, meta: np.ndarray, key: Key) -> list[tuple]:
    """The progression on quarter beats as key-relative symbols: (mode, degree of the
    root, kind, inversion, bass motion -1/0/+1 from the beat before)."""
    sounding = sounding_pitches(raw).astype(np.int64)
    symbols = []
    previous_bass = None
    for t in beat_steps(meta, sounding):
        info = chord_at(sounding, t)
        bass = int(sounding[3, t])
        motion = 0 if previous_bass is None else int(np.sign(bass - previous_bass))
        previous_bass = bass
        degree = -1 if info.kind == "other" else (info.root - key.tonic) % 12
        symbols.append((key.mode, degree, info.kind, info.inversion, motion))
    return symbols


class ChordBigram:
    """A bigram model of chord symbols with Witten-Bell interpolation towards an add-one
    unigram, fitted on Bach's training chorales: how Bach-like a progression is, one
    chord given the one before, in nats."""

    def __init__(self) -> None:
        self.unigram: Counter = Counter()
        self.bigram: dict[tuple, Counter] = {}
        self.total = 0

    def fit(self, sequences: list[list[tuple]]) -> ChordBigram:
        for sequence in sequences:
            for previous, current in zip(["<s>", *sequence], sequence, strict=False):
                self.unigram[current] += 1
                self.bigram.setdefault(previous, Counter())[current] += 1
                self.total += 1
        return self

    def _unigram(self, symbol: tuple) -> float:
        vocabulary = len(self.unigram) + 1  # one slot for every unseen symbol
        return (self.unigram[symbol] + 1) / (self.total + vocabulary)

    def log_prob(self, previous, symbol: tuple) -> float:
        following = self.bigram.get(previous, Counter())
        seen, kinds = sum(following.values()), len(following)
        lower = self._unigram(symbol)
        if seen == 0:
            return math.log(lower)
        return math.log((following[symbol] + kinds * lower) / (seen + kinds))

    def score(self, sequence: list[tuple]) -> Feature:
        """(sum of log-probabilities, number of chords) of a progression."""
        total = sum(self.log_prob(p, s) for p, s in zip(["<s>", *sequence], sequence,
                                                         strict=False))
        return total, float(len(sequence))
