import numpy as np
import pytest

from kantor.engine.chorale.encoding import (
    END,
    HOLD,
    HOLD_PITCH,
    MASK,
    META_FIELDS,
    REST,
    REST_PITCH,
    START,
    VoiceVocabulary,
    build_metadata,
    pad_for_windows,
    raw_to_tokens,
    sounding_pitches,
    tokens_to_raw,
    transpose_key,
)

H, R = HOLD_PITCH, REST_PITCH
VOCABS = [VoiceVocabulary(v, lo, hi) for v, lo, hi in
          (("soprano", 57, 81), ("alto", 53, 74), ("tenor", 48, 69), ("bass", 36, 64))]


def test_tokens_round_trip():
    raw = np.array([[67, H, R, 69], [60, H, H, 62], [55, 57, H, R], [48, H, 43, H]],
                   dtype=np.int16)
    tokens = raw_to_tokens(raw, VOCABS)
    assert tokens[0, 1] == HOLD and tokens[0, 2] == REST
    assert np.array_equal(tokens_to_raw(tokens, VOCABS), raw)


def test_out_of_range_pitch_is_refused():
    raw = np.array([[90], [60], [55], [48]], dtype=np.int16)
    with pytest.raises(ValueError, match="soprano"):
        raw_to_tokens(raw, VOCABS)


def test_sounding_pitches_carry_holds_and_silence_rests():
    raw = np.array([[H, 60, H, R, H, 62]], dtype=np.int16)
    assert sounding_pitches(raw).tolist() == [[-1, 60, 60, -1, -1, 62]]


def test_metadata_of_a_pickup_bar():
    # One-quarter pickup in 4/4: 12 steps of the first bar precede step 0.
    meta = build_metadata(8, bar_offset_steps=12, steps_per_bar=16, fermata_steps=None,
                          key_sharps=-2)
    assert meta[:, 1].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]  # downbeat after the pickup
    assert meta[:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert (meta[:, 3] == 10).all()  # two flats, mod 12


def test_transposing_the_key_signature():
    assert transpose_key(0, 2) == 2  # C -> D major: two sharps
    assert transpose_key(0, -2) == (-2) % 12  # C -> Bb major: two flats


def test_windows_mask_the_predicted_voice_and_pad_the_edges(sampler):
    c = sampler.context
    raw = np.array([[67, H, 69], [60, H, 62], [55, H, 57], [48, H, 50]], dtype=np.int16)
    tokens = raw_to_tokens(raw, sampler.vocabularies)
    meta = build_metadata(3, 0, 16, None, 0)
    padded, padded_meta = pad_for_windows(tokens, meta, context=c)
    windows, window_meta = sampler.windows(padded[None], padded_meta, np.zeros(2, dtype=int),
                                           np.array([0, 2]), voice=1)
    assert windows.shape == (2, 4, 2 * c + 1)
    assert window_meta.shape == (2, 2 * c + 1, len(META_FIELDS))
    assert windows[0, 1, c] == MASK and windows[0, 0, c] == tokens[0, 0]
    assert windows[0, 0, 0] == START and windows[1, 3, -1] == END
    assert window_meta[0, c - 2:c + 3, 0].tolist() == [2, 3, 0, 1, 2]  # ticks continue outside
