"""The style yardstick: chord reading, textbook features on hand-written fragments, the
progression model and the discriminator's behaviour on settings it can and cannot tell."""

import numpy as np
import pytest

from kantor.engine.chorale.encoding import HOLD_PITCH as H
from kantor.engine.chorale.encoding import build_metadata
from kantor.engine.chorale.keys import Key
from kantor.export.chorale.analysis import (
    ChordBigram,
    analyse_chord,
    chord_symbols,
    setting_features,
)
from kantor.export.chorale.style import Setting, discriminate

pytest.importorskip("sklearn")


def test_chords_are_read_with_root_kind_and_inversion():
    assert analyse_chord((0, 4, 7, 10), 0).kind == "dom7"
    assert analyse_chord((0, 4, 7, 10), 0).seventh == 10
    first = analyse_chord((0, 4, 7), 4)
    assert (first.root, first.kind, first.inversion, first.complete) == (0, "maj", 1, True)
    assert analyse_chord((2, 5, 9), 2).kind == "min"
    open_fifth = analyse_chord((0, 7), 0)
    assert open_fifth.kind == "other"  # no third: not a triad
    assert not analyse_chord((0, 4), 0).complete  # a third without its fifth


def grid(*voices: list[int]) -> np.ndarray:
    return np.array(voices, dtype=np.int16)


def test_a_suspension_and_a_resolved_seventh_are_counted():
    # G7 -> C in quarters (4 steps each). The alto's F (the seventh) falls to E; then
    # the alto holds E over the next beat against a D-minor chord (E against D and F:
    # a suspended ninth) and steps down to D.
    soprano = [67, H, H, H, 67, H, H, H, 69, H, H, H, 65, H, H, H]
    alto = [65, H, H, H, 64, H, H, H, H, H, H, H, 62, H, H, H]
    tenor = [59, H, H, H, 60, H, H, H, 57, H, H, H, 57, H, H, H]
    bass = [43, H, H, H, 48, H, H, H, 50, H, H, H, 50, H, H, H]
    raw = grid(soprano, alto, tenor, bass)
    meta = build_metadata(16, 0, 16, None, 0)
    features = setting_features(raw, meta, Key(0, "major"))
    assert features["sevenths_resolved"] == (1, 1)
    assert features["alto_suspensions_per_beat"][0] == 1
    assert features["tenor_suspensions_per_beat"][0] == 0
    assert features["alto_repeated"] == (0, 2)
    assert features["final_on_tonic"] == (0.0, 1.0)  # it ends on D minor


def test_an_unresolved_seventh_and_block_chords_show():
    soprano = [67, H, H, H, 76, H, H, H]
    alto = [65, H, H, H, 72, H, H, H]  # the seventh leaps up
    tenor = [59, H, H, H, 60, H, H, H]
    bass = [43, H, H, H, 48, H, H, H]
    features = setting_features(grid(soprano, alto, tenor, bass),
                                build_metadata(8, 0, 16, None, 0), Key(0, "major"))
    assert features["sevenths_resolved"] == (0, 1)
    assert features["alto_quarter"] == (2, 2) and features["alto_eighth"] == (0, 2)
    assert features["final_on_tonic"] == (1.0, 1.0)
    assert features["final_root_position"] == (1.0, 1.0)


def test_progression_model_prefers_what_it_has_seen():
    v_i = [("major", 7, "maj", 0, 0), ("major", 0, "maj", 0, 1)]
    model = ChordBigram().fit([v_i] * 20)
    seen = model.score(v_i)
    unseen = model.score([("major", 7, "maj", 0, 0), ("major", 2, "min", 0, 1)])
    assert seen[0] > unseen[0] and seen[1] == unseen[1] == 2
    raw = grid([67, H, H, H, 72, H, H, H], [62, H, H, H, 64, H, H, H],
               [59, H, H, H, 55, H, H, H], [43, H, H, H, 48, H, H, H])
    assert chord_symbols(raw, build_metadata(8, 0, 16, None, 0), Key(0, "major")) == v_i


def fake_rows(shift: float, rng: np.random.Generator) -> list[Setting]:
    rows = []
    for m in range(24):
        for source, offset in (("bach", 0.0), ("kantor", shift), ("kantor", shift)):
            values = rng.normal(offset, 1.0, 5)
            features = {f"f{i}": (float(v), 1.0) for i, v in enumerate(values)}
            rows.append(Setting(f"m{m}", source, 0, np.zeros((4, 1)), features))
    return rows


def test_discriminator_tells_apart_only_what_differs():
    rng = np.random.default_rng(0)
    same = discriminate(fake_rows(0.0, rng), "kantor")
    different = discriminate(fake_rows(3.0, rng), "kantor")
    assert same["balanced_accuracy"] < 0.7
    assert different["balanced_accuracy"] > 0.95
    assert different["ci95"][0] <= different["balanced_accuracy"] <= different["ci95"][1]
    assert same["melodies"] == 24 and same["bach_settings"] == 24


def test_kantor_eval_style_runs_on_a_few_melodies(tmp_path, capsys):
    # too few melodies for a discriminator: the report and its plot still come out
    from kantor.bridges.cli import main

    output = tmp_path / "style.json"
    assert main(["eval", "harmonizer", "--style", "--split", "valid", "--limit", "3",
                 "--seeds", "1", "--iterations", "4", "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "discriminator: too few melodies" in printed
    assert output.exists() and output.with_suffix(".png").stat().st_size > 1000
