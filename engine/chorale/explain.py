"""Why this note: integrated-gradients attribution of a voice network's choice.

Integrated gradients (Sundararajan et al., ICML 2017) credit each input of a network with
its share of the difference between the network's output at the input and at a
baseline: the input's distance from the baseline times the output's gradient averaged
along the straight path between them. Here the output is the logit of the note a voice
network chose, the inputs are the token embeddings of the window it reads (every voice
at every step), and the baseline puts the MASK token's embedding in every cell (the
network told nothing of any note) with the metadata (beat, fermatas, key) unchanged.
Attributions are summed over each cell's embedding dimensions, so one number per
(voice, step) says how much that note pushed the choice up (positive) or down, in nats of
logit; they add up to logit(input) - logit(baseline) (the completeness axiom).

ONNX Runtime gives no gradients and the engine runs without torch, so the gradient is
written out here: the networks are embeddings, a per-step layer and an MLP with ReLUs
(export/chorale/model.py), whose weights are read from the ONNX file itself and checked
against ONNX Runtime before use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.engine.chorale.contract import live_hidden_by_decision, live_inputs
from kantor.engine.chorale.encoding import (
    END,
    HOLD,
    LIVE_DECISION_ORDER,
    MASK,
    REST,
    START,
    VOICES,
    VoiceVocabulary,
    pad_for_windows,
)
from kantor.engine.models import ModelError, OnnxModel

IG_STEPS = 256  # points on the path (midpoint rule): completeness to about 0.5% here
PARITY_TOLERANCE = 1e-3  # largest logit difference from ONNX Runtime accepted


@dataclass
class VoiceWeights:
    """One voice network's weights, as numpy arrays (torch's layouts: ``[out, in]``)."""

    token_embeds: list[np.ndarray]  # per voice: [vocab, d]
    meta_embeds: list[np.ndarray]  # per metadata field: [size, d_field]
    step_w: np.ndarray  # [step_dim, 4 d + sum(d_field)]
    step_b: np.ndarray
    hidden1_w: np.ndarray  # [hidden, window * step_dim]
    hidden1_b: np.ndarray
    hidden2_w: np.ndarray  # [hidden, hidden]
    hidden2_b: np.ndarray
    out_w: np.ndarray  # [vocab of this voice, hidden]
    out_b: np.ndarray

    @classmethod
    def from_onnx(cls, model: OnnxModel) -> VoiceWeights:
        """Read the weights from ``model``'s file and check a forward pass against its
        session; ModelError when the file is not a voice network of this shape."""
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError as error:  # a runtime dependency: a broken install
            raise ModelError(f"explaining needs the onnx package: {error}") from None
        graph = onnx.load(str(model.path)).graph
        arrays = {i.name: numpy_helper.to_array(i).astype(np.float32)
                  for i in graph.initializer}
        taken: set[str] = set()

        def weight(name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
            if name in arrays and (shape is None or arrays[name].shape == shape):
                taken.add(name)
                return arrays[name]
            # the exporter keeps some matrices transposed under generated names
            found = [k for k, a in arrays.items() if k not in taken and shape is not None
                     and a.ndim == 2 and a.shape == shape[::-1]]
            if len(found) != 1:
                raise ModelError(f"{model.path.name} has no weight '{name}': it is not a "
                                 "voice network this engine can explain")
            taken.add(found[0])
            return arrays[found[0]].T.copy()

        def count(prefix: str) -> int:
            return len({k.split(".")[1] for k in arrays if k.startswith(prefix)})

        token_embeds = [weight(f"token_embeds.{v}.weight") for v in range(4)]
        meta_embeds = [weight(f"meta_embeds.{i}.weight") for i in range(count("meta_embeds."))]
        step_b = weight("step.0.bias")
        step_in = 4 * token_embeds[0].shape[1] + sum(m.shape[1] for m in meta_embeds)
        hidden1_b, hidden2_b = weight("body.1.bias"), weight("body.4.bias")
        out_b = weight("out.bias")
        weights = cls(token_embeds, meta_embeds,
                      weight("step.0.weight", (step_b.size, step_in)), step_b,
                      weight("body.1.weight"), hidden1_b,
                      weight("body.4.weight", (hidden2_b.size, hidden1_b.size)), hidden2_b,
                      weight("out.weight", (out_b.size, hidden2_b.size)), out_b)
        weights._check(model)
        return weights

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights under the training code's parameter names (export/chorale/model.py
        ``VoiceNet``), so a torch copy can be rebuilt from the ONNX file."""
        return {**{f"token_embeds.{v}.weight": e for v, e in enumerate(self.token_embeds)},
                **{f"meta_embeds.{i}.weight": m for i, m in enumerate(self.meta_embeds)},
                "step.0.weight": self.step_w, "step.0.bias": self.step_b,
                "body.1.weight": self.hidden1_w, "body.1.bias": self.hidden1_b,
                "body.4.weight": self.hidden2_w, "body.4.bias": self.hidden2_b,
                "out.weight": self.out_w, "out.bias": self.out_b}

    @property
    def window(self) -> int:
        return self.hidden1_w.shape[1] // self.step_b.size

    def _check(self, model: OnnxModel) -> None:
        rng = np.random.default_rng(0)
        tokens = np.stack([rng.integers(0, e.shape[0], (4, self.window))
                           for e in self.token_embeds], axis=1)
        meta = np.stack([rng.integers(0, m.shape[0], (4, self.window))
                         for m in self.meta_embeds], axis=-1)
        expected = model.run({"tokens": tokens, "meta": meta})[0]
        got = np.stack([self.logits(tokens[i], meta[i]) for i in range(4)])
        if not np.allclose(got, expected, atol=PARITY_TOLERANCE):
            raise ModelError(f"{model.path.name}: its weights read back do not give its "
                             f"logits (off by {np.abs(got - expected).max():.1e})")

    # ------------------------------------------------------------------ the network
    def embed(self, tokens: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings ``[4, W, d]`` and metadata embeddings ``[W, sum d_field]`` of
        one window (``tokens [4, W]``, ``meta [W, fields]``)."""
        cells = np.stack([self.token_embeds[v][tokens[v]] for v in range(4)])
        fields = np.concatenate([m[meta[:, i]] for i, m in enumerate(self.meta_embeds)],
                                axis=-1)
        return cells, fields

    def _forward(self, cells: np.ndarray, fields: np.ndarray
                 ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Logits ``[S, vocab]`` for ``S`` windows of embedded cells ``[S, 4, W, d]``,
        and the pre-activations the gradient needs."""
        s, _, window, _ = cells.shape
        steps = np.concatenate([cells.transpose(0, 2, 1, 3).reshape(s, window, -1),
                                np.broadcast_to(fields, (s, *fields.shape))], axis=-1)
        z1 = steps @ self.step_w.T + self.step_b  # [S, W, step_dim]
        z2 = np.maximum(z1, 0).reshape(s, -1) @ self.hidden1_w.T + self.hidden1_b
        z3 = np.maximum(z2, 0) @ self.hidden2_w.T + self.hidden2_b
        return np.maximum(z3, 0) @ self.out_w.T + self.out_b, (z1, z2, z3)

    def logits(self, tokens: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """The network's logits ``[vocab]`` for one window (as ONNX Runtime gives them)."""
        cells, fields = self.embed(tokens, meta)
        return self._forward(cells[None], fields)[0][0]

    def gradient(self, cells: np.ndarray, fields: np.ndarray, target: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Logit ``target`` of each of ``S`` windows ``[S]`` and its gradient with respect
        to the token embeddings ``[S, 4, W, d]`` (backpropagation by hand: ReLU MLP)."""
        logits, (z1, z2, z3) = self._forward(cells, fields)
        g3 = self.out_w[target] * (z3 > 0)
        g2 = (g3 @ self.hidden2_w) * (z2 > 0)
        g1 = (g2 @ self.hidden1_w).reshape(z1.shape) * (z1 > 0)
        d = cells.shape[-1]
        g_steps = (g1 @ self.step_w)[..., :4 * d]  # the token part of each step's input
        s, window = cells.shape[0], cells.shape[2]
        return logits[:, target], g_steps.reshape(s, window, 4, d).transpose(0, 2, 1, 3)


@dataclass
class Attribution:
    """Integrated gradients of one choice: ``cells [4, W]`` nats of logit per (voice,
    window step); ``logit`` at the input and ``baseline_logit`` at the all-MASK baseline
    (their difference is what the cells share out); ``steps`` points on the path."""

    cells: np.ndarray
    logit: float
    baseline_logit: float
    target: int
    steps: int
    baseline: str = "every token cell MASK (nothing known of any note), metadata as given"

    @property
    def completeness_error(self) -> float:
        """|sum of cells - (logit - baseline)| relative to that difference."""
        difference = self.logit - self.baseline_logit
        return abs(float(self.cells.sum()) - difference) / max(abs(difference), 1e-9)


def integrated_gradients(weights: VoiceWeights, tokens: np.ndarray, meta: np.ndarray,
                         target: int, steps: int = IG_STEPS) -> Attribution:
    """Attribution of logit ``target`` over the cells of one window (``tokens [4, W]``
    as the network sees it, ``meta [W, fields]``), against the all-MASK baseline, by the
    midpoint rule with ``steps`` points."""
    cells, fields = weights.embed(tokens, meta)
    base = np.stack([np.broadcast_to(weights.token_embeds[v][MASK], cells[v].shape)
                     for v in range(4)])
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    path = base[None] + alphas[:, None, None, None] * (cells - base)[None]
    _, grads = weights.gradient(path.astype(np.float32), fields, target)
    attribution = ((cells - base) * grads.mean(axis=0)).sum(-1)
    ends, _ = weights.gradient(np.stack([cells, base]), fields, target)
    return Attribution(attribution, float(ends[0]), float(ends[1]), target, steps)


@dataclass
class Explanation:
    """Why ``voice`` chose ``chosen`` at a step: the attribution over the cells its
    network read, laid out on the piece (``steps [W]``: each window column's step, in
    the piece for the offline harmoniser, relative to the decided step live) with the
    note each cell held (``notes [4][W]``: "G4", "hold", "rest", "?" for hidden, ...)."""

    voice: int
    step: int
    chosen: str
    attribution: Attribution
    steps: np.ndarray
    notes: list[list[str]]
    network: str

    def top(self, count: int = 10) -> list[dict]:
        """The ``count`` cells with the largest attribution (either sign), largest first."""
        cells = self.attribution.cells
        total = float(np.abs(cells).sum()) or 1.0
        order = np.argsort(-np.abs(cells), axis=None)[:count]
        rows = []
        for flat in order:
            voice, column = divmod(int(flat), cells.shape[1])
            rows.append({"voice": VOICES[voice], "step": int(self.steps[column]),
                         "note": self.notes[voice][column],
                         "nats": round(float(cells[voice, column]), 4),
                         "share": round(abs(float(cells[voice, column])) / total, 4)})
        return rows

    def to_json(self) -> dict:
        """Everything said, for HTTP and files (cells in nats of logit)."""
        a = self.attribution
        return {"voice": VOICES[self.voice], "step": self.step, "chosen": self.chosen,
                "network": self.network, "logit": round(a.logit, 4),
                "baseline_logit": round(a.baseline_logit, 4), "baseline": a.baseline,
                "ig_steps": a.steps, "completeness_error": round(a.completeness_error, 5),
                "steps": [int(s) for s in self.steps], "notes": self.notes,
                "cells_nats": np.round(a.cells, 5).tolist(), "top": self.top()}


def token_names(tokens: np.ndarray, vocabularies: list[VoiceVocabulary]) -> list[list[str]]:
    """A readable name for each cell of ``tokens [4, W]``."""
    names = {START: "start", END: "end", MASK: "?", REST: "rest", HOLD: "hold"}
    return [[names.get(int(t)) or pitch_name(vocabularies[v].pitch_of_token(int(t)))
             for t in row] for v, row in enumerate(tokens)]


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name with sharps ("C#4")."""
    return f"{PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def explain_offline(weights: VoiceWeights, vocabularies: list[VoiceVocabulary],
                    tokens: np.ndarray, meta: np.ndarray, voice: int, step: int,
                    context: int, steps: int = IG_STEPS) -> Explanation:
    """Why the offline network of ``voice`` gives its token at ``step`` of a finished
    harmonisation (``tokens [4, T]``, ``meta [T, fields]`` the model reads): the window
    it reads there, its own cell masked, as the sampler's last look at that step."""
    if not 0 <= step < tokens.shape[1]:
        raise ValueError(f"step {step} is outside the piece (0-{tokens.shape[1] - 1})")
    padded, padded_meta = pad_for_windows(tokens, meta, context)
    window = padded[:, step:step + 2 * context + 1].copy()
    chosen = int(window[voice, context])
    window[voice, context] = MASK
    attribution = integrated_gradients(weights, window, padded_meta[step:step + 2 * context + 1],
                                       chosen, steps)
    names = token_names(window, vocabularies)
    return Explanation(voice, step, token_names(np.full((4, 1), chosen), vocabularies)[voice][0],
                       attribution, np.arange(step - context, step + context + 1), names,
                       "offline")


def explain_live(weights: VoiceWeights, vocabularies: list[VoiceVocabulary],
                 decision: LiveDecision, voice: int, steps: int = IG_STEPS) -> Explanation:
    """Why the live network of ``voice`` chose its token in ``decision`` (the last chord
    a live harmoniser answered): the cells it saw then (the past, the melody up to its
    lookahead, the voices decided before it; the rest hidden)."""
    check_live_voice(voice)
    past, window = decision.past, decision.grid.shape[1]
    hidden = live_hidden_by_decision(window, past, decision.ahead)[
        LIVE_DECISION_ORDER.index(voice)]
    seen = live_inputs(decision.grid[None], hidden)[0]
    chosen = int(decision.grid[voice, past])
    attribution = integrated_gradients(weights, seen, decision.meta, chosen, steps)
    return Explanation(voice, decision.step,
                       token_names(np.full((4, 1), chosen), vocabularies)[voice][0],
                       attribution, np.arange(window) - past, token_names(seen, vocabularies),
                       f"live ({decision.playing})")


def check_live_voice(voice: int) -> None:
    """ValueError unless the live harmoniser decides ``voice`` (the soprano is the
    player's)."""
    if voice not in LIVE_DECISION_ORDER:
        decided = ", ".join(VOICES[v] for v in LIVE_DECISION_ORDER)
        raise ValueError(f"the live harmoniser decides {decided}, not the {VOICES[voice]}")


@dataclass(frozen=True)
class LiveDecision:
    """What a live decision read and gave: ``grid [4, W]`` after it (column ``past`` is
    the step decided), ``meta [W, fields]`` as the networks read it, the melody's
    ``ahead`` steps known past it, the harmoniser's step count and which networks
    played."""

    grid: np.ndarray
    meta: np.ndarray
    past: int
    ahead: int
    step: int
    playing: str


class LiveExplainer:
    """Explains live decisions from the model files in ``assets`` (the prior's and the
    tuned set's), reading each network's weights once, when first asked."""

    def __init__(self, assets: Path) -> None:
        self.assets = Path(assets)
        self._weights: dict[tuple[str, int], tuple[VoiceWeights, list[VoiceVocabulary]]] = {}

    def explain(self, decision: LiveDecision, voice: int) -> Explanation:
        """Why ``voice`` chose its note in ``decision``; ValueError for a voice the live
        harmoniser does not decide, ModelError for missing or unreadable models."""
        check_live_voice(voice)
        key = (decision.playing, voice)
        if key not in self._weights:
            from kantor.engine.chorale.live import LIVE_MODEL_STEM, LIVE_TUNED_STEM
            from kantor.engine.models import load_model

            stem = LIVE_TUNED_STEM if decision.playing == "tuned" else LIVE_MODEL_STEM
            model = load_model(self.assets / f"{stem.format(voice=VOICES[voice])}.onnx")
            vocabularies = [VoiceVocabulary(**{k: c[k] for k in ("voice", "low", "high")})
                            for c in model.card["vocabularies"]]
            self._weights[key] = (VoiceWeights.from_onnx(model), vocabularies)
        weights, vocabularies = self._weights[key]
        return explain_live(weights, vocabularies, decision, voice)
