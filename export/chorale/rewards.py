"""Music-theory rewards for tuning the live harmoniser (Sequence Tutor's reward, issue 13).

Each rule is a small named function of one :class:`Moment` (a chord change: the sounding
pitches of the sonority before and of the new one, and what is known of the piece) that
returns a reward of 0 or less: minus the number of times the rule is broken there. The
voice-leading questions themselves are rules.py's (one definition, shared with the
sampler's charges and the yardstick); what is new here is asking them of one decision at
a time, the way a policy is rewarded step by step. :data:`DEFAULT_REWARD_WEIGHTS` weighs
them (a config: :func:`load_weights` reads a JSON file of overrides); :func:`reward` sums.
Pitches are MIDI numbers, -1 where a voice is silent; voices are S, A, T, B.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.engine.chorale.encoding import TEXTBOOK_RANGES
from kantor.engine.chorale.rules import (
    CHORD_ROOT,
    OCTAVE,
    PERFECT_FIFTH,
    SEVENTH_OF,
    TRIAD_ROOT,
    consecutive_perfect,
    crossed,
    hidden_perfect,
    is_complete_chord,
    outside,
    too_wide,
)

LOWER_VOICES = (1, 2, 3)  # the voices the harmoniser decides; the soprano is given


@dataclass(frozen=True)
class Moment:
    """One chord change. ``previous`` and ``current``: sounding pitches ``[4]`` (-1
    silent; ``previous`` None at the first chord); ``struck``: which voices start a new
    note at it ``bool [4]``; ``fermata``: it starts a fermata (a cadence); ``final``: it
    is the piece's last chord; ``tonic``: the key's tonic pitch class (-1 unknown)."""

    previous: np.ndarray | None
    current: np.ndarray
    struck: np.ndarray
    fermata: bool = False
    final: bool = False
    tonic: int = -1


def _mask(pitches: np.ndarray) -> int:
    sounding = pitches[pitches >= 0].astype(np.int64)
    return int(np.bitwise_or.reduce(1 << (sounding % 12))) if sounding.size else 0


def _root(pitches: np.ndarray, table: np.ndarray = CHORD_ROOT) -> int:
    return int(table[_mask(pitches)])


def parallel_perfects(m: Moment) -> float:
    """Voice pairs moving in consecutive fifths or octaves (or unisons)."""
    if m.previous is None:
        return 0.0
    p, c = m.previous.astype(np.int64), m.current.astype(np.int64)
    return -float(sum(bool(consecutive_perfect(p[a], p[b], c[a], c[b], interval))
                      for a in range(4) for b in range(a + 1, 4)
                      for interval in (PERFECT_FIFTH, OCTAVE)))


def hidden_perfects(m: Moment) -> float:
    """Soprano and bass moving the same way into a fifth or octave, the soprano leaping."""
    if m.previous is None:
        return 0.0
    p, c = m.previous.astype(np.int64), m.current.astype(np.int64)
    return -float(bool(hidden_perfect(p[0], p[3], c[0], c[3])))


def spacing(m: Moment) -> float:
    """More than an octave between soprano and alto, or alto and tenor."""
    c = m.current.astype(np.int64)
    return -float(bool(too_wide(c[0], c[1])) + bool(too_wide(c[1], c[2])))


def crossing(m: Moment) -> float:
    """A voice sounding above the voice above it."""
    c = m.current.astype(np.int64)
    return -float(sum(bool(crossed(c[v], c[v + 1])) for v in range(3)))


def voice_range(m: Moment) -> float:
    """Sounding pitches outside their voice's textbook range."""
    return -float(sum(bool(outside(int(m.current[v]), *TEXTBOOK_RANGES[v]))
                      for v in range(4)))


def repeated_notes(m: Moment) -> float:
    """A lower voice striking again the pitch it just sang (static inner voices are what
    gives a machine away)."""
    if m.previous is None:
        return 0.0
    return -float(sum(bool(m.struck[v]) and m.current[v] >= 0
                      and m.current[v] == m.previous[v] for v in LOWER_VOICES))


def seventh_resolution(m: Moment) -> float:
    """The seventh of the previous chord, left by its voice other than a step down."""
    if m.previous is None:
        return 0.0
    seventh = int(SEVENTH_OF[_mask(m.previous)])
    if seventh < 0:
        return 0.0
    broken = 0
    for v in range(4):
        before, after = int(m.previous[v]), int(m.current[v])
        if before >= 0 and before % 12 == seventh and after >= 0 and after != before:
            broken += not 1 <= before - after <= 2
    return -float(broken)


def leading_tone_resolution(m: Moment) -> float:
    """In a dominant (root a fifth above the tonic) going to the tonic chord, the leading
    tone in the soprano or bass not rising a semitone to the tonic (an inner voice may
    fall to the fifth, as Bach's often do)."""
    if m.previous is None or m.tonic < 0:
        return 0.0
    if _root(m.previous) != (m.tonic + 7) % 12 or _root(m.current) != m.tonic:
        return 0.0
    leading = (m.tonic + 11) % 12
    broken = 0
    for v in (0, 3):
        before, after = int(m.previous[v]), int(m.current[v])
        if before >= 0 and before % 12 == leading and after >= 0:
            broken += after - before != 1
    return -float(broken)


