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


def test_every_shipped_card_follows_the_one_schema():
    from kantor.engine.models import CARD_SCHEMA, read_card

    for onnx in sorted(ASSETS.glob("*.onnx")):
        card = read_card(onnx)  # validated at load
        for key, kind in CARD_SCHEMA.items():
            assert isinstance(card[key], kind), (onnx.name, key)
        assert "test_metrics" not in card  # one metrics key
        if not card["metrics"].get("see"):  # a companion graph points at its card
            assert card["metrics"], onnx.name


@pytest.mark.parametrize(("change", "message"), [
    (lambda card: card.pop("metrics"), "'metrics' is missing"),
    (lambda card: card.update(metrics=[1, 2]), "'metrics' is not a dict"),
    (lambda card: card.update(name=None, task=None), "'name' is not a str; 'task' is not"),
])
def test_a_card_off_the_schema_is_refused_at_load(model_copy, change, message):
    card_path = model_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    change(card)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message):
        load_model(model_copy)
