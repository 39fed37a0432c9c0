"""The music-theory rewards (export/chorale/rewards.py), each on hand-written four-voice
chord changes that break its rule and that keep it. Voices S, A, T, B; MIDI pitches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kantor.export.chorale import rewards as r

C_MAJOR = (72, 67, 64, 48)  # C5 G4 E4 C3
ALL = (True, True, True, True)


def moment(previous, current, struck=ALL, **context) -> r.Moment:
    return r.Moment(None if previous is None else np.array(previous), np.array(current),
                    np.array(struck), **context)


@pytest.mark.parametrize(("rule", "breaks", "keeps", "broken"), [
    # C major -> D minor in parallel: S-B octaves and A-B fifths; C -> G by the book
    (r.parallel_perfects, moment(C_MAJOR, (74, 69, 65, 50)),
     moment(C_MAJOR, (71, 67, 62, 43)), 2),
    # soprano leaps up a third while the bass rises into an octave; by step it may
    (r.hidden_perfects, moment((76, 67, 60, 48), (79, 67, 59, 55)),
     moment((78, 67, 60, 48), (79, 67, 59, 55)), 1),
    (r.spacing, moment(None, (79, 64, 60, 48)), moment(None, C_MAJOR), 1),
    (r.crossing, moment(None, (72, 60, 64, 48)), moment(None, C_MAJOR), 1),
    (r.voice_range, moment(None, (72, 67, 64, 30)), moment(None, C_MAJOR), 1),
    # the alto strikes its G again; held, it is not a repeated note
    (r.repeated_notes, moment(C_MAJOR, (72, 67, 64, 48), struck=(True, True, False, False)),
     moment(C_MAJOR, (72, 67, 64, 48), struck=(True, False, False, False)), 1),
    # G7 (F5 in the soprano) -> C: F falls to E, or leaps up to G
    (r.seventh_resolution, moment((77, 71, 62, 43), (79, 72, 64, 48)),
     moment((77, 71, 62, 43), (76, 72, 64, 48)), 1),
    # G -> C in C major: the soprano's leading tone B rises to C, or falls to G
    (r.leading_tone_resolution, moment((71, 67, 62, 43), (67, 64, 60, 48), tonic=0),
     moment((71, 67, 62, 43), (72, 67, 64, 48), tonic=0), 1),
    # a fermata on C major reached from D minor, over its third; or from G, over its root
    (r.cadence_formula, moment((74, 69, 65, 50), (72, 67, 60, 52), fermata=True, tonic=0),
     moment((71, 67, 62, 43), (72, 67, 64, 48), fermata=True, tonic=0), 2),
    (r.tonic_at_end, moment((71, 67, 62, 43), (72, 69, 64, 45), final=True, tonic=0),
     moment((71, 67, 62, 43), (72, 67, 64, 48), final=True, tonic=0), 1),
    (r.chord_completeness, moment(None, (72, 67, 60, 48)), moment(None, C_MAJOR), 1),
])
def test_each_rule_on_a_fragment_that_breaks_it_and_one_that_keeps_it(rule, breaks, keeps,
                                                                       broken):
    assert rule(breaks) == -broken
    assert rule(keeps) == 0.0


def test_what_bach_allows_is_not_punished():
    # a half cadence on the dominant at a fermata; a Picardy third at the end of a minor
    # piece; an inner voice's leading tone falling to the fifth
    assert r.cadence_formula(moment((69, 64, 60, 45), (71, 67, 62, 43), fermata=True,
                                    tonic=0)) == 0.0
    assert r.tonic_at_end(moment((68, 64, 59, 40), (69, 64, 61, 45), final=True,
                                 tonic=9)) == 0.0
    assert r.leading_tone_resolution(moment((74, 71, 67, 43), (76, 67, 64, 48),
                                            tonic=0)) == 0.0


def test_the_weighted_sum_and_the_weights_config(tmp_path):
    parallel = moment(C_MAJOR, (74, 69, 65, 50))
    every = r.rewards(parallel)
    assert set(every) == set(r.REWARDS) == set(r.DEFAULT_REWARD_WEIGHTS)
    assert r.reward(parallel) == pytest.approx(
        sum(r.DEFAULT_REWARD_WEIGHTS[k] * v for k, v in every.items()))
    config = tmp_path / "weights.json"
    config.write_text(json.dumps({"parallel_perfects": 3.0}))
    weights = r.load_weights(config)
    assert weights["parallel_perfects"] == 3.0 and weights["spacing"] == 0.25
    config.write_text(json.dumps({"fifths": 1.0}))
    with pytest.raises(ValueError, match="unknown reward 'fifths'"):
        r.load_weights(config)


def test_the_rewards_count_what_the_yardstick_counts_in_bach(tiny_corpus):
    # one definition of each rule: over Bach's chord changes the rewards find exactly
    # the yardstick's parallels, hidden fifths, crossings, spacing and range breaks
    from kantor.engine.chorale.rules import voice_leading_report

    for chorale in tiny_corpus.chorales[:6]:
        report = voice_leading_report(chorale.raw)
        found = {name: -sum(rule(m) for m in r.moments(chorale.raw))
                 for name, rule in r.REWARDS.items()}
        assert found["parallel_perfects"] == (report["parallel_fifths"]
                                              + report["parallel_octaves"])
        assert found["hidden_perfects"] == report["hidden_perfect_sb"]
        assert found["range"] >= report["out_of_range"]  # per sonority, not per onset
        moments = r.moments(chorale.raw)
        assert len(moments) == report["sonorities"]
        assert sum(bool(r.spacing(m)) for m in moments) == report["spacing"]
        assert sum(bool(r.crossing(m)) for m in moments) == report["crossing"]


def test_rule_rates_are_breaks_per_sonority():
    # C major, D minor in parallel octaves and fifths, then the bass alone moves on:
    # three sonorities, two parallels
    raw = np.array([[72, 74, -2], [67, 69, -2], [64, 65, -2], [48, 50, 53]])
    rates = r.rule_rates([(raw, None, 0)])
    assert rates["parallel_perfects"] == pytest.approx(2 / 3)
    assert rates["range"] == 0.0 and set(rates) == set(r.REWARDS)
