"""Each voice-leading rule on hand-made examples."""

import numpy as np

from kantor.engine.chorale.encoding import HOLD_PITCH, build_metadata, sounding_pitches
from kantor.engine.chorale.rules import (
    RULES,
    PieceContext,
    candidate_violations,
    is_complete_chord,
    rates,
    rule_weight_vector,
    unresolved_sevenths,
)
from kantor.engine.chorale.rules import voice_leading_report as report

H = HOLD_PITCH


def chords(*columns):
    """Raw [4, T] from S,A,T,B tuples, one per quarter (each held for 4 steps)."""
    raw = np.full((4, 4 * len(columns)), H, dtype=np.int16)
    for i, column in enumerate(columns):
        raw[:, 4 * i] = column
    return raw


def test_parallel_fifths_and_octaves_are_counted():
    # C major -> D minor with soprano/bass in parallel octaves and alto/bass in fifths.
    raw = chords((72, 67, 64, 48), (74, 69, 65, 50))
    counts = report(raw)
    assert counts["parallel_octaves"] == 1  # S-B: C->D at two octaves
    assert counts["parallel_fifths"] == 1  # A-B: G/C -> A/D
    assert counts["chord_changes"] == 1


def test_consecutive_octaves_by_contrary_motion_count_static_voices_do_not():
    # S C5 -> G4 down, B C3 -> G3 up: octaves by contrary motion, still consecutive.
    assert report(chords((72, 64, 55, 48), (67, 62, 59, 55)))["parallel_octaves"] == 1
    # soprano holds G while bass moves C -> G (octave arrives, only one voice moved)
    assert report(chords((67, 64, 60, 48), (67, 62, 59, 43)))["parallel_fifths"] == 0


def test_bach_like_progression_is_clean():
    raw = chords((72, 67, 64, 48), (71, 67, 62, 55), (72, 67, 64, 48))
    counts = report(raw)
    assert counts["parallel_fifths"] == counts["parallel_octaves"] == 0
    assert counts["crossing"] == counts["spacing"] == counts["overlap"] == 0


def test_crossing_spacing_and_range():
    counts = report(chords((60, 64, 55, 48)))  # alto above soprano
    assert counts["crossing"] == 1
    assert report(chords((79, 64, 55, 48)))["spacing"] == 1  # S-A a tenth + more
    assert report(chords((84, 67, 60, 48)))["out_of_range"] == 1  # C6 soprano


def test_hidden_octave_between_outer_voices():
    # S leaps G4 -> C5 while B rises A2 -> C3: both move up into an octave.
    raw = chords((67, 64, 60, 45), (72, 67, 64, 48))
    assert report(raw)["hidden_perfect_sb"] == 1


def test_complete_chords():
    assert is_complete_chord(np.array([72, 67, 64, 48]))  # C major
    assert is_complete_chord(np.array([71, 65, 62, 43]))  # G7
    assert not is_complete_chord(np.array([72, 60, 55, 48]))  # no third
    meta = build_metadata(8, 0, 16, None, 0)
    counts = report(chords((72, 67, 64, 48), (72, 60, 55, 48)), meta)
    assert counts["beat_chords"] == 2 and counts["complete_chords"] == 1
    assert rates(counts)["complete_chords"] == 0.5


def test_candidate_violations_flag_the_parallel_choice():
    raw = chords((72, 67, 64, 48), (74, 69, 65, H))
    raw[3, 4] = 50  # bass D3 under a D minor chord
    sounding = sounding_pitches(raw)
    candidates = np.array([[50, 53]])  # bass: D3 (octaves with S, fifths with A) vs F3
    hold = np.zeros(2, dtype=bool)
    found = candidate_violations(raw, sounding, 3, np.array([4]), candidates, hold)
    assert found[0, 0] >= 2 and found[0, 1] == 0


def only(rule: str) -> np.ndarray:
    """Weights that charge ``rule`` alone."""
    return rule_weight_vector({r: float(r == rule) for r in RULES})


def test_a_seventh_must_step_down_to_the_next_note():
    # G7 (alto F) -> C: the alto's candidates at the C chord: E resolves, G does not.
    raw = chords((67, 65, 59, 43), (67, H, 60, 48))
    sounding = sounding_pitches(raw)
    candidates = np.array([[64, 67, 63]])  # E4 (resolves), G4, E-flat4 (a tone down)
    hold = np.zeros(3, dtype=bool)
    found = candidate_violations(raw, sounding, 1, np.array([4]), candidates, hold,
                                 weights=only("unresolved_seventh"))
    assert found[0].tolist() == [0.0, 1.0, 0.0]


def test_a_candidate_that_makes_a_seventh_is_charged_when_its_next_note_leaps():
    # Over G-B-D, the alto may add F only if its next note (fixed: A4) ... does not step
    # down: F -> A leaps up, so F is charged; D is not a seventh at all.
    raw = chords((67, 60, 59, 43), (72, 69, 64, 48))
    sounding = sounding_pitches(raw)
    candidates = np.array([[65, 62]])
    found = candidate_violations(raw, sounding, 1, np.array([0]), candidates,
                                 np.zeros(2, dtype=bool), weights=only("seventh_unprepared_exit"))
    assert found[0].tolist() == [1.0, 0.0]


