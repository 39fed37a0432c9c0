"""Model files and cards: verification at load, clear errors on damage."""

import json
import shutil

import numpy as np
import pytest

from kantor.engine.models import ASSETS, ModelError, load_model


@pytest.fixture
def model_copy(tmp_path):
    for suffix in (".onnx", ".json"):
        shutil.copy(ASSETS / f"chorale-alto{suffix}", tmp_path / f"chorale-alto{suffix}")
    return tmp_path / "chorale-alto.onnx"


def test_shipped_cards_carry_metrics_and_hash():
    for voice in ("soprano", "alto", "tenor", "bass"):
        card = json.loads((ASSETS / f"chorale-{voice}.json").read_text())
        assert card["voice"] == voice
        assert len(card["sha256"]) == 64
        assert card["metrics"]["nll_per_token_nats"] > 0
        assert 0 < card["metrics"]["accuracy"] <= 1
        assert card["training_data"]["split"]["test"] > 0


def test_a_verified_model_runs(model_copy):
    model = load_model(model_copy)
    window = 2 * model.card["context"] + 1
    logits = model.run({"tokens": np.full((3, 4, window), 4, dtype=np.int64),
                        "meta": np.zeros((3, window, len(model.card["inputs"]["meta"]["fields"])),
                                         dtype=np.int64)})[0]
    assert logits.shape == (3, model.card["outputs"]["logits"]["shape"][1])


def test_corrupt_model_fails_with_a_clear_message(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        load_model(model_copy)


def test_truncated_model_fails_even_without_hash_check(model_copy):
    model_copy.write_bytes(model_copy.read_bytes()[:1000])
    with pytest.raises(ModelError, match="cannot load"):
        load_model(model_copy, verify=False)


def test_missing_card_and_missing_file(model_copy):
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"card .* is missing"):
        load_model(model_copy)
    with pytest.raises(ModelError, match="is missing"):
        load_model(model_copy.with_name("nothing.onnx"))
