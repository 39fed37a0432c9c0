"""Temperature scaling and calibration error (export/chorale/calibration.py) on data
whose calibration is known."""

from __future__ import annotations

import numpy as np
import pytest

from kantor.export.chorale.calibration import Scored, fit_temperature, nll, reliability


def drawn(true_logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Targets drawn from softmax(true_logits): a model with these logits is calibrated."""
    probs = np.exp(true_logits - true_logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return np.array([rng.choice(probs.shape[1], p=p) for p in probs])


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, (6000, 8))
    return Scored(logits, drawn(logits, rng))


def test_a_calibrated_model_keeps_temperature_one_and_a_small_ece(calibrated):
    assert fit_temperature(calibrated) == pytest.approx(1.0, abs=0.06)
    assert reliability(calibrated)["ece"] < 0.02


@pytest.mark.parametrize("scale", [0.5, 2.5])
def test_an_over_or_under_confident_model_gets_its_temperature_back(calibrated, scale):
    # logits scaled by `scale` are over-confident (> 1) or under-confident (< 1): the
    # fitted temperature undoes the scaling, and NLL and ECE fall
    skewed = Scored(calibrated.logits * scale, calibrated.targets)
    temperature = fit_temperature(skewed)
    assert temperature == pytest.approx(scale, rel=0.08)
    assert nll(skewed, temperature) < nll(skewed)
    assert reliability(skewed, temperature)["ece"] < reliability(skewed)["ece"]


def test_reliability_bins_hold_every_token_once(calibrated):
    report = reliability(calibrated, bins=15)
    assert len(report["bins"]) == 15
    assert sum(b["count"] for b in report["bins"]) == calibrated.targets.size
    filled = [b for b in report["bins"] if b["count"]]
    assert all(b["low"] <= b["confidence"] <= b["high"] for b in filled)


def test_the_engine_samples_from_the_calibrated_logits():
    # each shipped card carries the temperature fitted on the validation chorales; the
    # offline sampler and the live processor divide the networks' logits by it
    from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER, META_SIZES
    from kantor.engine.chorale.gibbs import ChoraleSampler
    from kantor.engine.chorale.live import LiveHarmonizer

    sampler = ChoraleSampler.load()
    rng = np.random.default_rng(0)
    window = 2 * sampler.context + 1
    tokens = np.stack([rng.integers(0, v.size, (3, window)) for v in sampler.vocabularies], 1)
    meta = np.stack([rng.integers(0, n, (3, window)) for n in META_SIZES], 2)
    for voice, model in enumerate(sampler.models):
        temperature = model.card["calibration"]["temperature"]
        assert 0.5 < temperature < 2.0 and sampler.calibration[voice] == temperature
        np.testing.assert_allclose(sampler.logits(voice, tokens, meta),
                                   sampler.raw_logits(voice, tokens, meta) / temperature,
                                   rtol=1e-6)
    live = LiveHarmonizer.load()
    for voice in LIVE_DECISION_ORDER:
        assert live._calibration[voice] == live.models[voice].card["calibration"][
            "temperature"]


def test_tuned_networks_report_at_the_temperature_they_play_at(calibrated, tmp_path):
    # a tuned network keeps its prior's temperature (it was tuned playing at it): its card
    # gets the test NLL and ECE at that temperature, and the refitted T only beside them
    import json
    import shutil

    from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER, VOICES
    from kantor.engine.models import ASSETS
    from kantor.export.chorale.calibration import (
        at_playing_temperature,
        calibrate,
        write_temperatures,
    )

    skewed = Scored(calibrated.logits * 2.5, calibrated.targets)
    names = [VOICES[v] for v in LIVE_DECISION_ORDER]
    report = at_playing_temperature(calibrate([skewed] * 3, [skewed] * 3, names),
                                    [skewed] * 3, [1.0, 1.5, 2.5])
    for name, temperature in zip(names, [1.0, 1.5, 2.5], strict=True):
        playing = report[name]["playing"]
        assert playing["temperature"] == temperature
        assert playing["test_nll"] == pytest.approx(nll(skewed, temperature))
        assert playing["test_ece"] == pytest.approx(reliability(skewed, temperature)["ece"])
    for name in names:
        shutil.copy(ASSETS / f"chorale-live-tuned-{name}.json", tmp_path)
    write_temperatures({"offline": {}, "live": {}, "live_tuned": report}, tmp_path)
    card = json.loads((tmp_path / "chorale-live-tuned-bass.json").read_text())["calibration"]
    assert card["temperature"] == report["bass"]["playing"]["temperature"]
    assert card["test_nll"] == report["bass"]["playing"]["test_nll"]
    assert card["refitted_on_valid"]["temperature"] == report["bass"]["temperature"]
