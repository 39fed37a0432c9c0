"""Sequence Tutor for the live harmoniser: policy gradient with KL control (issue 13).

Jaques et al. (ICML 2017, Magenta's rl_tuner) tune a copy of a pre-trained sequence model
with reinforcement learning on music-theory rewards, while a KL penalty keeps it close to
what the data taught (the prior). Here the policy is exactly what the engine plays: the
live voice networks' calibrated log-probabilities, masked and charged by the engine's
rules, drawn at the engine's temperature (``LiveHarmonizer._scores``). Episodes are the
training sopranos played into a real :class:`LiveHarmonizer` as MIDI in event mode, its
networks answered by the policy being tuned, so the states are the ones a player makes.

Method: REINFORCE with a leave-one-out baseline (several takes of each melody) and the
exact KL to the prior's engine policy at every visited decision, added to the loss:

    loss = - mean(A * log q_theta(a | s)) + beta * mean(KL(q_theta(.|s) || q_prior(.|s)))

Why policy gradient and not Psi- or G-learning (which Sequence Tutor found slightly better
for its melody RNN): those learn a Q-value for every action, so the tuned network would be
a Q-network with another output meaning. Policy gradient tunes the same networks in
place, so the tuned model is exported, loaded and sampled exactly like the prior (same
ONNX shape, same engine code), and the KL to the prior is exact here because both
policies' full distributions are at hand at every visited state.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kantor.engine.chorale.contract import log_softmax
from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    LIVE_DECISION_ORDER,
    META_FIELDS,
    REST_PITCH,
    sounding_pitches,
)
from kantor.engine.chorale.keys import key_of_setting
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings
from kantor.engine.chorale.rules import sonority_steps
from kantor.export.chorale.corpus import Chorale
from kantor.export.chorale.live_eval import play_event_mode
from kantor.export.chorale.rewards import DEFAULT_REWARD_WEIGHTS, moments, reward, rewards

MASKED = -1e4  # stands for -inf in the policy's scores (finite: no NaN in the gradients)


@dataclass
class TutorConfig:
    """One tuning run. ``beta`` weighs the KL to the prior (nats) against the rewards
    (Sequence Tutor's 1/c); ``discount`` carries a chord's rewards back to the decisions
    before it (a seventh is resolved, a cadence reached, one or two chords later)."""

    epochs: int = 20
    batches_per_epoch: int = 8
    melodies_per_batch: int = 8
    takes_per_melody: int = 4  # the leave-one-out baseline compares takes of one melody
    learning_rate: float = 3e-4
    beta: float = 0.1
    discount: float = 0.5
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REWARD_WEIGHTS))
    # the learned style reward (export/chorale/critic.py): a take's log-odds of being
    # Bach's, times this, shared by every decision of the take (0: rules only)
    style_weight: float = 0.0
    valid_melodies: int = 24
    corpus_limit: int | None = None
    seed: int = 0
    threads: int = 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# Three KL weights for the table (Sequence Tutor compared its c the same way): 13-17
# minutes each on one CPU thread.
TUTOR_PRESETS: dict[str, TutorConfig] = {
    "default": TutorConfig(),
    "loose": TutorConfig(beta=0.03),
    "tight": TutorConfig(beta=0.3),
    # the learned style reward beside the rules; chord completeness left out (Bach
    # leaves a chord incomplete 0.24 times a chord: the rule pushed it far below that)
    "style": TutorConfig(style_weight=0.3, reward_weights={
        **DEFAULT_REWARD_WEIGHTS, "chord_completeness": 0.0}),
    "tiny": TutorConfig(epochs=2, batches_per_epoch=2, melodies_per_batch=2,
                        takes_per_melody=2, valid_melodies=2, corpus_limit=12),
}


@dataclass
class Decision:
    """One voice's decision as the engine took it: the network's inputs, what the engine
    added to its log-probabilities (masks and rule charges), and the token drawn."""

    voice: int
    tokens: np.ndarray  # int64 [4, W]
    meta: np.ndarray  # int64 [W, meta columns]
    shaping: np.ndarray  # float32 [vocab]: MASKED where not allowed, else -charges
    token: int
    temperature: float  # drawn at (the engine's off the beat is higher than on it)


class RecordingHarmonizer(LiveHarmonizer):
    """A live harmoniser whose networks are torch modules and which records every
    decision (answering ahead off: each decision is one row, computed on arrival)."""

    def __init__(self, prior: LiveHarmonizer, nets: dict[int, nn.Module],
                 settings: LiveSettings) -> None:
        # The tutor pays each melody note's decisions (3 a note): no 16ths decided by time
        # under held notes.
        super().__init__(prior.models, dataclasses.replace(settings, speculation=0, tuned=False,
                                                           move_under=False))
        self.nets = nets
        self.decisions: list[Decision] = []
        self.models = {v: _TorchRunner(prior.models[v], nets[v]) for v in nets}
        self._scored: tuple | None = None  # the decision being taken, until it is drawn

    def _scores(self, voice, logits, grid, sounding):
        scores = super()._scores(voice, logits, grid, sounding)
        base = log_softmax(logits.astype(np.float64) / self._calibration[voice])
        shaping = np.where(np.isfinite(scores), scores - base, MASKED).astype(np.float32)
        self._scored = (voice, self._inputs[0].copy(), self._meta_in[0].copy(), shaping)
        return scores

    def _choose(self, voice, logits, grid, sounding, gumbel, temperature):
        token = super()._choose(voice, logits, grid, sounding, gumbel, temperature)
        recorded_voice, tokens, meta, shaping = self._scored
        assert recorded_voice == voice
        self.decisions.append(Decision(voice, tokens, meta, shaping, token, float(temperature)))
        return token


class _TorchRunner:
    """Stands in for an ONNX session: the same card, logits from a torch module."""

    def __init__(self, onnx_model, net: nn.Module) -> None:
        self.card, self.path, self.net = onnx_model.card, onnx_model.path, net

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            logits = self.net(torch.from_numpy(np.array(inputs["tokens"])),
                              torch.from_numpy(np.array(inputs["meta"])))
        return [logits.numpy()]


@dataclass
class Episode:
    """One take of one melody: its decisions (3 per melody note, in order), the reward
    of each melody note's chord and what the rules said of the whole take."""

    melody: int
    decisions: list[Decision]
    rewards: np.ndarray  # float [notes]
    rule_breaks: dict[str, float]
    chords: int
    style: float = 0.0  # the critic's log-odds that the take is Bach's (0 without one)


def melody_onsets(chorale: Chorale) -> np.ndarray:
    """Steps where the soprano starts a note (where the live harmoniser decides)."""
    soprano = chorale.raw[0]
    return np.flatnonzero((soprano != HOLD_PITCH) & (soprano != REST_PITCH))


def chorale_context(chorale: Chorale) -> tuple[np.ndarray, int]:
    """(fermata steps, tonic pitch class) of a chorale, as the rewards read them."""
    return chorale.meta[:, META_FIELDS.index("fermata")] > 0, key_of_setting(chorale.raw).tonic


def play_episode(harmonizer: RecordingHarmonizer, chorale: Chorale, melody: int, seed: int,
                 weights: dict[str, float], critic=None) -> Episode | None:
    """Play ``chorale``'s soprano into ``harmonizer`` (event mode) with noise ``seed``;
    None where the decisions do not line up with the melody notes (never expected)."""
    harmonizer.settings.seed = seed
    harmonizer.decisions = []
    raw = play_event_mode(harmonizer, chorale)
    raw[0] = chorale.raw[0]
    onsets = melody_onsets(chorale)
    decisions = harmonizer.decisions
    if len(decisions) != len(LIVE_DECISION_ORDER) * onsets.size:
        return None
    fermatas, tonic = chorale_context(chorale)
    per_step: dict[int, float] = {}
    breaks = dict.fromkeys(DEFAULT_REWARD_WEIGHTS, 0.0)
    chords = 0
    steps = sonority_steps(sounding_pitches(raw.astype(np.int64)))
    for step, m in zip(steps, moments(raw, fermatas, tonic), strict=True):
        per_step[int(step)] = per_step.get(int(step), 0.0) + reward(m, weights)
        for name, value in rewards(m).items():
            breaks[name] -= value
        chords += 1
    # each melody note's decision is paid what the chords from it to the next note earn
    bounds = [*onsets.tolist(), raw.shape[1]]
    note_rewards = np.array([sum(r for s, r in per_step.items() if a <= s < b)
                             for a, b in itertools.pairwise(bounds)])
    style = critic.score(raw, chorale) if critic is not None else 0.0
    return Episode(melody, decisions, note_rewards, breaks, chords, style)


def advantages(episodes: list[Episode], discount: float, style_weight: float = 0.0
               ) -> list[np.ndarray]:
    """Per melody note of each episode: its discounted return less the mean return of the
    other takes of the same melody at the same note (leave-one-out), plus ``style_weight``
    times the take's style score less the other takes' mean, scaled to unit spread over
    the batch."""
    returns = []
    for e in episodes:
        g = np.zeros_like(e.rewards, dtype=np.float64)
        running = 0.0
        for i in range(len(e.rewards) - 1, -1, -1):
            running = e.rewards[i] + discount * running
            g[i] = running
        returns.append(g)
    out = []
    for i, e in enumerate(episodes):
        others = [returns[j] for j, f in enumerate(episodes)
                  if j != i and f.melody == e.melody and len(returns[j]) == len(returns[i])]
        baseline = np.mean(others, axis=0) if others else np.zeros_like(returns[i])
        rivals = [f.style for j, f in enumerate(episodes) if j != i and f.melody == e.melody]
        style = style_weight * (e.style - np.mean(rivals)) if rivals else 0.0
        out.append(returns[i] - baseline + style)
    spread = np.concatenate(out).std() if out else 0.0
    return [a / (spread + 1e-6) for a in out]


@dataclass
class Batch:
    """A batch's decisions per voice, stacked: what the loss needs."""

    tokens: dict[int, torch.Tensor]
    meta: dict[int, torch.Tensor]
    shaping: dict[int, torch.Tensor]
    chosen: dict[int, torch.Tensor]
    advantage: dict[int, torch.Tensor]
    prior_logq: dict[int, torch.Tensor]
    temperature: dict[int, torch.Tensor]  # float32 [n, 1]: each decision's

    def __len__(self) -> int:
        """Decisions in the batch (one process trains: rollouts are not sharded)."""
        return sum(int(t.shape[0]) for t in self.chosen.values())


def engine_log_policy(net: nn.Module, tokens: torch.Tensor, meta: torch.Tensor,
                      shaping: torch.Tensor, calibration: float,
                      temperature: float | torch.Tensor) -> torch.Tensor:
    """log q(. | s) ``[n, vocab]``: the distribution the engine draws a decision from
    (``temperature``: one, or one per row as ``[n, 1]``)."""
    logp = torch.log_softmax(net(tokens, meta) / calibration, dim=-1)
    return torch.log_softmax((logp + shaping) / temperature, dim=-1)


def stack(episodes: list[Episode], episode_advantages: list[np.ndarray],
          prior: dict[int, nn.Module], calibration: dict[int, float]) -> Batch:
    """Stack the decisions by voice and compute the prior's engine policy at each."""
    by_voice: dict[int, list[tuple[Decision, float]]] = {v: [] for v in LIVE_DECISION_ORDER}
    for e, a in zip(episodes, episode_advantages, strict=True):
        for k, d in enumerate(e.decisions):
            by_voice[d.voice].append((d, float(a[k // len(LIVE_DECISION_ORDER)])))
    batch = Batch({}, {}, {}, {}, {}, {}, {})
    for v, rows in by_voice.items():
        batch.tokens[v] = torch.from_numpy(np.stack([d.tokens for d, _ in rows]))
        batch.meta[v] = torch.from_numpy(np.stack([d.meta for d, _ in rows]))
        batch.shaping[v] = torch.from_numpy(np.stack([d.shaping for d, _ in rows]))
        batch.chosen[v] = torch.tensor([d.token for d, _ in rows])
        batch.advantage[v] = torch.tensor([a for _, a in rows], dtype=torch.float32)
        batch.temperature[v] = torch.tensor([[d.temperature] for d, _ in rows],
                                            dtype=torch.float32)
        with torch.no_grad():
            batch.prior_logq[v] = engine_log_policy(prior[v], batch.tokens[v], batch.meta[v],
                                                    batch.shaping[v], calibration[v],
                                                    batch.temperature[v])
    return batch


def tutor_loss(nets: dict[int, nn.Module], batch: Batch, calibration: dict[int, float],
               beta: float) -> tuple[torch.Tensor, dict]:
    """Policy-gradient loss plus beta times the mean KL to the prior, summed over voices;
    and the KL per decision (nats) for the record."""
    total = torch.zeros(())
    kls = {}
    for v in LIVE_DECISION_ORDER:
        logq = engine_log_policy(nets[v], batch.tokens[v], batch.meta[v], batch.shaping[v],
                                 calibration[v], batch.temperature[v])
        chosen = logq.gather(1, batch.chosen[v][:, None])[:, 0]
        kl = (logq.exp() * (logq - batch.prior_logq[v])).sum(-1)
        total = total - (batch.advantage[v] * chosen).mean() + beta * kl.mean()
        kls[v] = float(kl.detach().mean())
    return total, kls


def voice_nets_from_onnx(harmonizer: LiveHarmonizer) -> dict[int, nn.Module]:
    """Torch copies of the harmoniser's live voice networks (in eval mode), their weights
    read from its ONNX files by the engine's reader, which checks them against ONNX
    Runtime first."""
    from kantor.engine.chorale.explain import VoiceWeights
    from kantor.export.chorale.model import VoiceNet

    config = live_net_config(harmonizer)
    vocab_sizes = [v.size for v in harmonizer.vocabularies]
    nets = {}
    for v in LIVE_DECISION_ORDER:
        weights = VoiceWeights.from_onnx(harmonizer.models[v]).state_dict()
        net = VoiceNet(v, vocab_sizes, config)
        net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(w))
                             for k, w in weights.items()})
        nets[v] = net.eval()
    return nets


def live_net_config(harmonizer: LiveHarmonizer):
    """The live networks' shape, from their card (dropout 0: the policy is the
    eval-mode network, in rollouts and in the loss alike)."""
    from kantor.export.chorale.model import LiveNetConfig

    card = harmonizer.models[LIVE_DECISION_ORDER[0]].card
    net = card["architecture"]
    return LiveNetConfig(**{k: net[k] for k in ("past", "lookahead", "token_embed",
                                                 "step_dim", "hidden")}, dropout=0.0)


def train(config: TutorConfig, run_dir: Path, assets: Path | None = None
          ) -> tuple[dict[int, nn.Module], dict, LiveHarmonizer]:
    """Tune a copy of the live networks in ``assets`` (the prior) with the shared trainer,
    resuming from ``run_dir``; returns the tuned networks (the epoch best on validation),
    the training record and the prior's harmoniser."""
    from kantor.engine.models import ASSETS
    from kantor.export.chorale.corpus import load_corpus
    from kantor.export.chorale.model import LiveModel
    from kantor.export.trainer import Run, fit

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    prior_harmonizer = LiveHarmonizer.load(assets or ASSETS, LiveSettings(tuned=False))
    prior = voice_nets_from_onnx(prior_harmonizer)
    for net in prior.values():
        net.requires_grad_(False)
    vocab_sizes = [v.size for v in prior_harmonizer.vocabularies]
    policy = LiveModel(vocab_sizes, live_net_config(prior_harmonizer))
    for v in LIVE_DECISION_ORDER:
        policy.voice_net(v).load_state_dict(prior[v].state_dict())
    nets = {v: policy.voice_net(v) for v in LIVE_DECISION_ORDER}
    corpus = load_corpus(limit=config.corpus_limit)
    melodies = corpus.split("train")
    valid = (corpus.split("valid") or melodies[:2])[:config.valid_melodies]
    settings = LiveSettings()
    player = RecordingHarmonizer(prior_harmonizer, nets, settings)
    player.prepare()
    calibration = player._calibration
    critic = fit_critic(player, melodies) if config.style_weight > 0 else None

    def batches(epoch: int, rng: np.random.Generator):
        for _ in range(config.batches_per_epoch):
            picks = rng.choice(len(melodies), min(config.melodies_per_batch, len(melodies)),
                               replace=False)
            episodes = [e for m in picks for _ in range(config.takes_per_melody)
                        if (e := play_episode(player, melodies[m], int(m),
                                              int(rng.integers(2 ** 31)),
                                              config.reward_weights, critic)) is not None]
            yield stack(episodes, advantages(episodes, config.discount, config.style_weight),
                        prior, calibration)

    def loss(trained: nn.Module, batch: Batch) -> torch.Tensor:
        value, _ = tutor_loss({v: trained.voice_net(v) for v in LIVE_DECISION_ORDER},
                              batch, calibration, config.beta)
        return value

    def validate(trained: nn.Module) -> dict:
        report = rollout_report(player, prior, valid, config, calibration, critic)
        report["valid_objective"] = (-report["reward_per_chord"]
                                     - config.style_weight * report["style_per_chord"]
                                     + config.beta * report["kl_per_decision"])
        return report

    run = Run(name="chorale-live-tutor", net=policy, config=config.to_json(),
              epochs=config.epochs, batches=batches, loss=loss,
              learning_rate=config.learning_rate, weight_decay=0.0, warmup=0.1,
              validate=validate, best_key="valid_objective", seed=config.seed, clip=1.0,
              steps_per_epoch=config.batches_per_epoch)
    tuned, record = fit(run, run_dir)
    return {v: tuned.voice_net(v) for v in LIVE_DECISION_ORDER}, record, prior_harmonizer


def fit_critic(player: RecordingHarmonizer, melodies: list[Chorale]):
    """The style critic: Bach's settings of the training melodies against one take of
    each by the policy as it is now (the prior, before tuning)."""
    from kantor.export.chorale.critic import StyleCritic
    from kantor.export.chorale.style import fit_progression_model

    takes = {}
    for i, chorale in enumerate(melodies):
        player.settings.seed = i
        raw = play_event_mode(player, chorale)
        raw[0] = chorale.raw[0]
        takes[chorale.name] = raw
    return StyleCritic.fit(melodies, takes, fit_progression_model(melodies))


def rollout_report(player: RecordingHarmonizer, prior: dict[int, nn.Module],
                   chorales: list[Chorale], config: TutorConfig,
                   calibration: dict[int, float], critic=None) -> dict:
    """One take of each melody (seeds 0..): mean reward per chord, each rule's breaks per
    chord and the mean KL (nats per voice decision) of the played policy to the prior's
    at the states it visited."""
    episodes = [e for i, c in enumerate(chorales)
                if (e := play_episode(player, c, i, i, config.reward_weights, critic))
                is not None]
    chords = sum(e.chords for e in episodes)
    breaks = {name: sum(e.rule_breaks[name] for e in episodes) / max(chords, 1)
              for name in DEFAULT_REWARD_WEIGHTS}
    batch = stack(episodes, [np.zeros(len(e.rewards)) for e in episodes], prior,
                  calibration)
    with torch.no_grad():
        _, kls = tutor_loss(player.nets, batch, calibration, 0.0)
    return {"reward_per_chord": float(sum(e.rewards.sum() for e in episodes)
                                      / max(chords, 1)),
            "rule_breaks_per_chord": breaks, "kl_per_decision": kl_mean(kls),
            "style_per_chord": float(sum(e.style for e in episodes) / max(chords, 1)),
            "takes": len(episodes)}


def kl_mean(kls: dict[int, float]) -> float:
    """Mean over the voices of their mean KL per decision."""
    return float(np.mean(list(kls.values()))) if kls else math.nan
