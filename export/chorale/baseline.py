"""A textbook rule-based harmoniser: the yardstick's baseline.

A new chord on every soprano note that starts on a beat (lower voices hold through
off-beat notes). Chords are the diatonic triads of the key signature's major scale plus
the major triad on its third degree (the dominant of the relative minor) that contain
the soprano's pitch class. A Viterbi search over complete, well-spaced voicings picks the
cheapest path: small motion in the inner voices, root position preferred, no parallel
fifths or octaves, strong root progressions, tonic or dominant under fermatas.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from kantor.engine.chorale.encoding import HOLD_PITCH, REST_PITCH, TEXTBOOK_RANGES
from kantor.engine.chorale.rules import consecutive_perfect

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# (root degree in semitones above the tonic, quality intervals)
CHORDS = [(MAJOR_SCALE[d], (0, 3, 6) if d == 6 else (0, 4, 7) if d in (0, 3, 4) else (0, 3, 7))
          for d in range(7)] + [(4, (0, 4, 7))]
PARALLEL_COST = 40.0
INVERSION_COST = (0.0, 2.0, 6.0)  # root, first, second inversion
# Root movement (semitones up, mod 12) -> cost: falling fifths best, repeats worst.
ROOT_MOTION_COST = {0: 3.0, 5: 0.0, 7: 0.5, 2: 1.0, 10: 1.5, 9: 1.5, 3: 1.5, 4: 2.0, 8: 2.0}


_LOWER = np.array(list(itertools.product(*[range(lo, hi + 1) for lo, hi in TEXTBOOK_RANGES[1:]])))


@functools.lru_cache(maxsize=512)
def _voicings(soprano: int, tonic: int) -> list[tuple[tuple[int, int, int], float, int]]:
    """((alto, tenor, bass), static cost, chord root pc) for each usable voicing."""
    alto, tenor, bass = _LOWER.T
    shape_ok = ((soprano >= alto) & (alto >= tenor) & (tenor >= bass)
                & (soprano - alto <= 12) & (alto - tenor <= 12) & (tenor - bass <= 19))
    found = []
    for root_offset, quality in CHORDS:
        root = (tonic + root_offset) % 12
        classes = [(root + i) % 12 for i in quality]
        if soprano % 12 not in classes:
            continue
        in_chord = np.isin(_LOWER % 12, classes).all(axis=1) & shape_ok
        for a, t, b in _LOWER[in_chord]:
            if {soprano % 12, a % 12, t % 12, b % 12} != set(classes):
                continue  # incomplete
            inversion = classes.index(int(b) % 12)
            found.append(((int(a), int(t), int(b)), INVERSION_COST[inversion], root))
    return found


def _transition_costs(prev: np.ndarray, cur: np.ndarray, prev_roots: np.ndarray,
                      roots: np.ndarray) -> np.ndarray:
    """Cost of every move from ``prev [P, 4]`` to ``cur [C, 4]`` voicings: ``[C, P]``."""
    p, c = prev[None, :, :], cur[:, None, :]
    cost = np.abs(p[..., 1:3] - c[..., 1:3]).sum(-1) * 0.5 + np.abs(p[..., 3] - c[..., 3]) * 0.15
    for a, b in itertools.combinations(range(4), 2):
        for interval in (7, 0):
            cost = cost + PARALLEL_COST * consecutive_perfect(
                p[..., a], p[..., b], c[..., a], c[..., b], interval)
    motion = (roots[:, None] - prev_roots[None, :]) % 12
    table = np.array([ROOT_MOTION_COST.get(m, 2.0) for m in range(12)])
    return cost + table[motion]


def harmonize_by_rules(soprano: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Alto, tenor and bass for a soprano (raw pitches ``[T]``) and metadata ``[T, 4]``.
    Returns raw pitches ``int16 [4, T]``."""
    n_steps = soprano.shape[0]
    tonic = (int(meta[0, 3]) * 7) % 12
    onset = soprano >= 0
    chord_steps = [t for t in range(n_steps) if onset[t] and (meta[t, 0] == 0 or t == 0)]
    raw = np.full((4, n_steps), HOLD_PITCH, dtype=np.int16)
    raw[0] = soprano
    raw[1:, soprano == REST_PITCH] = REST_PITCH
    if not chord_steps:
        raw[1:, 0] = REST_PITCH
        return raw
    layers = []
    for t in chord_steps:
        options = _voicings(int(soprano[t]), tonic)
        if meta[t, 2]:  # under a fermata: tonic or dominant in root position
            cadential = [o for o in options if o[2] in (tonic, (tonic + 7) % 12,
                                                        (tonic + 9) % 12)]
            options = [(v, c - 1.0, r) for v, c, r in cadential] or options
        if not options:  # a chromatic soprano note: double it over an open fifth
            s = int(soprano[t])
            options = [((s - 12, s - 17, s - 24), 10.0, s % 12)]
        layers.append(options)
    # Viterbi: best cost to each voicing of each layer.
    best = [np.array([c for _, c, _ in layers[0]])]
    back = []
    for k in range(1, len(layers)):
        prev_layer, layer = layers[k - 1], layers[k]
        s_prev, s_cur = int(soprano[chord_steps[k - 1]]), int(soprano[chord_steps[k]])
        prev = np.array([(s_prev, *v) for v, _, _ in prev_layer])
        cur = np.array([(s_cur, *v) for v, _, _ in layer])
        costs = (best[-1][None, :] + np.array([c for _, c, _ in layer])[:, None]
                 + _transition_costs(prev, cur, np.array([r for _, _, r in prev_layer]),
                                     np.array([r for _, _, r in layer])))
        back.append(costs.argmin(1))
        best.append(costs.min(1))
    choice = [int(best[-1].argmin())]
    for pointers in reversed(back):
        choice.append(int(pointers[choice[-1]]))
    choice.reverse()
    for t, layer, i in zip(chord_steps, layers, choice, strict=True):
        raw[1:, t] = layer[i][0]
    # Lower voices start with the first chord even if the soprano starts later.
    first = chord_steps[0]
    raw[1:, :first] = REST_PITCH
    return raw