def test_the_final_chord_is_a_root_position_tonic_triad():
    raw = chords((67, 62, 59, 43), (72, 67, 64, 48))
    sounding = sounding_pitches(raw)
    piece = PieceContext(tonic=0, final_from=4)
    bass = candidate_violations(raw, sounding, 3, np.array([4]), np.array([[48, 52, 45]]),
                                np.zeros(3, dtype=bool), piece, only("final_chord"))
    assert bass[0].tolist() == [0.0, 1.0, 1.0]  # C; E is a tonic-triad note but inverts
    tenor = candidate_violations(raw, sounding, 2, np.array([4]), np.array([[55, 57, 51]]),
                                 np.zeros(3, dtype=bool), piece, only("final_chord"))
    assert tenor[0].tolist() == [0.0, 1.0, 0.0]  # G yes, A no, E-flat (minor third) yes
    before = candidate_violations(raw, sounding, 3, np.array([0]), np.array([[45]]),
                                  np.zeros(1, dtype=bool), piece, only("final_chord"))
    assert before[0, 0] == 0.0  # the rule starts at the final chord


def test_a_seventh_struck_again_still_owes_its_resolution():
    # G7 with the alto's F, F struck again over C (no longer a seventh there), then G:
    # the F still had to fall, so the count sees one unresolved seventh.
    raw = chords((67, 65, 59, 43), (67, 65, 60, 48), (67, 67, 60, 48))
    assert unresolved_sevenths(raw) == 1
    raw[1, 8] = 64  # ... or it falls to E at last: resolved
    assert unresolved_sevenths(raw) == 0
    sounding = sounding_pitches(raw)
    found = candidate_violations(raw, sounding, 1, np.array([8]), np.array([[64, 67]]),
                                 np.zeros(2, dtype=bool), weights=only("unresolved_seventh"))
    assert found[0].tolist() == [0.0, 1.0]


def test_a_cadence_chord_is_a_triad_over_its_root():
    raw = chords((67, 62, 59, 43), (72, 67, 64, 48))
    sounding = sounding_pitches(raw)
    cadences = np.zeros(8, dtype=bool)
    cadences[4] = True
    piece = PieceContext(cadences=cadences)
    bass = candidate_violations(raw, sounding, 3, np.array([4]), np.array([[48, 52, 45]]),
                                np.zeros(3, dtype=bool), piece, only("cadence_chord"))
    assert bass[0].tolist() == [0.0, 1.0, 1.0]  # C under C-E-G; E inverts; A is vi7
    approach = candidate_violations(raw, sounding, 3, np.array([4]), np.array([[48]]),
                                    np.zeros(1, dtype=bool), piece, only("cadence_approach"))
    assert approach[0, 0] == 0.0  # G -> C: the root falls a fifth


def test_a_live_melody_note_made_a_seventh_is_charged_the_chance_it_will_not_fall():
    # The soprano holds F5 with its future unknown (a live player); over G and D below,
    # an alto B makes G7 with the melody's F as its seventh, an alto D does not.
    raw = chords((77, 71, 62, 43))
    sounding = sounding_pitches(raw)
    candidates = np.array([[71, 74]])
    live = PieceContext(melody_unresolved=0.54)
    found = candidate_violations(raw, sounding, 1, np.array([0]), candidates,
                                 np.zeros(2, dtype=bool), live, only("unresolved_seventh"))
    assert np.allclose(found[0], [0.54, 0.0])
    # offline the melody's next note is known: E5 resolves the F and nothing is charged
    known = chords((77, 71, 62, 43), (76, 72, 60, 48))
    found = candidate_violations(known, sounding_pitches(known), 1, np.array([0]), candidates,
                                 np.zeros(2, dtype=bool), live, only("unresolved_seventh"))
    assert found[0].tolist() == [0.0, 0.0]
    assert not candidate_violations(raw, sounding, 1, np.array([0]), candidates,
                                    np.zeros(2, dtype=bool), None,
                                    only("unresolved_seventh")).any()


def test_a_live_cadence_on_the_melodys_tonic_may_be_the_last():
    # A fermata on the melody's C in C major: a live harmoniser does not know whether it
    # ends the piece, so a bass other than C is charged a share of the final-chord rule.
    raw = chords((67, 62, 59, 43), (72, 67, 64, 48))
    sounding = sounding_pitches(raw)
    cadences = np.zeros(8, dtype=bool)
    cadences[4] = True
    bass = np.array([[48, 45]])
    live = PieceContext(tonic=0, cadences=cadences, tonic_cadence=0.5)
    found = candidate_violations(raw, sounding, 3, np.array([4]), bass, np.zeros(2, dtype=bool),
                                 live, only("final_chord"))
    assert found[0].tolist() == [0.0, 0.5]
    offline = PieceContext(tonic=0, cadences=cadences)  # the end is known there: no charge
    assert not candidate_violations(raw, sounding, 3, np.array([4]), bass,
                                    np.zeros(2, dtype=bool), offline, only("final_chord")).any()
    on_the_fifth = raw.copy()
    on_the_fifth[0, 4] = 79  # the melody on G: a half cadence is as likely
    assert not candidate_violations(on_the_fifth, sounding_pitches(on_the_fifth), 3,
                                    np.array([4]), bass, np.zeros(2, dtype=bool), live,
                                    only("final_chord")).any()
