"""Train the four DeepBach voice networks: ``kantor train harmonizer [--preset tiny]``.

Every epoch visits each step of each training chorale once, in a random transposition
that keeps all voices in range. The loop, checkpoints (the best epoch by validation NLL
kept apart), resuming and torchrun's processes are export/trainer.py's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kantor.engine.chorale.encoding import FAR, META_FIELDS, pad_for_windows, raw_to_tokens
from kantor.export.chorale.corpus import (
    Chorale,
    ChoraleCorpus,
    load_corpus,
    transposed,
    transpositions,
)
from kantor.export.chorale.model import LiveNetConfig, VoiceNetConfig, build_model
from kantor.export.trainer import Run, fit

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved beside its checkpoints)."""

    net: VoiceNetConfig | LiveNetConfig = field(default_factory=VoiceNetConfig)
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.0
    context_noise: float = 0.05  # share of context tokens replaced at random
    # Orderless training (Coconet, Huang et al. 2017): in this share of the windows a
    # random share (uniform 0-1) of the lower voices' tokens is masked, so a network
    # also knows what to sing when its neighbours are still undecided - what annealed
    # blocked Gibbs sampling asks of it. 0: every neighbour is always visible.
    orderless: float = 0.0
    seed: int = 0
    corpus_limit: int | None = None  # parse only the first N corpus files (tests)
    threads: int = 2
    device: str = "cpu"  # "cuda" trains on a GPU when one is lent; results match in kind

    def to_json(self) -> dict:
        return asdict(self)


PRESETS: dict[str, TrainConfig] = {
    # Orderless in half the windows: samples far closer to Bach's progressions than
    # with every neighbour always visible (benchmarks/harmonizer_style.py), at a small
    # cost in single-note likelihood.
    "default": TrainConfig(orderless=0.5),
    # The default trained twice as long (its validation NLL still fell at epoch 40).
    "long": TrainConfig(orderless=0.5, epochs=80),
    # The same networks with every neighbour always visible (the model before orderless
    # training; the style analysis compares the two).
    "visible": TrainConfig(),
    # Seconds on a CPU: proves the pipeline, not the music.
    "tiny": TrainConfig(net=VoiceNetConfig(context=4, token_embed=4, step_dim=8, hidden=16,
                                           dropout=0.0),
                        epochs=1, batch_size=64, corpus_limit=12, orderless=0.5),
    "live": TrainConfig(net=LiveNetConfig(), epochs=40),
    "live-tiny": TrainConfig(net=LiveNetConfig(past=4, lookahead=2, token_embed=4, step_dim=8,
                                               hidden=16, dropout=0.0),
                             epochs=1, batch_size=64, corpus_limit=12),
}


