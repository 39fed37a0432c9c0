"""Sequence Tutor (export/chorale/tutor.py): the policy tuned is exactly the one the engine
plays, the baseline compares takes of one melody, and a tiny tuning run exports networks
the live harmoniser loads and switches to."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER  # noqa: E402
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings  # noqa: E402
from kantor.export.chorale import tutor  # noqa: E402
from kantor.export.chorale.live_eval import play_event_mode  # noqa: E402
from kantor.export.chorale.rewards import DEFAULT_REWARD_WEIGHTS  # noqa: E402


@pytest.fixture(scope="module")
def prior():
    return LiveHarmonizer.load()


@pytest.fixture(scope="module")
def prior_nets(prior):
    return tutor.voice_nets_from_onnx(prior)


def test_recording_through_torch_copies_changes_no_answer(prior, prior_nets, tiny_corpus):
    """Played by the torch copies of the networks, with every decision recorded, a melody
    gets the answers the ONNX networks give it (same seed, same engine)."""
    chorale = tiny_corpus.split("train")[0]
    # (the recorder decides with the melody alone: no 16ths under held notes)
    plain = LiveHarmonizer(prior.models, LiveSettings(speculation=0, seed=3, move_under=False))
    plain.prepare()
    recording = tutor.RecordingHarmonizer(prior, prior_nets, LiveSettings(seed=3))
    recording.prepare()
    expected = play_event_mode(plain, chorale)
    recording.decisions = []
    assert np.array_equal(play_event_mode(recording, chorale), expected)
    notes = tutor.melody_onsets(chorale).size
    assert len(recording.decisions) == 3 * notes


def test_the_tuned_policy_is_the_distribution_the_engine_draws_from(prior, prior_nets,
                                                                   tiny_corpus):
    """log q from the recorded shaping: a distribution, zero where the engine forbids a
    token, and every token the engine drew has room in it."""
    recording = tutor.RecordingHarmonizer(prior, prior_nets, LiveSettings(seed=1))
    recording.prepare()
    episode = tutor.play_episode(recording, tiny_corpus.split("train")[1], 0, 1,
                                 DEFAULT_REWARD_WEIGHTS)
    batch = tutor.stack([episode], [np.zeros(len(episode.rewards))], prior_nets,
                        recording._calibration)
    for v in LIVE_DECISION_ORDER:
        logq = batch.prior_logq[v]
        assert torch.allclose(logq.exp().sum(-1), torch.ones(logq.shape[0]), atol=1e-5)
        forbidden = batch.shaping[v] <= tutor.MASKED
        assert float(logq.exp()[forbidden].max()) < 1e-12
        drawn = logq.gather(1, batch.chosen[v][:, None])[:, 0]
        assert bool((drawn > -30).all())
    # at the prior itself the KL to the prior is zero and the policy gradient is defined
    loss, kls = tutor.tutor_loss(prior_nets, batch, recording._calibration, beta=1.0)
    assert max(kls.values()) < 1e-6 and torch.isfinite(loss)


def test_advantages_compare_takes_of_the_same_melody():
    def episode(melody, rewards):
        return tutor.Episode(melody, [], np.array(rewards, dtype=float), {}, len(rewards))

    takes = [episode(0, [0.0, -1.0]), episode(0, [0.0, 0.0]), episode(1, [-2.0, -2.0]),
             episode(1, [-2.0, -2.0])]
    out = tutor.advantages(takes, discount=0.5)
    # returns: take 0 [-0.5, -1], take 1 [0, 0]: each against the other
    raw = [np.array([-0.5, -1.0]), np.array([0.5, 1.0]), np.zeros(2), np.zeros(2)]
    spread = np.concatenate(raw).std()
    for got, want in zip(out, raw, strict=True):
        assert np.allclose(got, want / spread, atol=1e-4)


def test_the_style_reward_is_shared_by_every_decision_of_a_take():
    """A take the critic finds more Bach-like than its rival gains that difference, times
    the weight, at every note (the rules' returns being equal)."""
    takes = [tutor.Episode(0, [], np.array([-1.0, -1.0]), {}, 2, style=2.0),
             tutor.Episode(0, [], np.array([-1.0, -1.0]), {}, 2, style=-1.0),
             tutor.Episode(1, [], np.array([0.0, -2.0]), {}, 2, style=0.0),
             tutor.Episode(1, [], np.array([-2.0, 0.0]), {}, 2, style=0.0)]
    out = tutor.advantages(takes, discount=0.0, style_weight=0.5)
    raw = [np.array([1.5, 1.5]), np.array([-1.5, -1.5]), np.array([2.0, -2.0]),
           np.array([-2.0, 2.0])]
    spread = np.concatenate(raw).std()
    for got, want in zip(out, raw, strict=True):
        assert np.allclose(got, want / spread, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_tuned(tmp_path_factory):
    from kantor.export.chorale.tutor_pipeline import tune_and_export

    root = tmp_path_factory.mktemp("tutor")
    paths = tune_and_export("tiny", root / "run", root / "models", eval_limit=2)
    return root, paths


def test_tiny_tuning_exports_tuned_networks_with_the_table_on_their_cards(tiny_tuned):
    root, paths = tiny_tuned
    assert [p.name for p in paths] == [f"chorale-live-tuned-{v}.onnx"
                                       for v in ("bass", "alto", "tenor")]
    record = json.loads((root / "run" / "record.json").read_text())
    assert len(record["epochs"]) == tutor.TUTOR_PRESETS["tiny"].epochs
    card = json.loads(paths[0].with_suffix(".json").read_text())
    table = card["metrics"]["sequence_tutor_table"]
    for row in ("prior", "tuned"):
        assert set(table[row]["rule_breaks_per_chord"]) == set(DEFAULT_REWARD_WEIGHTS)
        assert table[row]["bach_nll_nats_per_token"] > 0
    assert table["prior"]["kl_to_prior_nats_per_decision"] == 0
    assert table["tuned"]["kl_to_prior_nats_per_decision"] >= 0
    assert card["prior"] == "chorale-live-bass" and card["calibration"]


def test_the_live_harmoniser_switches_between_prior_and_tuned(tiny_tuned, prior):
    from kantor.engine.models import load_model

    _root, paths = tiny_tuned
    tuned = {v: load_model(p) for v, p in zip(LIVE_DECISION_ORDER, paths, strict=True)}
    h = LiveHarmonizer(prior.models, LiveSettings(tuned=False), tuned)
    h.prepare()
    assert h.playing == "prior" and h.models is h.prior_models
    h.process([0x90, 67, 90], 0.0)
    h.apply_parameter("tuned", h.check_parameter("tuned", "on"))
    assert h.playing == "tuned" and h.models is tuned
    assert not h._table  # answers ahead of the prior are not the tuned ones'
    assert len(h.process([0x90, 69, 90], 0.5)) > 0
    # without a tuned set the setting asks for it in vain: the prior plays
    alone = LiveHarmonizer(prior.models, LiveSettings(tuned=True))
    assert alone.playing == "prior" and not alone.has_tuned


def test_the_style_critic_prefers_bach_to_block_chords(tiny_corpus):
    """Fitted on Bach's settings against the same melodies with every lower voice
    restruck on each melody note (block chords), the critic scores Bach higher."""
    from kantor.engine.chorale.encoding import HOLD_PITCH, sounding_pitches
    from kantor.export.chorale.critic import StyleCritic
    from kantor.export.chorale.style import fit_progression_model

    chorales = tiny_corpus.split("train")[:8]

    def blocks(chorale):
        raw = chorale.raw.copy()
        sounding = sounding_pitches(raw)
        onsets = raw[0] != HOLD_PITCH
        for v in (1, 2, 3):
            raw[v] = np.where(onsets, sounding[v], HOLD_PITCH)
        return raw

    critic = StyleCritic.fit(chorales, {c.name: blocks(c) for c in chorales},
                             fit_progression_model(chorales))
    for chorale in chorales[:3]:
        assert critic.score(chorale.raw, chorale) > critic.score(blocks(chorale), chorale)
