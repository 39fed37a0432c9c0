import numpy as np
import pytest

from kantor.engine.chorale.encoding import HOLD_PITCH as H
from kantor.engine.chorale.encoding import build_metadata
from kantor.engine.chorale.keys import Key, KeyParseError, estimate_key, key_of_setting, parse_key


@pytest.mark.parametrize(("text", "key", "sharps"), [
    ("b minor", Key(11, "minor"), 2),
    ("Bm", Key(11, "minor"), 2),
    ("F# major", Key(6, "major"), 6),
    ("Eb", Key(3, "major"), -3),
    ("bb minor", Key(10, "minor"), -5),
    ("d dorian", Key(2, "minor"), 0),
    ("e phrygian", Key(4, "minor"), 0),
    ("G mixolydian", Key(7, "major"), 0),
    ("c sharp minor", Key(1, "minor"), 4),
])
def test_key_names_give_tonic_mode_and_signature(text, key, sharps):
    assert parse_key(text) == (key, sharps)


@pytest.mark.parametrize("text", ["H", "b minr", "", "C##x"])
def test_unknown_key_names_say_what_is_accepted(text):
    with pytest.raises(KeyParseError, match=r"key|mode"):
        parse_key(text)


def line(pitches: list[int], lengths: list[int]) -> np.ndarray:
    raw = []
    for p, n in zip(pitches, lengths, strict=True):
        raw += [p] + [H] * (n - 1)
    return np.array(raw, dtype=np.int16)


def test_a_minor_tune_stays_minor():
    # "B minor" with two sharps: D F# B ... ends on B; sings D (minor third) not D#.
    tune = line([71, 74, 73, 71, 66, 67, 69, 71], [4, 4, 4, 4, 4, 4, 4, 8])
    assert estimate_key(tune, 2) == Key(11, "minor")


def test_a_major_tune_ends_on_its_tonic():
    tune = line([67, 71, 74, 72, 71, 69, 67], [4, 4, 4, 4, 4, 4, 8])
    assert estimate_key(tune, 1) == Key(7, "major")


def test_a_modal_tune_without_its_third_follows_the_signature():
    # D Dorian with no sharps or flats, never singing F or F#: the final D on the
    # signature's 2nd degree reads as minor.
    tune = line([62, 64, 67, 69, 67, 64, 62], [4, 4, 4, 4, 4, 4, 8])
    assert estimate_key(tune, 0) == Key(2, "minor")


def test_setting_key_reads_the_bass_and_the_third_over_the_piece():
    # A minor cadence with a Picardy third at the end: still A minor.
    raw = np.array([[72, H, 71, 73], [64, H, 64, 64], [57, H, 56, 57], [45, H, 52, 45]],
                   dtype=np.int16)
    assert key_of_setting(raw) == Key(9, "minor")
    major = np.array([[73, H, 71, 73], [64, H, 64, 64], [57, H, 56, 57], [45, H, 52, 45]],
                     dtype=np.int16)
    assert key_of_setting(major) == Key(9, "major")


def test_metadata_carries_mode_tonic_and_distances():
    fermatas = np.zeros(40, dtype=bool)
    fermatas[20:24] = True
    meta = build_metadata(40, 0, 16, fermatas, -1, mode=1, tonic_degree=2)
    assert (meta[:, 4] == 1).all() and (meta[:, 5] == 2).all()
    assert meta[20, 6] == 0 and meta[19, 6] == 1 and meta[0, 6] == 6  # 20 steps: 17-32
    assert meta[30, 6] == 7  # no fermata ahead
    assert meta[39, 7] == 0 and meta[38, 7] == 1 and meta[0, 7] == 7
