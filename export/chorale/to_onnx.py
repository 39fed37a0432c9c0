"""Export the voice networks to ONNX, check parity, write their cards.

Each voice becomes ``chorale-<voice>.onnx`` with inputs ``tokens int64 [batch, 4, W]``
and ``meta int64 [batch, W, 4]`` and output ``logits float32 [batch, vocab]``, and a JSON
card beside it (see :mod:`kantor.engine.models`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import torch

from kantor.engine.chorale.encoding import META_FIELDS, META_SIZES, STEPS_PER_QUARTER, VOICES
from kantor.engine.models import sha256_of
from kantor.export.chorale.corpus import ChoraleCorpus
from kantor.export.chorale.model import VoiceNet

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
MODEL_VERSION = "1.0.0"


def example_inputs(net: VoiceNet, vocab_sizes: list[int], batch: int,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random but valid inputs for tracing and parity checks."""
    generator = torch.Generator().manual_seed(seed)
    window = net.config.window
    tokens = torch.stack([torch.randint(0, n, (batch, window), generator=generator)
                          for n in vocab_sizes], dim=1)
    meta = torch.stack([torch.randint(0, n, (batch, window), generator=generator)
                        for n in META_SIZES], dim=2)
    return tokens, meta


def export_voice(net: VoiceNet, vocab_sizes: list[int], path: Path) -> None:
    """Write one voice network to ``path`` with a dynamic batch dimension."""
    net.eval()
    tokens, meta = example_inputs(net, vocab_sizes, batch=8)
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(net, (tokens, meta), str(path), dynamo=True, external_data=False,
                      input_names=["tokens", "meta"], output_names=["logits"],
                      dynamic_shapes=({0: batch}, {0: batch}))


def parity_error(net: VoiceNet, vocab_sizes: list[int], path: Path, batch: int = 64) -> float:
    """Largest absolute logit difference between PyTorch and ONNX Runtime."""
    import onnxruntime as ort

    tokens, meta = example_inputs(net, vocab_sizes, batch=batch, seed=1)
    with torch.no_grad():
        expected = net(tokens, meta).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"tokens": tokens.numpy(), "meta": meta.numpy()})[0]
    return float(np.abs(expected - actual).max())


def write_card(path: Path, net: VoiceNet, corpus: ChoraleCorpus, metrics: dict,
               training: dict, task: str, shape: dict) -> dict:
    """The JSON card beside ``path`` (written last: it carries the file's hash).
    ``shape`` holds what the runtime needs to build inputs (``context`` for the offline
    sampler; ``past``, ``lookahead_max`` and ``decision_order`` for the live one)."""
    voice = net.voice
    window = net.config.window
    vocab = corpus.vocabularies[voice]
    card = {
        "name": path.stem,
        "version": MODEL_VERSION,
        "task": task,
        "created": dt.date.today().isoformat(),
        "voice": VOICES[voice],
        "inputs": {"tokens": {"dtype": "int64", "shape": ["batch", 4, window],
                              "note": "S,A,T,B token rows; what the voice may not see is MASK"},
                   "meta": {"dtype": "int64", "shape": ["batch", window, len(META_FIELDS)],
                            "fields": list(META_FIELDS), "sizes": list(META_SIZES)}},
        "outputs": {"logits": {"dtype": "float32", "shape": ["batch", vocab.size]}},
        **shape,
        "grid": {"steps_per_quarter": STEPS_PER_QUARTER, "step": "16th note"},
        "vocabulary": vocab.to_json(),
        "vocabularies": [v.to_json() for v in corpus.vocabularies],
        "architecture": net.config.to_json(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training_data": {
            "source": "music21 corpus, Bach chorales (4-voice S/A/T/B files)",
            "chorales": len(corpus.chorales),
            "split": {s: len(corpus.split(s)) for s in ("train", "valid", "test")},
            "split_rule": "by tune family (sha256 of the family name), 80/10/10",
            "test_chorales": [c.name for c in corpus.split("test")],
            "duplicates_removed": len(corpus.duplicates),
            "augmentation": "transposition within every voice's range",
        },
        "training": training,
        "metrics": metrics,
        "sha256": sha256_of(path),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def export_voices(nets: list[VoiceNet], vocab_sizes: list[int], out_dir: Path,
                  stem: str) -> tuple[list[Path], list[float]]:
    """Export each voice network to ``out_dir/<stem>-<voice>.onnx`` and check it against
    PyTorch. Returns the paths and each one's largest logit difference; RuntimeError if
    any exceeds :data:`PARITY_TOLERANCE`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, errors = [], []
    for net in nets:
        path = out_dir / f"{stem}-{VOICES[net.voice]}.onnx"
        export_voice(net, vocab_sizes, path)
        error = parity_error(net, vocab_sizes, path)
        if error > PARITY_TOLERANCE:
            raise RuntimeError(f"{path.name}: ONNX differs from PyTorch by {error:.2e}")
        paths.append(path)
        errors.append(error)
    return paths, errors
