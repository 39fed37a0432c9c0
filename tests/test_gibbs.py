"""The offline sampler with the shipped models: determinism, steering, ranges."""

import numpy as np
import pytest

from kantor.engine.chorale.encoding import HOLD_PITCH, TEXTBOOK_RANGES, build_metadata
from kantor.engine.chorale.gibbs import GibbsSettings
from kantor.engine.chorale.melody import (
    FixedNote,
    Melody,
    MelodyError,
    harmonize_melody,
    parse_fixed_note,
    sampler_inputs,
)
from kantor.engine.chorale.rules import voice_leading_report

H = HOLD_PITCH
# "Old Hundredth", first line, as quarters with a held last note.
LINE = [67, 67, 66, 64, 62, 67, 69, 71]


def hymn_line() -> Melody:
    soprano = []
    for i, p in enumerate(LINE):
        soprano += [p] + [H] * (7 if i in (0, len(LINE) - 1) else 3)
    fermatas = np.zeros(len(soprano), dtype=bool)
    fermatas[-8:] = True
    return Melody(soprano=np.array(soprano, dtype=np.int16), key_sharps=1, fermatas=fermatas)


FAST = GibbsSettings(iterations=12, chains=2)


def test_same_seed_same_harmonisation(sampler):
    a = harmonize_melody(sampler, hymn_line(), settings=GibbsSettings(seed=3, iterations=12))
    b = harmonize_melody(sampler, hymn_line(), settings=GibbsSettings(seed=3, iterations=12))
    c = harmonize_melody(sampler, hymn_line(), settings=GibbsSettings(seed=4, iterations=12))
    assert np.array_equal(a.raw, b.raw)
    assert not np.array_equal(a.raw, c.raw)


def test_soprano_kept_and_voices_in_range(sampler):
    melody = hymn_line()
    result = harmonize_melody(sampler, melody, settings=FAST)
    assert np.array_equal(result.raw[0], melody.soprano)
    for v in range(1, 4):
        pitches = result.raw[v][result.raw[v] >= 0]
        assert pitches.size > 0
        low, high = TEXTBOOK_RANGES[v]
        assert pitches.min() >= low and pitches.max() <= high


def test_pinned_notes_are_kept(sampler):
    pins = [parse_fixed_note("bass@1=G2:2"), parse_fixed_note("alto@5=D4")]
    result = harmonize_melody(sampler, hymn_line(), pins, settings=FAST)
    assert result.raw[3, 0] == 43 and (result.raw[3, 1:8] == H).all()
    assert result.raw[1, 16] == 62


def test_narrow_ranges_are_respected(sampler):
    settings = GibbsSettings(iterations=12, chains=1,
                             ranges=((60, 81), (62, 67), (52, 60), (40, 50)))
    result = harmonize_melody(sampler, hymn_line(), settings=settings)
    for v, (low, high) in enumerate(settings.ranges[1:], start=1):
        pitches = result.raw[v][result.raw[v] >= 0]
        assert pitches.min() >= low and pitches.max() <= high


def test_fermatas_and_key_reach_the_networks():
    _, _, meta = sampler_inputs(hymn_line())
    assert meta[-1, 2] == 1 and meta[0, 2] == 0
    assert (meta[:, 3] == 1).all()


def test_rules_steer_away_from_parallels(sampler):
    melody = hymn_line()
    counts = {}
    for weight in (0.0, 6.0):
        total = 0
        for seed in range(3):
            # Settling at a low temperature everywhere, so the rules decide what is left.
            # Every voice-leading rule charged (the defaults leave crossings to the networks).
            settings = GibbsSettings(iterations=20, chains=1, rule_weight=weight, seed=seed,
                                     temperature_end=0.2, offbeat_temperature_end=None,
                                     rule_weights=None)
            raw = harmonize_melody(sampler, melody, settings=settings).raw
            report = voice_leading_report(raw, melody.metadata())
            total += report["parallel_fifths"] + report["parallel_octaves"] + report["crossing"]
        counts[weight] = total
    assert counts[6.0] <= counts[0.0]
    assert counts[6.0] == 0


def test_bad_pins_and_empty_melodies_are_refused(sampler):
    with pytest.raises(MelodyError, match="not a voice"):
        parse_fixed_note("viola@1=C4")
    with pytest.raises(MelodyError, match="after the melody ends"):
        harmonize_melody(sampler, hymn_line(), [FixedNote(1, 10_000, 4, 60)])
    with pytest.raises(MelodyError, match="no notes"):
        harmonize_melody(sampler, Melody(soprano=np.full(8, -1, dtype=np.int16)))


def test_metadata_grid_matches_melody():
    melody = hymn_line()
    key = melody.resolved_key()  # estimated from the melody: it ends on its tonic
    assert key.tonic == int(melody.soprano[melody.soprano >= 0][-1]) % 12
    assert np.array_equal(melody.metadata(), build_metadata(
        melody.n_steps, 0, 16, melody.fermatas, 1, mode=int(key.minor),
        tonic_degree=key.degree_of(1)))


