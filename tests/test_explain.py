"""Why this note (engine/chorale/explain.py): integrated gradients over the cells a voice
network read, from weights read back out of the shipped ONNX files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER, MASK, raw_to_tokens
from kantor.engine.chorale.explain import (
    LiveExplainer,
    VoiceWeights,
    explain_offline,
    integrated_gradients,
)
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings
from kantor.engine.chorale.melody import harmonize_melody, sampler_inputs
from kantor.engine.models import ASSETS, BUNDLED_MELODY


@pytest.fixture(scope="module")
def offline(sampler):
    from kantor.bridges.scorefiles import read_melody
    from kantor.engine.chorale.gibbs import GibbsSettings

    melody = read_melody(BUNDLED_MELODY)
    result = harmonize_melody(sampler, melody, settings=GibbsSettings(iterations=8, chains=2))
    tokens = raw_to_tokens(result.raw, sampler.vocabularies)
    meta = sampler_inputs(melody)[2][:, sampler.meta_columns]
    return tokens, meta


def test_weights_read_back_give_the_sessions_logits(sampler):
    """Every shipped voice network, offline and live, rebuilt in numpy, agrees with ONNX
    Runtime (from_onnx checks it on random windows and raises otherwise)."""
    for model in sampler.models:
        assert VoiceWeights.from_onnx(model).window == 2 * sampler.context + 1
    live = LiveHarmonizer.load()
    for v in LIVE_DECISION_ORDER:
        assert VoiceWeights.from_onnx(live.models[v]).window == live.past + 1 + live.max_lookahead


@pytest.mark.parametrize(("voice", "step"), [(3, 16), (1, 0), (2, 37), (0, 8)])
def test_attributions_add_up_to_the_logit_difference(sampler, offline, voice, step):
    """The completeness axiom, within 1%, on a real harmonisation."""
    tokens, meta = offline
    weights = VoiceWeights.from_onnx(sampler.models[voice])
    explanation = explain_offline(weights, sampler.vocabularies, tokens, meta, voice, step,
                                  sampler.context)
    a = explanation.attribution
    assert a.completeness_error < 0.01, (a.cells.sum(), a.logit - a.baseline_logit)
    # the logit explained is the network's own for the note it was given there
    assert a.target == tokens[voice, step]
    # the cell the network does not see (its own, masked) is credited with nothing
    assert explanation.notes[voice][sampler.context] == "?"
    assert a.cells[voice, sampler.context] == 0


def test_the_gradient_is_the_networks_own(sampler, offline):
    """The hand-written backpropagation against central differences along one cell."""
    tokens, meta = offline
    weights = VoiceWeights.from_onnx(sampler.models[3])
    window = np.pad(tokens, ((0, 0), (sampler.context, sampler.context)),
                    constant_values=MASK)[:, 10:10 + weights.window].copy()
    cells, fields = weights.embed(window, meta[:weights.window])
    target = 7
    _, grad = weights.gradient(cells[None].astype(np.float64), fields, target)
    direction = np.zeros_like(cells)
    direction[2, 5] = np.random.default_rng(0).normal(size=cells.shape[-1])
    eps = 1e-3
    up, _ = weights.gradient((cells + eps * direction)[None].astype(np.float64), fields, target)
    down, _ = weights.gradient((cells - eps * direction)[None].astype(np.float64), fields,
                               target)
    numeric = (up[0] - down[0]) / (2 * eps)
    assert numeric == pytest.approx(float((grad[0] * direction).sum()), rel=1e-3, abs=1e-4)


def test_a_live_chord_is_explained_over_what_its_networks_saw():
    h = LiveHarmonizer.load(settings=LiveSettings(speculation=0))
    h.prepare()
    for t, pitch in enumerate((67, 69, 71, 72)):
        h.process([0x90, pitch, 90], t * 0.5)
        h.process([0x80, pitch, 0], t * 0.5 + 0.49)
    decision = h.last_decision
    explainer = LiveExplainer(ASSETS)
    for index, voice in enumerate(LIVE_DECISION_ORDER):
        explanation = explainer.explain(decision, voice)
        a = explanation.attribution
        assert a.completeness_error < 0.01
        assert a.target == decision.grid[voice, decision.past]
        # the future of the lower voices, and the voices decided after this one, were
        # hidden from it: they are credited with nothing
        later = LIVE_DECISION_ORDER[index:]
        assert not a.cells[1:, decision.past + 1:].any()
        assert not a.cells[list(later), decision.past].any()
        assert explanation.steps[decision.past] == 0
    with pytest.raises(ValueError, match="soprano"):
        explainer.explain(decision, 0)


def test_kantor_explain_prints_a_table_and_draws_a_heat_map(tmp_path):
    png, report = tmp_path / "why.png", tmp_path / "why.json"
    done = subprocess.run([sys.executable, "-m", "kantor.bridges.cli", "explain", "--voice",
                           "tenor", "--beat", "3", "--iterations", "4", "--png", str(png),
                           "--json", str(report)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "why the tenor sings" in done.stdout and "completeness error" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.read_text())
    assert data["voice"] == "tenor" and data["ig_steps"] >= 64
    assert abs(np.sum(data["cells_nats"]) - (data["logit"] - data["baseline_logit"])) \
        <= 0.01 * abs(data["logit"] - data["baseline_logit"])
    outside = subprocess.run([sys.executable, "-m", "kantor.bridges.cli", "explain", "--beat",
                              "999"], capture_output=True, text=True, timeout=120)
    assert outside.returncode == 2 and "outside the melody" in outside.stderr


def test_integrated_gradients_of_the_baseline_itself_is_zero(sampler):
    weights = VoiceWeights.from_onnx(sampler.models[1])
    window = np.full((4, weights.window), MASK)
    meta = np.zeros((weights.window, len(weights.meta_embeds)), dtype=np.int64)
    a = integrated_gradients(weights, window, meta, target=5, steps=16)
    assert not a.cells.any() and a.logit == pytest.approx(a.baseline_logit)
