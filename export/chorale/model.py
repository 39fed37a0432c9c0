"""DeepBach's voice networks in PyTorch.

One network per voice predicts that voice's token at a step from a window of
``context`` steps before and after (all four voices, with metadata) and the other three
voices at the step itself (the voice's own token there is MASK). DeepBach reads the
window with LSTMs; here each step is embedded and the whole window goes through an MLP,
which learns as well on this corpus, trains several times faster on a CPU and runs in
well under a millisecond per batch in ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from kantor.engine.chorale.contract import live_hidden_by_decision
from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER, MASK, META_SIZES, VOICES

META_EMBED_DIMS = (4, 2, 2, 8, 2, 4, 4, 4)  # one per META_FIELDS entry


@dataclass
class VoiceNetConfig:
    """Shape of every voice network (all four share it)."""

    context: int = 16  # steps each side of the predicted step (16 = one 4/4 bar)
    token_embed: int = 32
    step_dim: int = 64
    hidden: int = 384
    dropout: float = 0.2

    @property
    def past(self) -> int:
        return self.context

    @property
    def future(self) -> int:
        return self.context

    @property
    def window(self) -> int:
        return self.past + 1 + self.future

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LiveNetConfig:
    """Shape of the live voice networks: they see ``past`` steps of every voice and the
    soprano up to ``lookahead`` steps ahead, never the lower voices' future."""

    past: int = 16
    lookahead: int = 8  # the most lookahead a user can ask for; training varies it 0..max
    token_embed: int = 32
    step_dim: int = 64
    hidden: int = 384
    dropout: float = 0.2

    @property
    def future(self) -> int:
        return self.lookahead

    @property
    def window(self) -> int:
        return self.past + 1 + self.lookahead

    def to_json(self) -> dict:
        return asdict(self)


class VoiceNet(nn.Module):
    """Logits over one voice's tokens from a window of the piece.

    Inputs: ``tokens int64 [B, 4, W]`` (what the voice may not see is MASK),
    ``meta int64 [B, W, 4]``, with ``W = config.window``. Output: ``logits float32 [B, vocab]``.
    """

    def __init__(self, voice: int, vocab_sizes: list[int],
                 config: VoiceNetConfig | LiveNetConfig) -> None:
        super().__init__()
        self.voice = voice
        self.config = config
        window = config.window
        self.token_embeds = nn.ModuleList(nn.Embedding(n, config.token_embed) for n in vocab_sizes)
        self.meta_embeds = nn.ModuleList(
            nn.Embedding(n, d) for n, d in zip(META_SIZES, META_EMBED_DIMS, strict=True))
        step_in = len(VOICES) * config.token_embed + sum(META_EMBED_DIMS)
        self.step = nn.Sequential(nn.Linear(step_in, config.step_dim), nn.ReLU())
        self.body = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(window * config.step_dim, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
        )
        self.out = nn.Linear(config.hidden, vocab_sizes[voice])

    def forward(self, tokens: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        parts = [embed(tokens[:, v]) for v, embed in enumerate(self.token_embeds)]
        parts += [embed(meta[:, :, i]) for i, embed in enumerate(self.meta_embeds)]
        steps = self.step(torch.cat(parts, dim=-1))  # [B, W, step_dim]
        return self.out(self.body(steps.flatten(1)))


class ChoraleModel(nn.Module):
    """The four voice networks trained together (one loss per voice, summed)."""

    def __init__(self, vocab_sizes: list[int], config: VoiceNetConfig) -> None:
        super().__init__()
        self.config = config
        self.predicted_voices = list(range(len(VOICES)))
        self.voices = nn.ModuleList(VoiceNet(v, vocab_sizes, config) for v in range(len(VOICES)))

    def forward(self, tokens: torch.Tensor, meta: torch.Tensor,
                generator: torch.Generator | None = None,
                lookahead: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits of every voice at the window centre; each net sees its own voice masked.
        (``generator`` and ``lookahead`` only matter to the live model.)"""
        centre = self.config.context
        logits = []
        for v, net in enumerate(self.voices):
            masked = tokens.clone()
            masked[:, v, centre] = MASK
            logits.append(net(masked, meta))
        return logits


class LiveModel(nn.Module):
    """Networks for the alto, tenor and bass that decide a step from the past, the soprano
    up to a lookahead, and the voices already decided at that step (in
    ``LIVE_DECISION_ORDER``).

    In training the lookahead is drawn per example from 0 to the configured maximum, so
    one set of networks serves every lookahead a user picks."""

    def __init__(self, vocab_sizes: list[int], config: LiveNetConfig) -> None:
        super().__init__()
        self.config = config
        self.predicted_voices = list(LIVE_DECISION_ORDER)
        self.nets = nn.ModuleDict({VOICES[v]: VoiceNet(v, vocab_sizes, config)
                                   for v in LIVE_DECISION_ORDER})

    def voice_net(self, voice: int) -> VoiceNet:
        return self.nets[VOICES[voice]]

    def forward(self, tokens: torch.Tensor, meta: torch.Tensor,
                generator: torch.Generator | None = None,
                lookahead: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits for each voice of ``predicted_voices``; ``lookahead [B]`` steps of soprano
        are visible (random per example when None)."""
        batch, _, window = tokens.shape
        if lookahead is None:
            lookahead = torch.randint(0, self.config.lookahead + 1, (batch,), generator=generator)
        # The engine's masks (engine/chorale/contract.py), one per lookahead and decision:
        # [lookahead, decision, 4, window], picked per example.
        hidden = torch.from_numpy(np.stack([
            np.stack(live_hidden_by_decision(window, self.config.past, ahead))
            for ahead in range(self.config.lookahead + 1)])).to(tokens.device)
        chosen = hidden[lookahead.to(tokens.device)]  # [B, decision, 4, window]
        return [self.voice_net(v)(tokens.masked_fill(chosen[:, i], MASK), meta)
                for i, v in enumerate(LIVE_DECISION_ORDER)]


def build_model(vocab_sizes: list[int], config: VoiceNetConfig | LiveNetConfig) -> nn.Module:
    """The offline (DeepBach) or the live model for a network config."""
    if isinstance(config, LiveNetConfig):
        return LiveModel(vocab_sizes, config)
    return ChoraleModel(vocab_sizes, config)