def test_fermatas_at_beats_cover_the_sounding_note():
    from kantor.engine.chorale.melody import fermatas_at_beats

    melody = hymn_line()  # first note lasts 2 beats, then quarters
    mask = fermatas_at_beats(melody, [2, 4])
    assert mask[:8].all() and not mask[8:12].any() and mask[12:16].all()
    with pytest.raises(MelodyError, match="outside the melody"):
        fermatas_at_beats(melody, [99])


def test_a_tune_from_outside_the_repertoire_ends_on_its_final(sampler):
    """The final chord is a root-position triad on the tune's tonic (here a Dorian final),
    read from the melody: the tonic, not the signature's major key (C)."""
    from kantor.engine.chorale.encoding import sounding_pitches
    from kantor.engine.chorale.melody import piece_context
    from kantor.export.chorale.outside_repertoire import TUNES

    tune = next(t for t in TUNES if "Dorian" in t.name)
    melody = tune.melody()
    assert melody.resolved_key() == tune.tonic()
    assert piece_context(melody).final_from == int(np.flatnonzero(melody.soprano >= 0)[-1])
    for seed in (0, 1):
        raw = harmonize_melody(sampler, melody, settings=GibbsSettings(seed=seed,
                                                                      iterations=12)).raw
        last = sounding_pitches(raw)[:, -1]
        assert last[3] % 12 == tune.tonic().tonic
        assert {int(p) % 12 for p in last} <= {2, 5, 6, 9}  # D, F or F#, A


def test_hidden_redraws_keep_the_melody_and_the_rules(sampler):
    """Notes redrawn together may be hidden from the networks; the rules still see them,
    so the result keeps its soprano, stays in range and the same seed repeats it."""
    melody = hymn_line()
    settings = GibbsSettings(iterations=12, chains=2, hide_redrawn="always", seed=5)
    a = harmonize_melody(sampler, melody, settings=settings)
    b = harmonize_melody(sampler, melody, settings=settings)
    assert np.array_equal(a.raw, b.raw)
    assert np.array_equal(a.raw[0], melody.soprano)
    report = voice_leading_report(a.raw, melody.metadata())
    assert report["out_of_range"] == 0
    plain = harmonize_melody(sampler, melody, settings=GibbsSettings(iterations=12, chains=2,
                                                                     seed=5))
    assert not np.array_equal(a.raw, plain.raw)  # hiding changes what the networks read


def test_rhythm_temperature_keeps_hold_rest_and_onset_odds():
    """With the rhythm apart, a low pitch temperature sharpens only the choice among new
    pitches: the odds of holding, resting and striking stay the networks' own."""
    from kantor.engine.chorale.encoding import FIRST_PITCH_TOKEN, HOLD, REST
    from kantor.engine.chorale.gibbs import _rhythm_apart

    probabilities = np.array([[0.0, 0.0, 0.0, 0.1, 0.4, 0.3, 0.15, 0.05]])
    with np.errstate(divide="ignore"):
        scores = np.log(probabilities)
    is_pitch = np.arange(probabilities.shape[1]) >= FIRST_PITCH_TOKEN
    out = _rhythm_apart(scores, np.array([0.5]), 1.0, is_pitch)
    drawn = np.exp(out - out.max())
    drawn /= drawn.sum()
    assert drawn[0, HOLD] == pytest.approx(0.4) and drawn[0, REST] == pytest.approx(0.1)
    assert drawn[0, is_pitch].sum() == pytest.approx(0.5)
    pitches = probabilities[0, is_pitch] ** 2  # temperature 0.5 squares the odds
    assert drawn[0, is_pitch] == pytest.approx(0.5 * pitches / pitches.sum())
    # a row where no pitch is allowed draws only what is
    blocked = np.where(is_pitch, -np.inf, scores)
    out = _rhythm_apart(blocked, np.array([0.5]), 1.0, is_pitch)
    assert np.isneginf(out[0, is_pitch]).all() and np.isfinite(out[0, HOLD])


@pytest.mark.parametrize("choice", [{"select": "best"}, {"errors": "none"}])
def test_unknown_chain_choice_is_refused(sampler, choice):
    with pytest.raises(ValueError, match="unknown chain selection"):
        harmonize_melody(sampler, hymn_line(), settings=GibbsSettings(iterations=1, **choice))


@pytest.mark.parametrize("select", ["likeliest", "first"])
def test_the_chain_returned_is_the_one_the_setting_names(sampler, select):
    result = harmonize_melody(sampler, hymn_line(), settings=GibbsSettings(
        iterations=6, chains=4, select=select, errors="parallels", seed=1))
    scores = result.chain_scores
    fewest = min(breaks for breaks, _ in scores)
    candidates = [k for k, (breaks, _) in enumerate(scores) if breaks == fewest]
    expected = (max(candidates, key=lambda k: scores[k][1]) if select == "likeliest"
                else candidates[0])
    assert (result.violations, result.log_likelihood) == scores[expected]
    # every chain's setting comes back, the melody kept in each, the result among them
    assert len(result.candidates) == 4
    assert np.array_equal(result.raw, result.candidates[expected])
    soprano = result.raw[0]
    assert all(np.array_equal(c[0], soprano) for c in result.candidates)