class WindowData:
    """Every version (chorale x transposition) padded and laid end to end, so a batch of
    windows is one fancy-indexing gather."""

    def __init__(self, chorales: list[Chorale], corpus: ChoraleCorpus, past: int, future: int,
                 transpose: bool, knows_the_future: bool = True) -> None:
        self.past, self.future = past, future
        context = max(past, future)
        self.skip = context - past  # padded windows start this far into the padding
        token_rows, meta_rows, self.versions_of = [], [], []
        self.version_start, self.version_length = [], []
        offset = 0
        for chorale in chorales:
            shifts = transpositions(chorale, corpus.vocabularies) if transpose else [0]
            versions = []
            for k in shifts:
                version = transposed(chorale, k)
                tokens = raw_to_tokens(version.raw, corpus.vocabularies)
                padded, meta = pad_for_windows(tokens, version.meta, context)
                token_rows.append(padded)
                meta_rows.append(meta)
                versions.append(len(self.version_start))
                self.version_start.append(offset)
                self.version_length.append(tokens.shape[1])
                offset += padded.shape[1]
            self.versions_of.append(versions)
        self.tokens = np.concatenate(token_rows, axis=1)
        self.meta = np.concatenate(meta_rows, axis=0)
        if not knows_the_future:  # a live player's next cadence and end are unknown
            self.meta[:, META_FIELDS.index("to_fermata")] = FAR
            self.meta[:, META_FIELDS.index("to_end")] = FAR
        self.version_start = np.asarray(self.version_start)
        self.version_length = np.asarray(self.version_length)

    def epoch_positions(self, rng: np.random.Generator) -> np.ndarray:
        """Window starts for one epoch: every step of every chorale, each chorale in one
        random transposition, shuffled."""
        starts = []
        for versions in self.versions_of:
            v = versions[rng.integers(len(versions))] if len(versions) > 1 else versions[0]
            starts.append(self.version_start[v] + self.skip + np.arange(self.version_length[v]))
        starts = np.concatenate(starts)
        return starts[rng.permutation(starts.size)]

    def all_positions(self) -> np.ndarray:
        """Every step of the first version of each chorale (evaluation)."""
        return np.concatenate([self.version_start[v[0]] + self.skip
                               + np.arange(self.version_length[v[0]]) for v in self.versions_of])

    def batch(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [B, 4, W], meta [B, W, 4], targets [B, 4]) for windows at ``starts``."""
        idx = starts[:, None] + np.arange(self.past + 1 + self.future)[None, :]
        tokens = self.tokens[:, idx].transpose(1, 0, 2)
        meta = self.meta[idx]
        targets = tokens[:, :, self.past]
        return torch.from_numpy(tokens.copy()), torch.from_numpy(meta), torch.from_numpy(
            targets.copy())


def corrupt_context(tokens: torch.Tensor, vocab_sizes: list[int], share: float,
                    centre: int, generator: torch.Generator) -> torch.Tensor:
    """Replace a random ``share`` of the window's musical tokens by random ones, so the
    networks learn to cope with the imperfect neighbours Gibbs sampling starts from."""
    if share <= 0:
        return tokens
    from kantor.engine.chorale.encoding import REST

    noisy = tokens.clone()
    for v, size in enumerate(vocab_sizes):
        row = noisy[:, v]
        hit = (torch.rand(row.shape, generator=generator) < share) & (row >= REST)
        hit[:, centre] = False  # the target stays true
        random_tokens = torch.randint(REST, size, row.shape, generator=generator)
        row[hit] = random_tokens[hit]
    return noisy


def mask_context(tokens: torch.Tensor, share: float, generator: torch.Generator
                 ) -> torch.Tensor:
    """In a random ``share`` of the windows, hide a random part (uniform 0-1 per window)
    of the alto, tenor and bass tokens behind MASK; the soprano, which the user gives,
    stays. The targets are read before this, so a centre may be hidden too: a network
    then predicts its voice with another voice at the same step still undecided."""
    if share <= 0:
        return tokens
    from kantor.engine.chorale.encoding import MASK

    batch = tokens.shape[0]
    chosen = torch.rand(batch, generator=generator) < share
    depth = torch.rand(batch, generator=generator) * chosen
    hidden = torch.rand(tokens[:, 1:].shape, generator=generator) < depth[:, None, None]
    masked = tokens.clone()
    masked[:, 1:][hidden] = MASK
    return masked


@torch.no_grad()
def evaluate_nll(model: nn.Module, data: WindowData, batch_size: int = 1024,
                 device: str = "cpu", lookahead: int = 0) -> tuple[list[float], list[float]]:
    """Mean negative log-likelihood (nats/token) and accuracy per predicted voice over every
    step (the live model at the given ``lookahead``)."""
    model.eval()
    loss = nn.CrossEntropyLoss(reduction="sum")
    starts = data.all_positions()
    n = len(model.predicted_voices)
    nll = np.zeros(n)
    correct = np.zeros(n)
    for i in range(0, starts.size, batch_size):
        tokens, meta, targets = (t.to(device) for t in data.batch(starts[i:i + batch_size]))
        ahead = torch.full((tokens.shape[0],), lookahead, dtype=torch.long)
        for k, (v, logits) in enumerate(zip(model.predicted_voices,
                                             model(tokens, meta, lookahead=ahead), strict=True)):
            nll[k] += float(loss(logits, targets[:, v]))
            correct[k] += float((logits.argmax(1) == targets[:, v]).sum())
    return (nll / starts.size).tolist(), (correct / starts.size).tolist()


def _what_is_learned(config: dict) -> dict:
    """A run's configuration without how it is computed (threads, device): a run may
    resume with other threads or on another device."""
    return {k: v for k, v in config.items() if k not in ("threads", "device")}


def train(config: TrainConfig, run_dir: Path, corpus: ChoraleCorpus | None = None
          ) -> tuple[nn.Module, dict]:
    """Train (or resume) a run in ``run_dir`` with the shared trainer (one process, or
    every process torchrun started); returns the best model and the training record."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    corpus = corpus or load_corpus(limit=config.corpus_limit)
    vocab_sizes = [v.size for v in corpus.vocabularies]
    net = config.net
    live = isinstance(net, LiveNetConfig)
    train_data = WindowData(corpus.split("train"), corpus, net.past, net.future, transpose=True,
                            knows_the_future=not live)
    valid_set = corpus.split("valid") or corpus.split("train")[:2]
    valid_data = WindowData(valid_set, corpus, net.past, net.future, transpose=False,
                            knows_the_future=not live)
    model = build_model(vocab_sizes, net)
    steps_per_epoch = math.ceil(train_data.all_positions().size / config.batch_size)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def batches(epoch: int, rng: np.random.Generator):
        starts = train_data.epoch_positions(rng)
        for i in range(0, starts.size, config.batch_size):
            yield train_data.batch(starts[i:i + config.batch_size])

    def prepare(batch, generator: torch.Generator):
        # every random choice made on the whole batch, so that its parts on several
        # processes see what one process would
        tokens, meta, targets = batch
        tokens = corrupt_context(tokens, vocab_sizes, config.context_noise, net.past,
                                 generator)
        tokens = mask_context(tokens, config.orderless, generator)
        lookahead = (torch.randint(0, net.lookahead + 1, (tokens.shape[0],),
                                   generator=generator) if live else None)
        return tokens, meta, targets, lookahead

    def loss(trained: nn.Module, part) -> torch.Tensor:
        tokens, meta, targets, lookahead = (None if t is None else t.to(config.device)
                                            for t in part)
        logits = trained(tokens, meta, lookahead=lookahead)
        return sum(loss_fn(lg, targets[:, v])
                   for v, lg in zip(model.predicted_voices, logits, strict=True))

    def validate(trained: nn.Module) -> dict:
        nll, accuracy = evaluate_nll(trained, valid_data, device=config.device)
        return {"valid_nll": nll, "valid_accuracy": accuracy,
                "valid_nll_mean": float(np.mean(nll))}

    run = Run(name="chorale-live" if live else "chorale", net=model,
              config=_what_is_learned(config.to_json()), epochs=config.epochs,
              batches=batches, prepare=prepare, loss=loss, learning_rate=config.learning_rate,
              weight_decay=config.weight_decay, warmup=0.1,
              validate=validate, best_key="valid_nll_mean", seed=config.seed,
              device=config.device, amp=config.device.startswith("cuda"),
              steps_per_epoch=steps_per_epoch)
    return fit(run, run_dir)
