"""Offline harmonisation by pseudo-Gibbs sampling (DeepBach), with steering.

The four voice networks each give a voice's token at a step given everything else. The
sampler starts from a rough draft and repeatedly redraws a random share of the free
steps of one voice at a time, in one batched ONNX Runtime call per voice. Temperature
and the share redrawn anneal from exploring to settling. Two kinds of steering:

* **fixed notes**: any step of any voice can be pinned (the soprano is, by default);
  fermatas and the key are metadata the networks read.
* **rules**: every candidate token is charged ``rule_weight`` nats per voice-leading
  rule it would break with the notes around it (:mod:`kantor.engine.chorale.rules`),
  and notes outside a voice's range are not drawn at all.

Several chains run side by side in the same calls; the one the networks find most
likely (fewest rule breaks first) is returned. Everything is seeded: the same inputs,
settings and seed give the same harmonisation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kantor.engine.chorale.contract import allowed_tokens, log_softmax, sample
from kantor.engine.chorale.encoding import (
    FIRST_PITCH_TOKEN,
    HOLD,
    HOLD_PITCH,
    MASK,
    META_FIELDS,
    REST,
    REST_PITCH,
    TEXTBOOK_RANGES,
    VOICES,
    VoiceVocabulary,
    meta_columns,
    pad_for_windows,
    sounding_pitches,
    tokens_to_raw,
)
from kantor.engine.chorale.rules import (
    PieceContext,
    candidate_violations,
    rule_weight_vector,
    unresolved_sevenths,
    voice_leading_report,
)
from kantor.engine.models import ASSETS, ModelError, OnnxModel, load_model

log = logging.getLogger(__name__)

MODEL_STEM = "chorale-{voice}"
# Windows per ONNX Runtime call. Its activations grow with the batch (~60 KB a window for
# the shipped models, and its arena keeps the peak), so 16 chains of a 64-bar melody in
# one call took ~1 GB; in slices of 2048 a request stays near 150 MB.
MAX_BATCH = 2048


# Rules that could be left to the networks: crossings, wide spacing, overlaps and hidden
# fifths. Bach writes each now and then (1-6% of his chords); charged, they vanish
# altogether, and a setting with none at all is itself a tell. Not the default: chosen on
# the validation chorales, it did not hold on the test chorales (benchmarks/results/
# harmonizer_style_choice_valid.json, harmonizer_style_ablation_test.json).
FREE_TEXTURE: dict[str, float] = {"crossing": 0.0, "spacing": 0.0, "overlap": 0.0,
                                  "hidden": 0.0}

# The rule counts that make a chain worse than another when the sampler picks one.
ERRORS_COUNTED = {
    "strict": ("parallel_fifths", "parallel_octaves", "crossing", "spacing", "out_of_range"),
    "parallels": ("parallel_fifths", "parallel_octaves", "out_of_range"),
}


@dataclass
class GibbsSettings:
    """How the sampler searches. Defaults are tuned on the validation chorales."""

    iterations: int = 40  # sweeps; each redraws one step in ``stride`` of every free voice
    temperature_start: float = 1.0
    # Where the run settles on the beat, where the chords are decided: below 1, the
    # likelier progressions. Off the beat (passing notes, suspensions, figuration) it
    # settles at ``offbeat_temperature_end``: 1.0 is the networks' own belief, so the
    # inner voices move as often as Bach's (annealing them towards 0 is mode-seeking:
    # held and repeated notes, block chords). None: the same as on the beat.
    temperature_end: float = 0.5
    offbeat_temperature_end: float | None = 1.0
    # Temperature of the rhythm decision alone - hold the note, rest or strike a new one -
    # while the pitch of a new note anneals as above. 1.0: a voice holds, moves in
    # eighths and suspends as often as the networks believe Bach's would, however settled
    # the harmony (annealing the hold towards its mode gives block chords). None: one
    # temperature for the whole token, as before.
    rhythm_temperature: float | None = None
    # Steps redrawn together lie ``stride`` apart, from a random phase. Two neighbours
    # redrawn at once each see the other's old note, so a passing note or a suspension,
    # which needs its neighbour, rarely survives; a beat apart, each sees its neighbours
    # as they are. 0: a random share of the steps instead (``share_*``), as before.
    stride: int = 4
    share_start: float = 0.5  # with stride 0: share of a voice's free steps per sweep
    share_end: float = 0.1
    # With spaced updates: hide the notes being redrawn together behind MASK, so each
    # sees its neighbours' absence rather than their old notes (which otherwise pull
    # every redrawn note towards what stood there: the same note struck beat after
    # beat). "offbeat": only notes off the beat (figuration), "always": every one, "":
    # never. Only for networks trained with masked neighbours (``orderless``).
    hide_redrawn: str = ""
    block_end: float = 0.05
    block_anneal: float = 0.75
    rule_weight: float = 4.0  # nats charged per broken rule at the start; 0 turns off
    # The charge grows by this factor over the run (geometrically): rules that harden as
    # the chain settles let it explore first and leave few breaks at the end, while the
    # networks' own probabilities keep their temperature. 1: a constant charge.
    rule_hardening: float = 4.0
    # Relative charge per rule over rules.DEFAULT_RULE_WEIGHTS (see rules.RULES); None:
    # those defaults alone.
    rule_weights: dict[str, float] | None = None
    chains: int = 4  # independent chains; one with the fewest errors is returned
    # Which of the chains with the fewest errors: "likeliest" (highest pseudo-likelihood:
    # mode-seeking, it prefers held and repeated notes) or "first" (the first of them in
    # seed order, i.e. a draw from the sampler's own distribution).
    select: str = "likeliest"
    # What counts as an error when choosing: "strict" counts crossings and wide spacing
    # too; "parallels" only parallels, range and unresolved sevenths (Bach crosses and
    # spaces wide now and then; a setting with none at all is itself a tell).
    errors: str = "strict"
    seed: int = 0
    ranges: tuple[tuple[int, int], ...] = TEXTBOOK_RANGES  # MIDI, per voice

    def charge(self, progress: float) -> float:
        """Nats per rule break as ``progress`` goes 0 -> 1."""
        return self.rule_weight * self.rule_hardening ** progress

    def temperature(self, progress: float, offbeat: bool = False) -> float:
        """Geometric annealing from start to end as ``progress`` goes 0 -> 1 (off the
        beat towards ``offbeat_temperature_end`` when set)."""
        end = self.temperature_end
        if offbeat and self.offbeat_temperature_end is not None:
            end = self.offbeat_temperature_end
        return self.temperature_start * (end / self.temperature_start) ** progress

    def share(self, progress: float) -> float:
        return self.share_start + (self.share_end - self.share_start) * progress


@dataclass
class Harmonisation:
    """A result: raw pitches ``int16 [4, T]`` and how it was found."""

    raw: np.ndarray
    log_likelihood: float  # pseudo-log-likelihood of the free tokens, nats
    violations: int
    seconds: float
    chain_scores: list[tuple[int, float]] = field(default_factory=list)
    # every chain's setting, raw ``[4, T]`` each, in seed order (the result is one of them)
    candidates: list[np.ndarray] = field(default_factory=list)


class ChoraleSampler:
    """The four voice networks and what it takes to sample from them."""

    def __init__(self, models: list[OnnxModel]) -> None:
        if len(models) != len(VOICES):
            raise ModelError(f"need {len(VOICES)} voice models, got {len(models)}")
        self.models = models
        card = models[0].card
        self.context = int(card["context"])
        try:
            self.meta_columns = meta_columns(card)
        except ValueError as error:
            raise ModelError(str(error)) from None
        self._reads_all_meta = self.meta_columns.size == len(META_FIELDS)
        self.vocabularies = [VoiceVocabulary(**{k: m.card["vocabulary"][k]
                                                for k in ("voice", "low", "high")})
                             for m in models]
        self._token_pitches = [v.token_pitches() for v in self.vocabularies]
        self._is_pitch = [np.arange(v.size) >= FIRST_PITCH_TOKEN for v in self.vocabularies]
        # temperature scaling fitted on the validation chorales (the card's calibration):
        # logits / T are the networks' honest belief; 1 where a card has none
        self.calibration = [float(m.card.get("calibration", {}).get("temperature", 1.0))
                            for m in models]

    @classmethod
    def load(cls, assets: Path = ASSETS, threads: int = 1) -> ChoraleSampler:
        """Load and verify the shipped (or given) voice models."""
        return cls([load_model(Path(assets) / f"{MODEL_STEM.format(voice=v)}.onnx", threads)
                    for v in VOICES])

    # ----------------------------------------------------------------- network calls
    def logits(self, voice: int, tokens: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """Calibrated logits ``float32 [B, vocab]`` (raw logits / the card's temperature)
        for ``tokens [B, 4, W]`` and ``meta [B, W, F]``: what sampling reads."""
        raw = self.raw_logits(voice, tokens, meta)
        temperature = self.calibration[voice]
        return raw if temperature == 1.0 else raw / np.float32(temperature)

    def raw_logits(self, voice: int, tokens: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """The network's own logits ``float32 [B, vocab]`` for ``tokens [B, 4, W]`` and
        ``meta [B, W, F]`` (every field of :data:`META_FIELDS`; the model gets the ones
        its card names). Batches over ``MAX_BATCH`` windows run in slices (same logits,
        bounded memory)."""
        model = self.models[voice]
        if not self._reads_all_meta:
            meta = np.ascontiguousarray(meta[..., self.meta_columns])
        if tokens.shape[0] <= MAX_BATCH:
            return model.run({"tokens": tokens, "meta": meta})[0]
        return np.concatenate([model.run({"tokens": tokens[i:i + MAX_BATCH],
                                          "meta": meta[i:i + MAX_BATCH]})[0]
                               for i in range(0, tokens.shape[0], MAX_BATCH)])

    def windows(self, padded: np.ndarray, padded_meta: np.ndarray, chains: np.ndarray,
                positions: np.ndarray, voice: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs for ``voice`` at ``positions`` of the given ``chains`` of padded tokens
        ``[chains, 4, T + 2*context]``: tokens ``[B, 4, W]`` (voice masked), meta ``[B, W, 4]``."""
        offsets = np.arange(2 * self.context + 1)
        idx = positions[:, None] + offsets[None, :]
        windows = padded[chains[:, None, None], np.arange(4)[None, :, None], idx[:, None, :]]
        windows[:, voice, self.context] = MASK
        return windows, padded_meta[idx]

    # ----------------------------------------------------------------- sampling
    def harmonize(self, notes: np.ndarray, fixed: np.ndarray, meta: np.ndarray,
                  settings: GibbsSettings | None = None,
                  piece: PieceContext | None = None) -> Harmonisation:
        """Fill the free steps of ``notes`` (raw pitches ``[4, T]``; only steps where
        ``fixed [4, T]`` is True are read) given metadata ``meta [T, F]``; ``piece``
        tells the rules the tonic and where the final chord starts."""
        settings = settings or GibbsSettings()
        if settings.select not in ("likeliest", "first") or settings.errors not in ERRORS_COUNTED:
            raise ValueError(f"unknown chain selection '{settings.select}' or error count "
                             f"'{settings.errors}'")
        piece = piece or PieceContext()
        weights = rule_weight_vector(settings.rule_weights)
        started = time.perf_counter()
        rng = np.random.default_rng(settings.seed)
        n_steps = notes.shape[1]
        if n_steps == 0:
            raise ValueError("nothing to harmonise: the piece has no steps")
        chains = max(1, settings.chains)
        fixed = np.asarray(fixed, dtype=bool)
        tokens = np.stack([self._draft(notes, fixed, rng) for _ in range(chains)])
        c = self.context
        padded = np.stack([pad_for_windows(t, meta, c)[0] for t in tokens])
        padded_meta = pad_for_windows(tokens[0], meta, c)[1]
        allowed = self._allowed_tokens(settings)
        free_voices = [v for v in range(4) if not fixed[v].all()]
        chain_ids = np.arange(chains)

        for it in range(settings.iterations):
            progress = it / max(settings.iterations - 1, 1)
            on_beat, off_beat = settings.temperature(progress), settings.temperature(
                progress, offbeat=True)
            share = settings.share(progress)
            for voice in rng.permutation(free_voices):
                free = np.flatnonzero(~fixed[voice])
                if settings.stride > 1:
                    picks = [free[free % settings.stride == rng.integers(settings.stride)]
                             for _ in chain_ids]
                else:
                    picks = [free[rng.random(free.size) < share] for _ in chain_ids]
                picks = [p if p.size else free[rng.integers(free.size)][None] for p in picks]
                which = np.concatenate([np.full(p.size, k) for k, p in enumerate(picks)])
                positions = np.concatenate(picks)
                seen = padded
                if settings.hide_redrawn:  # the networks do not see them; the rules do
                    seen = padded.copy()
                    hide = (np.ones(positions.size, dtype=bool)
                            if settings.hide_redrawn == "always" else meta[positions, 0] != 0)
                    seen[which[hide], voice, positions[hide] + c] = MASK
                scores = self._scores(padded, padded_meta, which, positions, voice,
                                      allowed[voice], settings, piece, weights,
                                      settings.charge(progress), seen=seen)
                temperature = np.where(meta[positions, 0] == 0, on_beat, off_beat)
                if settings.rhythm_temperature is not None:
                    scores = _rhythm_apart(scores, temperature, settings.rhythm_temperature,
                                           self._is_pitch[voice])
                else:
                    scores = scores / temperature[:, None]
                choice = sample(scores, rng)
                padded[which, voice, positions + c] = choice

        final = padded[:, :, c:c + n_steps]
        scored, candidates = [], []
        for k in chain_ids:
            raw = tokens_to_raw(final[k], self.vocabularies)
            candidates.append(np.where(fixed, notes, raw).astype(raw.dtype))
            report = voice_leading_report(raw, meta)
            counted = ERRORS_COUNTED[settings.errors]
            breaks = sum(report[r] for r in counted) + unresolved_sevenths(raw)
            scored.append((breaks, self._pseudo_log_likelihood(padded[k], padded_meta, fixed)))
        if settings.select == "likeliest":
            best = min(chain_ids, key=lambda k: (scored[k][0], -scored[k][1]))
        else:
            best = min(chain_ids, key=lambda k: (scored[k][0], k))
        return Harmonisation(raw=candidates[best].copy(), log_likelihood=scored[best][1],
                             violations=scored[best][0],
                             seconds=time.perf_counter() - started, chain_scores=scored,
                             candidates=candidates)

    def _draft(self, notes: np.ndarray, fixed: np.ndarray, rng: np.random.Generator
               ) -> np.ndarray:
        """Starting tokens: fixed notes as given; free voices follow the rhythm of the
        fixed soprano (or quarters) with random pitches in range."""
        n_steps = notes.shape[1]
        rhythm_source = notes[0] if fixed[0].all() else None
        tokens = np.empty((4, n_steps), dtype=np.int64)
        for v, vocab in enumerate(self.vocabularies):
            low, high = max(vocab.low, TEXTBOOK_RANGES[v][0]), min(vocab.high,
                                                                  TEXTBOOK_RANGES[v][1])
            if rhythm_source is not None:
                onset = rhythm_source != HOLD_PITCH
                rest = rhythm_source == REST_PITCH
            else:
                onset = np.arange(n_steps) % 4 == 0
                rest = np.zeros(n_steps, dtype=bool)
            pitches = rng.integers(low, high + 1, n_steps)
            row = np.where(onset, vocab.tokens_of_pitches(pitches), HOLD)
            row[rest & onset] = REST
            if row[0] == HOLD:  # a piece cannot start with a hold
                row[0] = vocab.token_of_pitch(int(pitches[0]))
            keep = fixed[v]
            if keep.any():
                given = notes[v][keep].astype(np.int64)
                row[keep] = np.where(given == HOLD_PITCH, HOLD, np.where(
                    given == REST_PITCH, REST, vocab.tokens_of_pitches(given)))
            tokens[v] = row
        return tokens

    def _allowed_tokens(self, settings: GibbsSettings) -> list[np.ndarray]:
        """Per voice, the tokens the sampler may draw: rest, hold and pitches in range."""
        return [allowed_tokens(pitches, *settings.ranges[v])
                for v, pitches in enumerate(self._token_pitches)]

    def _scores(self, padded: np.ndarray, padded_meta: np.ndarray, which: np.ndarray,
                positions: np.ndarray, voice: int, allowed: np.ndarray,
                settings: GibbsSettings, piece: PieceContext, weights: np.ndarray,
                charge: float, seen: np.ndarray | None = None) -> np.ndarray:
        """Log-probabilities minus rule charges for every token, ``[B, vocab]``; the
        networks read ``seen`` (default ``padded``), the rules ``padded``."""
        windows, meta = self.windows(padded if seen is None else seen, padded_meta, which,
                                     positions, voice)
        scores = log_softmax(self.logits(voice, windows, meta))
        scores[:, ~allowed] = -np.inf
        scores[positions == 0, HOLD] = -np.inf  # a piece cannot start with a hold
        if charge > 0:
            scores -= charge * self._violations(padded, which, positions, voice,
                                                              piece, weights)
        return scores

    def _violations(self, padded: np.ndarray, which: np.ndarray, positions: np.ndarray,
                    voice: int, piece: PieceContext, weights: np.ndarray) -> np.ndarray:
        """Weighted rule charges of each candidate token, ``float32 [B, vocab]``."""
        c = self.context
        n_steps = padded.shape[2] - 2 * c
        out = np.zeros((positions.size, self.vocabularies[voice].size), dtype=np.float32)
        is_hold = np.zeros(out.shape[1], dtype=bool)
        is_hold[HOLD] = True
        for k in np.unique(which):
            rows = which == k
            raw = tokens_to_raw(padded[k, :, c:c + n_steps], self.vocabularies)
            sounding = sounding_pitches(raw)
            pos = positions[rows]
            candidate = np.broadcast_to(self._token_pitches[voice], (pos.size, out.shape[1])
                                        ).copy()
            previous = np.where(pos > 0, sounding[voice, np.maximum(pos - 1, 0)], -1)
            candidate[:, HOLD] = previous
            out[rows] = candidate_violations(raw, sounding, voice, pos, candidate, is_hold,
                                             piece, weights)
        return out

    def _pseudo_log_likelihood(self, padded: np.ndarray, padded_meta: np.ndarray,
                               fixed: np.ndarray) -> float:
        """Sum over free steps of log p(token | everything else), nats."""
        c = self.context
        total = 0.0
        for v in range(4):
            positions = np.flatnonzero(~fixed[v])
            if positions.size == 0:
                continue
            which = np.zeros(positions.size, dtype=np.int64)
            windows, meta = self.windows(padded[None], padded_meta, which, positions, v)
            logp = log_softmax(self.logits(v, windows, meta))
            total += float(logp[np.arange(positions.size), padded[v, positions + c]].sum())
        return total


def _rhythm_apart(scores: np.ndarray, pitch_temperature: np.ndarray,
                  rhythm_temperature: float, is_pitch: np.ndarray) -> np.ndarray:
    """Scores whose softmax draws hold / rest / a new note at ``rhythm_temperature`` and,
    given a new note, its pitch at ``pitch_temperature`` (``[B]``): log-probabilities
    ``scores [B, vocab]`` (-inf where a token is not allowed)."""
    pitch = np.where(is_pitch[None, :], scores, -np.inf)
    onset = _logsumexp(pitch)  # [B]: log P(a new note), -inf if none is allowed
    sharpened = pitch / pitch_temperature[:, None]
    with np.errstate(invalid="ignore"):  # rows without any allowed pitch: nothing to add
        within = sharpened - _logsumexp(sharpened)[:, None]
    out = np.where(is_pitch[None, :], (onset / rhythm_temperature)[:, None] + within,
                   scores / rhythm_temperature)
    return np.where(np.isnan(out), -np.inf, out)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """Row-wise log(sum(exp(x))), -inf for rows that are all -inf."""
    top = x.max(axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(x - safe[:, None]).sum(axis=-1))
