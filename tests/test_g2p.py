"""The neural G2P: a tiny model trained and exported here (ONNX vs torch parity), and the
shipped model's predictions, input handling and integrity checks."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from kantor.engine.models import ASSETS, ModelError
from kantor.engine.speech.g2p import (
    DEFAULT_BEAM,
    G2P,
    LETTER_INDEX,
    MAX_PHONES,
    PHONE_SYMBOLS,
    clean_word,
    model_paths,
)
from kantor.export.speech.g2p import load_lexicon, split_lexicon, split_of

# Held-out (test-split) words of everyday English, fixed by the hash rule.
HELD_OUT = ("additional", "address", "admission", "adoption", "afternoon", "alongside",
            "anxious", "anyone", "approaches", "default")


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon()


@pytest.fixture(scope="module")
def shipped() -> G2P:
    return G2P.load()


@pytest.mark.slow
def test_tiny_model_trains_exports_and_matches_torch(tmp_path, lexicon):
    pytest.importorskip("torch")
    from kantor.export.speech.g2p import (
        PARITY_TOLERANCE,
        PRESETS,
        default_dict_path,
        export_and_card,
        train,
    )

    config = replace(PRESETS["tiny"], epochs=1, limit_words=600, threads=1)
    net, record = train(config, tmp_path / "run", lexicon)
    assert record["steps"] > 0 and record["evals"]
    paths = export_and_card(net, record, lexicon, default_dict_path(), tmp_path / "out",
                            eval_limit=40)
    g2p = G2P.load(tmp_path / "out")
    parity = g2p.card["onnx_parity_max_abs_error"]
    assert parity["logits"] <= PARITY_TOLERANCE and parity["memory"] <= PARITY_TOLERANCE
    assert [p.name for p in paths] == ["g2p-encoder.onnx", "g2p-decoder.onnx"]
    words = ["cat", "hello", "x"]
    batch = g2p.predict_batch(words)
    assert batch == [g2p.predict(w) for w in words]
    for phones in batch:
        assert len(phones) <= MAX_PHONES
        assert set(phones) <= set(PHONE_SYMBOLS)
    assert g2p.card["metrics"]["test"]["words"] == 40
    # the cached step graphs decode what the network decodes over the whole prefix
    import torch

    from kantor.export.speech.g2p import greedy_decode

    letters = np.zeros((len(words), max(map(len, words))), dtype=np.int64)
    for row, word in enumerate(words):
        letters[row, :len(word)] = [LETTER_INDEX[c] for c in word]
    net.eval()
    greedy = G2P(g2p.encoder, g2p.decoder, beam=1)
    assert greedy.decode(letters) == greedy_decode(net, torch.from_numpy(letters))
    # `quantize`: int8 copies the engine loads, with cards naming the float files
    from kantor.export.speech.g2p import QUANTIZED_VERSION, quantize_shipped

    small = dict(list(lexicon.items())[::200])  # a quick scoring
    quantized_paths = quantize_shipped(tmp_path / "out", tmp_path / "int8", small)
    quantized = G2P.load(tmp_path / "int8")
    card, origin = quantized.card, quantized.card["quantized_from"]
    assert card["version"] == QUANTIZED_VERSION and "int8" in card["weights_storage"]
    assert origin["decoder_sha256"] == g2p.card["sha256"]
    assert origin["test_words_pronounced_differently"] <= origin["test_words"]
    assert sum(p.stat().st_size for p in quantized_paths) < sum(
        p.stat().st_size for p in paths)
    for phones in quantized.predict_batch(words):
        assert len(phones) <= MAX_PHONES and set(phones) <= set(PHONE_SYMBOLS)
    with pytest.raises(ValueError, match="already holds quantized"):
        quantize_shipped(tmp_path / "int8", tmp_path / "again", small)



def test_split_is_fixed_by_the_word_hash(lexicon):
    parts = split_lexicon(lexicon)
    assert all(split_of(w) == "test" for w in HELD_OUT)
    assert all(w in parts["test"] for w in HELD_OUT)
    share = len(parts["test"]) / len(lexicon)
    assert 0.04 < share < 0.06
    assert not set(parts["test"]) & set(parts["train"])


def test_shipped_model_pronounces_held_out_words(shipped, lexicon):
    predictions = shipped.predict_batch(HELD_OUT)
    right = [w for w, p in zip(HELD_OUT, predictions, strict=True)
             if tuple(p) in lexicon[w]]
    assert len(right) >= len(HELD_OUT) - 2, dict(zip(HELD_OUT, predictions, strict=True))
    # a made-up word still gets a plausible pronunciation with one primary stress
    made_up = shipped.predict("blorftastic")
    assert made_up[0] == "B" and sum(p.endswith("1") for p in made_up) == 1


def test_shipped_card_records_held_out_scores(shipped, lexicon):
    card = shipped.card
    test = card["metrics"]["test"]
    assert test["words"] == len(split_lexicon(lexicon)["test"])
    assert 0 < test["per"] < 0.1 and 0 < test["wer"] < 0.35
    assert card["training_data"]["split_rule"].startswith("int(sha256(")
    assert "any listed pronunciation" in card["metrics"]["scoring_rule"]
    assert card["parameters"] > 1_000_000


def test_odd_input_is_cleaned_not_fatal(shipped):
    assert shipped.predict("") == []
    assert shipped.predict("123 !?") == []
    assert shipped.predict("Anyone") == shipped.predict("ANYONE") == shipped.predict("anyone")
    assert shipped.predict("any-one!") == shipped.predict("anyone")
    assert clean_word("Don't") == "don't"
    long_word = shipped.predict("supercalifragilistic" * 10)
    assert 0 < len(long_word) <= MAX_PHONES
    assert shipped.predict_batch(["", "cat", "@@"]) == [[], shipped.predict("cat"), []]
    assert shipped.predict_batch([]) == []


def _copy_assets(tmp_path):
    for path in model_paths(ASSETS):
        shutil.copy(path, tmp_path / path.name)
        shutil.copy(path.with_suffix(".json"), tmp_path / path.with_suffix(".json").name)
    return model_paths(tmp_path)


def test_corrupt_or_missing_files_raise_model_error(tmp_path):
    encoder, decoder = _copy_assets(tmp_path)
    G2P.load(tmp_path)  # the copy itself is fine
    data = bytearray(decoder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    decoder.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        G2P.load(tmp_path)
    decoder.unlink()
    with pytest.raises(ModelError, match="missing"):
        G2P.load(tmp_path)
    encoder.with_suffix(".json").unlink()
    with pytest.raises(ModelError):
        G2P.load(tmp_path)
    with pytest.raises(ModelError, match="missing"):
        G2P.load(tmp_path / "nowhere")


def test_beam_search_agrees_with_itself_and_with_greedy_at_width_one(shipped, lexicon):
    words = ["cat", "approaches", "blorftastic", "x", "supercalifragilistic"]
    greedy = G2P(shipped.encoder, shipped.decoder, beam=1)
    wide = G2P(shipped.encoder, shipped.decoder, beam=5)
    beamed = wide.predict_batch(words)
    # one word alone or in a batch of words of other lengths: the same search
    assert beamed == [wide.predict(w) for w in words]
    for phones in beamed:
        assert 0 < len(phones) <= MAX_PHONES and set(phones) <= set(PHONE_SYMBOLS)
    letters = np.array([[LETTER_INDEX[c] for c in "cat"]], dtype=np.int64)
    assert wide.decode_beam(letters, 1) == greedy.decode(letters)
    # the beam finds pronunciations at least as often as greedy on held-out words
    right = {name: sum(tuple(p) in lexicon[w]
                       for w, p in zip(HELD_OUT, g.predict_batch(HELD_OUT), strict=True))
             for name, g in (("greedy", greedy), ("beam", wide))}
    assert right["beam"] >= right["greedy"] - 1, right
    assert shipped.beam == DEFAULT_BEAM
    assert f"width {DEFAULT_BEAM}" in shipped.card["decoding"]
    with pytest.raises(ValueError, match="beam"):
        G2P(shipped.encoder, shipped.decoder, beam=0)


def test_the_card_records_conversions_that_kept_the_accuracy(shipped):
    """1.0.0 -> 1.1.0: the same weights with a key/value cache; 1.1.0 -> 1.2.0: int8
    weights. Neither pronounces the held-out words worse."""
    card = shipped.card
    converted, quantized = card["converted_from"], card["quantized_from"]
    assert converted["version"] == "1.0.0" and quantized["version"] == "1.1.0"
    assert converted["max_abs_logit_difference_vs_old_graphs"] <= card["onnx_parity_tolerance"]
    for split in ("test", "valid"):
        for metric in ("per", "wer", "per_first", "wer_first"):
            assert card["metrics"][split][metric] <= quantized["metrics"][split][metric]
            assert quantized["metrics"][split][metric] <= converted["old_metrics"][split][
                metric]


def test_a_decoder_without_a_cache_is_refused(shipped):
    with pytest.raises(ModelError, match="not a cached decoder step"):
        G2P(shipped.encoder, shipped.encoder)


def test_front_end_guesses_a_texts_unknown_words_in_one_batch(shipped):
    from kantor.engine.speech.frontend import FrontEnd

    calls = []

    class Counting:
        """The shipped G2P, counting its batched calls (the real model answers)."""

        def __call__(self, word):
            calls.append([word])
            return shipped.predict(word)

        def predict_batch(self, words):
            calls.append(list(words))
            return shipped.predict_batch(words)

    frontend = FrontEnd.load(fallback=Counting())
    words = [w for p in frontend.phrases("Blorftastic zindle, the quorbish blorftastic cat.")
             for w in p.words]
    assert calls == [["blorftastic", "zindle", "quorbish"]]
    by_text = {w.text: w for w in words}
    assert by_text["zindle"].source == "g2p"
    assert list(by_text["zindle"].phones) == shipped.predict("zindle")
    assert by_text["cat"].source == "dictionary"
