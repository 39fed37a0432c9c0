"""Voice-leading rules of four-part chorale writing, defined once.

The evaluation yardstick (:func:`voice_leading_report`) counts violations in a finished
harmonisation; the sampler (:func:`candidate_violations`) asks the same questions of
every token a voice could take at a step, so it can steer away from them. Each rule is a
small named function on sounding pitches (MIDI numbers, -1 where a voice is silent).

Terms: a *sonority* is a step where the sounding pitches differ from the step before
(or the first step); a *chord change* is the move from one sonority to the next. A voice
*moves* at a chord change when its pitch changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    TEXTBOOK_RANGES,
    sounding_pitches,
)

PERFECT_FIFTH, OCTAVE = 7, 0
MAX_UPPER_SPACING = 12  # semitones between soprano-alto and alto-tenor
# Pitch-class sets (relative to the root) that count as complete chords.
_TRIADS = ({0, 4, 7}, {0, 3, 7}, {0, 3, 6}, {0, 4, 8})
_SEVENTHS = ({0, 4, 7, 10}, {0, 3, 7, 10}, {0, 3, 6, 10}, {0, 3, 6, 9}, {0, 4, 7, 11})

# Each rule is a Numba ufunc: it broadcasts over numpy arrays (the yardstick) and is called
# on scalars inside the compiled candidate kernel (the samplers), so there is one
# definition of each. Pitches are MIDI numbers, -1 where a voice is silent.
_I8 = "int64"


@numba.vectorize([f"boolean({_I8},{_I8},{_I8},{_I8},{_I8})"], cache=True)
def consecutive_perfect(prev_a, prev_b, cur_a, cur_b, interval):
    """Both voices move and stand a perfect ``interval`` (7 or 0 semitones, compound
    allowed) apart before and after: parallel or contrary fifths/octaves."""
    if prev_a < 0 or prev_b < 0 or cur_a < 0 or cur_b < 0:
        return False
    if prev_a == cur_a or prev_b == cur_b:
        return False
    return abs(prev_a - prev_b) % 12 == interval and abs(cur_a - cur_b) % 12 == interval


@numba.vectorize([f"boolean({_I8},{_I8},{_I8},{_I8})"], cache=True)
def hidden_perfect(prev_s, prev_b, cur_s, cur_b):
    """Outer voices move the same way into a fifth or octave with a soprano leap."""
    if prev_s < 0 or prev_b < 0 or cur_s < 0 or cur_b < 0:
        return False
    same_way = (cur_s - prev_s) * (cur_b - prev_b) > 0
    arriving = abs(cur_s - cur_b) % 12
    return (same_way and arriving in (PERFECT_FIFTH, OCTAVE)
            and abs(prev_s - prev_b) % 12 != arriving and abs(cur_s - prev_s) > 2)


@numba.vectorize([f"boolean({_I8},{_I8})"], cache=True)
def crossed(upper, lower):
    """The lower voice sounds above the upper one."""
    return upper >= 0 and lower >= 0 and lower > upper


@numba.vectorize([f"boolean({_I8},{_I8},{_I8},{_I8})"], cache=True)
def overlapped(prev_upper, prev_lower, cur_upper, cur_lower):
    """A voice moves past where its neighbour just was."""
    if prev_upper < 0 or prev_lower < 0 or cur_upper < 0 or cur_lower < 0:
        return False
    lower_up = cur_lower != prev_lower and cur_lower > prev_upper
    upper_down = cur_upper != prev_upper and cur_upper < prev_lower
    return lower_up or upper_down


@numba.vectorize([f"boolean({_I8},{_I8})"], cache=True)
def too_wide(upper, lower):
    """More than an octave between adjacent upper voices."""
    return upper >= 0 and lower >= 0 and upper - lower > MAX_UPPER_SPACING


@numba.vectorize([f"boolean({_I8},{_I8},{_I8})"], cache=True)
def outside(pitch, low, high):
    """A sounding pitch outside ``low``-``high``."""
    return pitch >= 0 and (pitch < low or pitch > high)


def out_of_range(pitch, voice: int) -> np.ndarray:
    low, high = TEXTBOOK_RANGES[voice]
    return outside(np.asarray(pitch, dtype=np.int64), low, high)


def is_complete_chord(pitches: np.ndarray) -> bool:
    """Four sounding pitches form a complete triad or seventh chord (any root)."""
    if (pitches < 0).any():
        return False
    return bool(COMPLETE_CHORD[np.bitwise_or.reduce(1 << (pitches.astype(np.int64) % 12))])


def _complete_chord_table() -> np.ndarray:
    """``table[mask]``: is the pitch-class set ``mask`` (12 bits) a complete chord?"""
    table = np.zeros(1 << 12, dtype=bool)
    for shape in (*_TRIADS, *_SEVENTHS):
        for root in range(12):
            table[sum(1 << ((root + i) % 12) for i in shape)] = True
    return table


COMPLETE_CHORD = _complete_chord_table()


def sonority_steps(sounding: np.ndarray) -> np.ndarray:
    """Steps where the sounding pitches change (step 0 counts)."""
    changed = np.any(sounding[:, 1:] != sounding[:, :-1], axis=0)
    return np.concatenate([[0], np.flatnonzero(changed) + 1])


def voice_leading_report(raw: np.ndarray, meta: np.ndarray | None = None) -> dict[str, int]:
    """Counts of every rule over one harmonisation ``raw`` (``int16 [4, T]``).

    Returns counts and the denominators they are rates of: ``chord_changes`` for
    parallels, hidden perfects and overlaps; ``sonorities`` for crossings and spacing;
    ``notes`` for range; ``beat_chords`` (four-voice sonorities on a quarter beat, from
    ``meta``'s tick column) for complete chords.
    """
    sounding = sounding_pitches(raw).astype(np.int64)
    steps = sonority_steps(sounding)
    chords = sounding[:, steps]  # [4, S]
    prev, cur = chords[:, :-1], chords[:, 1:]
    counts = {k: 0 for k in ("parallel_fifths", "parallel_octaves", "hidden_perfect_sb",
                             "crossing", "overlap", "spacing", "out_of_range")}
    for a in range(4):
        for b in range(a + 1, 4):
            counts["parallel_fifths"] += int(consecutive_perfect(
                prev[a], prev[b], cur[a], cur[b], PERFECT_FIFTH).sum())
            counts["parallel_octaves"] += int(consecutive_perfect(
                prev[a], prev[b], cur[a], cur[b], OCTAVE).sum())
    counts["hidden_perfect_sb"] = int(hidden_perfect(prev[0], prev[3], cur[0], cur[3]).sum())
    crossing = np.zeros(chords.shape[1], dtype=bool)
    for a in range(3):
        crossing |= crossed(chords[a], chords[a + 1])
        counts["overlap"] += int(overlapped(prev[a], prev[a + 1], cur[a], cur[a + 1]).sum())
    counts["crossing"] = int(crossing.sum())
    counts["spacing"] = int((too_wide(chords[0], chords[1]) | too_wide(chords[1], chords[2])).sum())
    notes = 0
    for v in range(4):
        onset_pitches = raw[v][raw[v] >= 0].astype(np.int64)
        notes += onset_pitches.size
        counts["out_of_range"] += int(out_of_range(onset_pitches, v).sum())
    on_beat = steps if meta is None else steps[meta[steps, 0] == 0]
    beat_chords = [sounding[:, s] for s in on_beat if (sounding[:, s] >= 0).all()]
    counts["complete_chords"] = sum(is_complete_chord(c) for c in beat_chords)
    counts["beat_chords"] = len(beat_chords)
    counts["chord_changes"] = int(max(chords.shape[1] - 1, 0))
    counts["sonorities"] = int(chords.shape[1])
    counts["notes"] = notes
    return counts


def unresolved_sevenths(raw: np.ndarray) -> int:
    """Chord sevenths (by :data:`SEVENTH_OF`, at every sonority) whose voice's next
    different pitch does not step down; each note is counted once."""
    raw = np.asarray(raw, dtype=np.int64)
    sounding = sounding_pitches(raw).astype(np.int64)
    checked: set[tuple[int, int]] = set()  # (voice, onset step) of notes seen as sevenths
    unresolved = 0
    for step in sonority_steps(sounding):
        column = sounding[:, step]
        if (column < 0).all():
            continue
        seventh = SEVENTH_OF[int(np.bitwise_or.reduce(1 << (column[column >= 0] % 12)))]
        if seventh < 0:
            continue
        for v in range(4):
            pitch = int(column[v])
            if pitch < 0 or pitch % 12 != seventh:
                continue
            onset = step
            while onset > 0 and raw[v, onset] == HOLD_PITCH:
                onset -= 1
            if (v, onset) in checked:
                continue
            checked.add((v, onset))
            following = next((int(p) for p in raw[v, step + 1:]
                              if p not in (HOLD_PITCH, pitch)), -1)
            unresolved += following >= 0 and not 1 <= pitch - following <= 2
    return unresolved


RATE_DENOMINATORS = {
    "parallel_fifths": "chord_changes", "parallel_octaves": "chord_changes",
    "hidden_perfect_sb": "chord_changes", "overlap": "chord_changes",
    "crossing": "sonorities", "spacing": "sonorities", "out_of_range": "notes",
    "complete_chords": "beat_chords",
}


def rates(counts: dict[str, int]) -> dict[str, float]:
    """Each rule's count over its denominator (see :func:`voice_leading_report`)."""
    return {name: counts[name] / max(counts[den], 1) for name, den in RATE_DENOMINATORS.items()}


# The sampler's rules and their relative charges (times the user's rule weight, nats).
# Parallels, range and unresolved sevenths weigh 1; crossings, wide spacing, overlaps
# and hidden fifths, which Bach allows himself now and then (a setting with none of them
# is itself a tell), weigh a quarter (chosen on the validation chorales); the final
# chord (a root-position tonic triad) weighs most, since nothing later can mend it.
# "unresolved_seventh" charges the note after a chord seventh for not stepping down;
# "seventh_unprepared_exit" charges making a seventh whose voice's next note (as it
# stands) does not step down from it, which also discourages sevenths that a later
# redraw of that next note would resolve.
# "cadence_chord" charges a chord at the start of a fermata that is not a major or minor
# triad over its root (Bach: 99%); "cadence_approach" one whose root is not reached by
# a falling fifth from the chord a beat before (an authentic cadence: Bach's commonest,
# 60%, hence a light charge), unless it is a half cadence on the home key's dominant.
RULES: tuple[str, ...] = ("parallel", "crossing", "spacing", "overlap", "hidden", "range",
                          "unresolved_seventh", "final_chord", "seventh_unprepared_exit",
                          "cadence_chord", "cadence_approach")
DEFAULT_RULE_WEIGHTS: dict[str, float] = {
    "parallel": 1.0, "crossing": 0.25, "spacing": 0.25, "overlap": 0.25, "hidden": 0.25,
    "range": 1.0, "unresolved_seventh": 1.0, "final_chord": 2.0,
    "seventh_unprepared_exit": 0.25, "cadence_chord": 1.0, "cadence_approach": 0.25}
NO_STEP = 1 << 40  # a step no piece reaches: "this rule applies nowhere"
APPROACH_STEPS = 4  # a cadence is approached from the chord a beat (4 16ths) before it


def rule_weight_vector(weights: dict[str, float] | None = None) -> np.ndarray:
    """The relative charges in :data:`RULES` order (``float64 [R]``); unknown names fail."""
    weights = {**DEFAULT_RULE_WEIGHTS, **(weights or {})}
    unknown = set(weights) - set(RULES)
    if unknown:
        raise ValueError(f"unknown rules {sorted(unknown)} (rules: {', '.join(RULES)})")
    return np.array([float(weights[r]) for r in RULES], dtype=np.float64)


def _seventh_table() -> np.ndarray:
    """``table[mask]``: pitch class of the seventh if the pitch-class set ``mask`` (12 bits)
    is a seventh chord (dominant, minor, half-diminished or major seventh, with or
    without its fifth), else -1. The diminished seventh, whose seventh depends on how it
    is spelled, is left out."""
    table = np.full(1 << 12, -1, dtype=np.int64)
    shapes = ((0, 4, 7, 10), (0, 4, 10), (0, 3, 7, 10), (0, 3, 10), (0, 3, 6, 10),
              (0, 4, 7, 11), (0, 4, 11))
    for shape in shapes:
        for root in range(12):
            mask = sum(1 << ((root + i) % 12) for i in shape)
            if table[mask] < 0:
                table[mask] = (root + shape[-1]) % 12
    return table


SEVENTH_OF = _seventh_table()


def _root_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(triad_root, chord_root)[mask]``: the root pitch class of a major or minor triad
    (with or without its fifth), and of any triad or seventh chord; -1 otherwise."""
    triad = np.full(1 << 12, -1, dtype=np.int64)
    chord = np.full(1 << 12, -1, dtype=np.int64)
    triads = ((0, 4, 7), (0, 3, 7), (0, 4), (0, 3))
    others = ((0, 3, 6), (0, 4, 8), (0, 4, 7, 10), (0, 4, 10), (0, 3, 7, 10), (0, 3, 10),
              (0, 3, 6, 10), (0, 4, 7, 11), (0, 4, 11))
    for shapes, tables in ((triads, (triad, chord)), (others, (chord,))):
        for shape in shapes:
            for root in range(12):
                mask = sum(1 << ((root + i) % 12) for i in shape)
                for table in tables:
                    if table[mask] < 0:
                        table[mask] = root
    return triad, chord


TRIAD_ROOT, CHORD_ROOT = _root_tables()


@dataclass(frozen=True, eq=False)
class PieceContext:
    """What rules beyond voice leading need to know of the piece: the ``tonic`` pitch
    class (-1 unknown) and the step where the final chord starts (:data:`NO_STEP` when
    the final chord is free: the melody ends off the tonic triad, or a live player's
    end is unknown)."""

    tonic: int = -1
    final_from: int = NO_STEP
    cadences: np.ndarray | None = None  # bool [T]: the first step of each fermata
    # A live player's melody: the chance that its next note, not played yet, does not
    # step down. A chord that makes the melody note its seventh is charged the
    # unresolved-seventh rule that much, the break's expected cost (offline the next
    # note is known: 0).
    melody_unresolved: float = 0.0
    # A live player's end is unknown, so any cadence may be the last: at a fermata whose
    # melody note is the tonic, a chord other than the root-position tonic triad is
    # charged this share of the final-chord rule (offline the end is known: 0).
    tonic_cadence: float = 0.0


def candidate_violations(raw: np.ndarray, sounding: np.ndarray, voice: int,
                         positions: np.ndarray, candidate_pitch: np.ndarray,
                         is_hold: np.ndarray, piece: PieceContext | None = None,
                         weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted rule charges of each candidate token of ``voice`` at each of
    ``positions``, given every other note as it stands: ``float32 [B, V]``.

    ``candidate_pitch [B, V]`` is the pitch each token would sound (a hold continues the
    note before, -1 for rests); ``is_hold [V]`` marks the hold token. The candidate's
    note lasts until the voice's next onset, so the move into the next note is checked
    too, and spacing/crossing over the whole held span. ``weights`` are the relative
    charges in :data:`RULES` order (default :data:`DEFAULT_RULE_WEIGHTS`).
    """
    low, high = TEXTBOOK_RANGES[voice]
    piece = piece or PieceContext()
    weights = rule_weight_vector() if weights is None else weights
    return _candidate_violations(np.ascontiguousarray(raw, dtype=np.int64),
                                 np.ascontiguousarray(sounding, dtype=np.int64), voice,
                                 np.ascontiguousarray(positions, dtype=np.int64),
                                 np.ascontiguousarray(candidate_pitch, dtype=np.int64),
                                 np.ascontiguousarray(is_hold, dtype=np.bool_), low, high,
                                 np.ascontiguousarray(weights, dtype=np.float64),
                                 int(piece.tonic), int(piece.final_from), SEVENTH_OF,
                                 _NO_CADENCES if piece.cadences is None
                                 else np.ascontiguousarray(piece.cadences, dtype=np.bool_),
                                 TRIAD_ROOT, CHORD_ROOT, float(piece.melody_unresolved),
                                 float(piece.tonic_cadence))


_NO_CADENCES = np.zeros(0, dtype=np.bool_)


@numba.njit(cache=True, nogil=True)
def _next_onset(raw, voice, step):
    """Pitch of the voice's next event after ``step`` (-1: a rest, the end or unknown)."""
    for later in range(step + 1, raw.shape[1]):
        if raw[voice, later] != HOLD_PITCH:
            return raw[voice, later]
    return -1


@numba.njit(cache=True, nogil=True)
def _mask_at(sounding, step, skip_voice):
    """Pitch classes (12-bit mask) sounding at ``step``, leaving out ``skip_voice``."""
    mask = 0
    for u in range(sounding.shape[0]):
        if u != skip_voice and sounding[u, step] >= 0:
            mask |= 1 << (sounding[u, step] % 12)
    return mask


@numba.njit(cache=True, nogil=True)
def _triad_over_bass(mask, bass):
    """The pitch classes in ``mask`` lie in a major or minor triad whose root is ``bass``
    (voices not yet sounding leave it incomplete, which still counts)."""
    major = minor = False
    for pc in range(12):
        if not mask & (1 << pc):
            continue
        interval = (pc - bass) % 12
        if interval == 4:
            major = True
        elif interval == 3:
            minor = True
        elif interval != 0 and interval != 7:
            return False
    return not (major and minor)


@numba.njit(cache=True, nogil=True)
def _resolves(seventh, following):
    """A seventh resolves when its voice steps down a semitone or a tone; a rest, an
    unknown next note or the seventh struck again leave the question open."""
    return following < 0 or following == seventh or 1 <= seventh - following <= 2


@numba.njit(cache=True, nogil=True)
def _candidate_violations(raw, sounding, voice, positions, candidate, is_hold, low, high,
                          weights, tonic, final_from, seventh_of, cadences, triad_root,
                          chord_root, melody_unresolved, tonic_cadence):
    w_parallel, w_crossing, w_spacing, w_overlap = weights[0], weights[1], weights[2], weights[3]
    w_hidden, w_range, w_seventh, w_final = weights[4], weights[5], weights[6], weights[7]
    w_exit, w_cadence, w_approach = weights[8], weights[9], weights[10]
    n_voices, n_steps = sounding.shape
    n_candidates = candidate.shape[1]
    out = np.zeros(candidate.shape, dtype=np.float32)
    for b in range(positions.size):
        t = positions[b]
        end = t  # the candidate's note lasts until the voice's next onset
        while end + 1 < n_steps and raw[voice, end + 1] == HOLD_PITCH:
            end += 1
        has_next = end + 1 < n_steps
        prev_v = sounding[voice, t - 1] if t > 0 else -1
        next_v = raw[voice, end + 1] if has_next else -1
        if next_v == HOLD_PITCH:
            next_v = -1
        for u in range(n_voices):
            if u == voice:
                continue
            prev_u = sounding[u, t - 1] if t > 0 else -1
            cur_u = sounding[u, t]
            end_u = sounding[u, end]
            next_u = sounding[u, end + 1] if has_next else -1
            lo_u, hi_u = 1 << 30, -1  # the other voice's extremes over the held span
            for step in range(t, end + 1):
                p = sounding[u, step]
                if p >= 0:
                    lo_u = min(lo_u, p)
                    hi_u = max(hi_u, p)
            if lo_u == 1 << 30:
                lo_u = -1
            neighbour = abs(u - voice) == 1 and min(u, voice) < 2
            for k in range(n_candidates):
                c = candidate[b, k]
                moves = not is_hold[k]
                n = 0.0
                for interval in (PERFECT_FIFTH, OCTAVE):
                    if moves and consecutive_perfect(prev_v, prev_u, c, cur_u, interval):
                        n += w_parallel
                    if consecutive_perfect(c, end_u, next_v, next_u, interval):
                        n += w_parallel
                if u < voice:
                    n += w_crossing * crossed(lo_u, c)
                else:
                    n += w_crossing * crossed(c, hi_u)
                if neighbour:
                    if u < voice:
                        n += w_spacing * too_wide(hi_u, c)
                        n += w_overlap * (moves and overlapped(prev_u, prev_v, cur_u, c))
                    else:
                        n += w_spacing * too_wide(c, lo_u)
                        n += w_overlap * (moves and overlapped(prev_v, prev_u, c, cur_u))
                out[b, k] += n
        if voice == 0 or voice == 3:
            other = 3 - voice
            prev_o = sounding[other, t - 1] if t > 0 else -1
            cur_o = sounding[other, t]
            for k in range(n_candidates):
                if is_hold[k]:
                    continue
                c = candidate[b, k]
                if voice == 0:
                    out[b, k] += w_hidden * hidden_perfect(prev_v, prev_o, c, cur_o)
                else:
                    out[b, k] += w_hidden * hidden_perfect(prev_o, prev_v, cur_o, c)
        # Sevenths: a chord seventh sounding at t steps down to its voice's next note,
        # and a seventh sounding just before t steps down into t.
        others = 0
        for u in range(n_voices):
            if u != voice and sounding[u, t] >= 0:
                others |= 1 << (sounding[u, t] % 12)
        before = 0
        if t > 0:
            for u in range(n_voices):
                if sounding[u, t - 1] >= 0:
                    before |= 1 << (sounding[u, t - 1] % 12)
        # The voice's pitch before t awaits resolution if it was a chord seventh at any
        # sonority since it was first struck (held or struck again, it is still owed).
        owed = False
        step = t - 1
        while prev_v >= 0 and step >= 0 and step >= t - 32 and sounding[voice, step] == prev_v:
            mask = 0
            for u in range(n_voices):
                if sounding[u, step] >= 0:
                    mask |= 1 << (sounding[u, step] % 12)
            if seventh_of[mask] == prev_v % 12:
                owed = True
                break
            step -= 1
        for k in range(n_candidates):
            c = candidate[b, k]
            if c < 0:
                continue
            n = 0.0
            seventh = seventh_of[others | (1 << (c % 12))]
            if seventh >= 0:
                if c % 12 == seventh and not _resolves(c, next_v):
                    n += w_exit
                for u in range(n_voices):
                    p = sounding[u, t]
                    if u == voice or p < 0 or p % 12 != seventh:
                        continue
                    following = _next_onset(raw, u, t)
                    if not _resolves(p, following):
                        n += w_exit
                    elif u == 0 and following < 0:  # the melody's next note is unknown
                        n += w_seventh * melody_unresolved
            if owed and not is_hold[k] and not _resolves(prev_v, c):
                n += w_seventh
            out[b, k] += n
        # A cadence: the chord at a fermata's start is a triad over its root, reached
        # from a chord a beat before whose root lies a fifth above it.
        if t < cadences.size and cadences[t]:
            root_before = -1
            if t >= APPROACH_STEPS:
                root_before = chord_root[_mask_at(sounding, t - APPROACH_STEPS, -1)]
            for k in range(n_candidates):
                c = candidate[b, k]
                if c < 0:
                    continue
                bass = c if voice == 3 else sounding[3, t]
                if bass < 0:
                    continue
                if not _triad_over_bass(others | (1 << (c % 12)), bass % 12):
                    out[b, k] += w_cadence
                elif (root_before >= 0 and (root_before - bass) % 12 != 7
                        and (tonic < 0 or (bass - tonic) % 12 != 7)):
                    out[b, k] += w_approach
        # ... and a candidate sounding a beat before a cadence is judged by its approach.
        for at in range(t, end + 1):
            arrive = at + APPROACH_STEPS
            if arrive >= cadences.size or not cadences[arrive] or arrive >= n_steps:
                continue
            at_cadence = _mask_at(sounding, arrive, voice)
            bass_then = sounding[3, arrive]
            for k in range(n_candidates):
                c = candidate[b, k]
                if c < 0:
                    continue
                mask, bass = at_cadence, bass_then
                if end >= arrive:
                    mask |= 1 << (c % 12)  # the candidate still sounds at the cadence
                    if voice == 3:
                        bass = c
                elif sounding[voice, arrive] >= 0:
                    mask |= 1 << (sounding[voice, arrive] % 12)
                if bass < 0 or not _triad_over_bass(mask, bass % 12):
                    continue
                if tonic >= 0 and (bass - tonic) % 12 == 7:
                    continue  # a half cadence on the dominant may come from anywhere
                root = chord_root[_mask_at(sounding, at, voice) | (1 << (c % 12))]
                if root >= 0 and (root - bass) % 12 != 7:
                    out[b, k] += w_approach
        # The final chord: a tonic triad with the tonic in the bass (and, for a live
        # player, perhaps at any cadence on the melody's tonic).
        final_charge = w_final if t >= final_from else 0.0
        if (final_charge == 0.0 and tonic_cadence > 0.0 and t < cadences.size and cadences[t]
                and voice != 0 and sounding[0, t] >= 0 and (sounding[0, t] - tonic) % 12 == 0):
            final_charge = w_final * tonic_cadence
        if final_charge > 0.0 and tonic >= 0:
            for k in range(n_candidates):
                c = candidate[b, k]
                if c < 0:
                    out[b, k] += final_charge
                    continue
                degree = (c - tonic) % 12
                if (degree != 0 and degree != 3 and degree != 4 and degree != 7) or (
                        voice == 3 and degree != 0):
                    out[b, k] += final_charge
        for k in range(n_candidates):
            out[b, k] += w_range * outside(candidate[b, k], low, high)
    return out
