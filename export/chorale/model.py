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

import torch
from torch import nn

from kantor.engine.chorale.encoding import META_SIZES, VOICES

META_EMBED_DIMS = (4, 2, 2, 8)


@dataclass
class VoiceNetConfig:
    """Shape of every voice network (all four share it)."""

    context: int = 16  # steps each side of the predicted step (16 = one 4/4 bar)
    token_embed: int = 32
    step_dim: int = 64
    hidden: int = 384
    dropout: float = 0.2

    def to_json(self) -> dict:
        return asdict(self)


class VoiceNet(nn.Module):
    """Logits over one voice's tokens from a window of the piece.

    Inputs: ``tokens int64 [B, 4, 2*context+1]`` (the voice's own centre token MASK),
    ``meta int64 [B, 2*context+1, 4]``. Output: ``logits float32 [B, vocab]``.
    """

    def __init__(self, voice: int, vocab_sizes: list[int], config: VoiceNetConfig) -> None:
        super().__init__()
        self.voice = voice
        self.config = config
        window = 2 * config.context + 1
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
        self.voices = nn.ModuleList(VoiceNet(v, vocab_sizes, config) for v in range(len(VOICES)))

    def forward(self, tokens: torch.Tensor, meta: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every voice at the window centre; each net sees its own voice masked."""
        from kantor.engine.chorale.encoding import MASK

        centre = self.config.context
        logits = []
        for v, net in enumerate(self.voices):
            masked = tokens.clone()
            masked[:, v, centre] = MASK
            logits.append(net(masked, meta))
        return logits
