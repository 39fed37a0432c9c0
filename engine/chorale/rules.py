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

import numpy as np

from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    STEPS_PER_QUARTER,
    TEXTBOOK_RANGES,
    sounding_pitches,
)

PERFECT_FIFTH, OCTAVE = 7, 0
MAX_UPPER_SPACING = 12  # semitones between soprano-alto and alto-tenor
# Pitch-class sets (relative to the root) that count as complete chords.
_TRIADS = ({0, 4, 7}, {0, 3, 7}, {0, 3, 6}, {0, 4, 8})
_SEVENTHS = ({0, 4, 7, 10}, {0, 3, 7, 10}, {0, 3, 6, 10}, {0, 3, 6, 9}, {0, 4, 7, 11})


def _interval_class(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Compound interval reduced to 0-11 semitones (unisons and octaves are 0)."""
    return np.abs(upper - lower) % 12


def consecutive_perfect(prev_a, prev_b, cur_a, cur_b, interval: int) -> np.ndarray:
    """Both voices move and stand a perfect ``interval`` apart before and after
    (parallel or contrary fifths/octaves). Arrays broadcast; -1 means silent."""
    sounding = (prev_a >= 0) & (prev_b >= 0) & (cur_a >= 0) & (cur_b >= 0)
    both_move = (prev_a != cur_a) & (prev_b != cur_b)
    return (sounding & both_move
            & (_interval_class(prev_a, prev_b) == interval)
            & (_interval_class(cur_a, cur_b) == interval))


def hidden_perfect(prev_s, prev_b, cur_s, cur_b) -> np.ndarray:
    """Outer voices move the same way into a fifth or octave with a soprano leap."""
    sounding = (prev_s >= 0) & (prev_b >= 0) & (cur_s >= 0) & (cur_b >= 0)
    same_way = np.sign(cur_s - prev_s) * np.sign(cur_b - prev_b) > 0
    arriving = np.isin(_interval_class(cur_s, cur_b), (PERFECT_FIFTH, OCTAVE))
    not_parallel = _interval_class(prev_s, prev_b) != _interval_class(cur_s, cur_b)
    leap = np.abs(cur_s - prev_s) > 2
    return sounding & same_way & arriving & not_parallel & leap


def crossed(upper, lower) -> np.ndarray:
    """The lower voice sounds above the upper one."""
    return (upper >= 0) & (lower >= 0) & (lower > upper)


def overlapped(prev_upper, prev_lower, cur_upper, cur_lower) -> np.ndarray:
    """A voice moves past where its neighbour just was."""
    sounding = (prev_upper >= 0) & (prev_lower >= 0) & (cur_upper >= 0) & (cur_lower >= 0)
    lower_up = (cur_lower != prev_lower) & (cur_lower > prev_upper)
    upper_down = (cur_upper != prev_upper) & (cur_upper < prev_lower)
    return sounding & (lower_up | upper_down)


def too_wide(upper, lower) -> np.ndarray:
    """More than an octave between adjacent upper voices."""
    return (upper >= 0) & (lower >= 0) & (upper - lower > MAX_UPPER_SPACING)


def out_of_range(pitch, voice: int) -> np.ndarray:
    low, high = TEXTBOOK_RANGES[voice]
    return (pitch >= 0) & ((pitch < low) | (pitch > high))


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
    sounding = sounding_pitches(raw)
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


RATE_DENOMINATORS = {
    "parallel_fifths": "chord_changes", "parallel_octaves": "chord_changes",
    "hidden_perfect_sb": "chord_changes", "overlap": "chord_changes",
    "crossing": "sonorities", "spacing": "sonorities", "out_of_range": "notes",
    "complete_chords": "beat_chords",
}


def rates(counts: dict[str, int]) -> dict[str, float]:
    """Each rule's count over its denominator (see :func:`voice_leading_report`)."""
    return {name: counts[name] / max(counts[den], 1) for name, den in RATE_DENOMINATORS.items()}


def candidate_violations(raw: np.ndarray, sounding: np.ndarray, voice: int,
                         positions: np.ndarray, candidate_pitch: np.ndarray,
                         is_hold: np.ndarray) -> np.ndarray:
    """How many rules each candidate token of ``voice`` at each of ``positions`` breaks,
    given every other note as it stands: ``float32 [B, V]``.

    ``candidate_pitch [B, V]`` is the pitch each token would sound (a hold continues the
    note before, -1 for rests); ``is_hold [V]`` marks the hold token. The candidate's
    note lasts until the voice's next onset, so the move into the next note is checked
    too, and spacing/crossing over the whole held span.
    """
    n_voices, n_steps = sounding.shape
    t = positions
    prev_t = np.maximum(t - 1, 0)
    has_prev = (t > 0)[:, None]
    # End of the note the candidate starts: the last step before the next onset.
    held = raw[voice] == HOLD_PITCH
    next_onset = np.full(n_steps + 1, n_steps, dtype=np.int64)
    for s in range(n_steps - 1, -1, -1):
        next_onset[s] = next_onset[s + 1] if held[s] else s
    span_end = next_onset[np.minimum(t + 1, n_steps)] - 1  # inclusive
    after = np.minimum(span_end + 1, n_steps - 1)
    has_next = (span_end + 1 < n_steps)[:, None]

    c = candidate_pitch
    prev_v = np.where(has_prev, sounding[voice, prev_t][:, None], -1)
    moves_in = ~is_hold[None, :]
    next_v = sounding[voice, after][:, None]
    violations = np.zeros(c.shape, dtype=np.float32)
    for u in range(n_voices):
        if u == voice:
            continue
        prev_u = np.where(has_prev, sounding[u, prev_t][:, None], -1)
        cur_u = sounding[u, t][:, None]
        end_u = sounding[u, span_end][:, None]
        next_u = np.where(has_next, sounding[u, after][:, None], -1)
        for interval in (PERFECT_FIFTH, OCTAVE):
            violations += moves_in & consecutive_perfect(prev_v, prev_u, c, cur_u, interval)
            violations += consecutive_perfect(c, end_u, np.where(has_next, next_v, -1),
                                              next_u, interval)
        # Vertical rules over the held span: compare with the other voice's extremes.
        lo_u, hi_u = _span_extremes(sounding[u], t, span_end)
        if u < voice:
            violations += crossed(lo_u[:, None], c)
        else:
            violations += crossed(c, hi_u[:, None])
        if abs(u - voice) == 1 and min(u, voice) < 2:
            if u < voice:
                violations += too_wide(hi_u[:, None], c)
            else:
                violations += too_wide(c, lo_u[:, None])
            upper, lower = (u, voice) if u < voice else (voice, u)
            prev_upper = prev_u if upper == u else prev_v
            prev_lower = prev_u if lower == u else prev_v
            cur_upper = cur_u if upper == u else c
            cur_lower = cur_u if lower == u else c
            violations += moves_in & overlapped(prev_upper, prev_lower, cur_upper, cur_lower)
    if voice in (0, 3):
        other = 3 - voice
        prev_o = np.where(has_prev, sounding[other, prev_t][:, None], -1)
        cur_o = sounding[other, t][:, None]
        if voice == 0:
            violations += moves_in & hidden_perfect(prev_v, prev_o, c, cur_o)
        else:
            violations += moves_in & hidden_perfect(prev_o, prev_v, cur_o, c)
    violations += out_of_range(c, voice)
    return violations


def _span_extremes(row: np.ndarray, start: np.ndarray, end: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest sounding pitch of ``row`` over each inclusive span (silent
    steps ignored; -1 where the voice is silent throughout)."""
    longest = int((end - start).max()) + 1 if start.size else 1
    offsets = np.arange(longest)
    idx = start[:, None] + offsets[None, :]
    inside = idx <= end[:, None]
    values = row[np.minimum(idx, row.size - 1)]
    valid = inside & (values >= 0)
    lo = np.where(valid, values, 10_000).min(axis=1)
    hi = np.where(valid, values, -1).max(axis=1)
    lo = np.where(lo == 10_000, -1, lo)
    return lo, hi


def beat_positions(meta: np.ndarray) -> np.ndarray:
    """Steps that fall on a quarter beat (tick 0)."""
    return np.flatnonzero(meta[:, 0] % STEPS_PER_QUARTER == 0)