def cadence_formula(m: Moment) -> float:
    """At a fermata: a major or minor triad over its root (-1 otherwise), reached by a
    falling fifth (V-I) or fourth (IV-I), or a half cadence on the key's dominant (-1
    otherwise)."""
    if not m.fermata:
        return 0.0
    root = _root(m.current, TRIAD_ROOT)
    bass = int(m.current[3])
    broken = float(root < 0 or bass < 0 or bass % 12 != root)
    if m.previous is not None and root >= 0:
        before = _root(m.previous)
        authentic = before >= 0 and (before - root) % 12 in (7, 5)
        half = m.tonic >= 0 and root == (m.tonic + 7) % 12
        broken += not (authentic or half)
    return -broken


def tonic_at_end(m: Moment) -> float:
    """The last chord: the tonic triad (major or minor: a Picardy third is Bach's) with
    the tonic in the bass."""
    if not m.final or m.tonic < 0:
        return 0.0
    return -float(_root(m.current, TRIAD_ROOT) != m.tonic or int(m.current[3]) % 12 != m.tonic)


def chord_completeness(m: Moment) -> float:
    """Four sounding voices that do not make a complete triad or seventh chord."""
    if (m.current < 0).any():
        return 0.0
    return -float(not is_complete_chord(m.current))


REWARDS: dict[str, Callable[[Moment], float]] = {
    "parallel_perfects": parallel_perfects, "hidden_perfects": hidden_perfects,
    "spacing": spacing, "crossing": crossing, "range": voice_range,
    "repeated_notes": repeated_notes, "seventh_resolution": seventh_resolution,
    "leading_tone_resolution": leading_tone_resolution,
    "cadence_formula": cadence_formula, "tonic_at_end": tonic_at_end,
    "chord_completeness": chord_completeness,
}
# Relative weights: what Bach never does weighs 1, what he allows himself now and then a
# quarter, the ending most (nothing later can mend it).
DEFAULT_REWARD_WEIGHTS: dict[str, float] = {
    "parallel_perfects": 1.0, "hidden_perfects": 0.25, "spacing": 0.25, "crossing": 0.25,
    "range": 1.0, "repeated_notes": 0.25, "seventh_resolution": 1.0,
    "leading_tone_resolution": 0.5, "cadence_formula": 1.0, "tonic_at_end": 2.0,
    "chord_completeness": 0.25,
}


def load_weights(path: Path | None = None) -> dict[str, float]:
    """The default weights with a JSON file's overrides (``{"repeated_notes": 0.5}``);
    ValueError naming an unknown rule or a weight that is not a number."""
    weights = dict(DEFAULT_REWARD_WEIGHTS)
    if path is None:
        return weights
    overrides = json.loads(Path(path).read_text())
    for name, value in overrides.items():
        if name not in REWARDS:
            raise ValueError(f"unknown reward '{name}' (rewards: {', '.join(REWARDS)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"the weight of {name} must be a number, not {value!r}")
        weights[name] = float(value)
    return weights


def moments(raw: np.ndarray, fermatas: np.ndarray | None = None, tonic: int = -1
            ) -> list[Moment]:
    """The chord changes of a harmonisation ``raw`` (``[4, T]``: MIDI onsets, HOLD_PITCH,
    REST_PITCH), one :class:`Moment` per sonority; ``fermatas``: ``bool [T]``, the steps
    under a fermata."""
    from kantor.engine.chorale.encoding import HOLD_PITCH, sounding_pitches
    from kantor.engine.chorale.rules import sonority_steps

    raw = np.asarray(raw, dtype=np.int64)
    sounding = sounding_pitches(raw).astype(np.int64)
    steps = sonority_steps(sounding)
    out = []
    for k, step in enumerate(steps):
        starts_fermata = (fermatas is not None and bool(fermatas[step])
                          and (step == 0 or not fermatas[step - 1]))
        out.append(Moment(None if k == 0 else sounding[:, steps[k - 1]], sounding[:, step],
                          raw[:, step] != HOLD_PITCH, fermata=starts_fermata,
                          final=k == len(steps) - 1, tonic=tonic))
    return out


def rule_rates(settings: list[tuple[np.ndarray, np.ndarray | None, int]]
               ) -> dict[str, float]:
    """Each rule's breaks per sonority (each :class:`Moment`, the first chord included)
    over ``settings`` (``(raw, fermatas, tonic)`` each): the violation rates of Sequence
    Tutor's table."""
    totals = dict.fromkeys(REWARDS, 0.0)
    sonorities = 0
    for raw, fermatas, tonic in settings:
        for m in moments(raw, fermatas, tonic):
            sonorities += 1
            for name, value in rewards(m).items():
                totals[name] -= value
    return {name: total / max(sonorities, 1) for name, total in totals.items()}


def rewards(m: Moment) -> dict[str, float]:
    """Every rule's reward of ``m`` (0 or less)."""
    return {name: rule(m) for name, rule in REWARDS.items()}


def reward(m: Moment, weights: dict[str, float] | None = None) -> float:
    """The weighted sum of the rules' rewards of ``m``."""
    weights = weights or DEFAULT_REWARD_WEIGHTS
    return sum(weights[name] * value for name, value in rewards(m).items())
