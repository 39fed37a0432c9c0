"""Shipped models: an ``.onnx`` file, its JSON card beside it, one ONNX Runtime session.

The card (``NAME.json`` next to ``NAME.onnx``) records what the model is and how well it
did on held-out data, and the file's sha256, which is checked before a session is made,
so a truncated or swapped file fails loudly at load instead of producing nonsense.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

ASSETS = Path(__file__).resolve().parent / "assets"
# The hymn tune harmonised when no melody is given (and the service's warm-up).
BUNDLED_MELODY = ASSETS / "melodies" / "old-hundredth.musicxml"


class ModelError(RuntimeError):
    """A model file or its card is missing, corrupt or does not match."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _card_class(card_path: Path) -> type[dict]:
    class Card(dict):
        """A card's JSON object: a missing key is a ModelError naming the card, so every
        ``card["context"]`` in the engine fails in one line instead of a KeyError."""

        def __missing__(self, key):
            raise ModelError(f"model card {card_path.name} has no '{key}': reinstall Kantor "
                             "or re-export the model")

    return Card


# Every card's common part (one schema for all models): what it is, which file it
# vouches for, and its measured metrics ({} only on a provisional card an export writes
# to score the model before the real card). The rest of a card is the model's own.
CARD_SCHEMA: dict[str, type] = {"name": str, "version": str, "task": str, "sha256": str,
                                "metrics": dict}


def check_card(card: dict, where: str = "model card") -> None:
    """ModelError naming every key of CARD_SCHEMA that is missing or of the wrong type."""
    problems = [f"'{key}' is missing" if key not in card else
                f"'{key}' is not a {kind.__name__}"
                for key, kind in CARD_SCHEMA.items()
                if key not in card or not isinstance(card[key], kind)]
    if problems:
        raise ModelError(f"{where}: {'; '.join(problems)}: reinstall Kantor or re-export "
                         "the model")


def provisional_card(onnx_path: Path, name: str, task: str, **extra) -> dict:
    """A card that lets an export load ``onnx_path`` to measure it: the schema's keys,
    empty metrics, ``provisional``: True."""
    return {"name": name, "version": "0", "task": task, "sha256": sha256_of(onnx_path),
            "metrics": {}, "provisional": True, **extra}


def read_card(onnx_path: Path) -> dict:
    """The JSON card beside ``onnx_path``; ModelError if absent, unreadable or not of the
    card schema, and when a key the engine needs is missing."""
    card_path = Path(onnx_path).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(), object_hook=_card_class(card_path))
    except FileNotFoundError:
        raise ModelError(f"model card {card_path} is missing") from None
    except (OSError, ValueError, RecursionError) as error:  # ValueError: JSON's errors
        raise ModelError(f"model card {card_path} is unreadable: {error}") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {card_path} is not a JSON object")
    check_card(card, f"model card {card_path.name}")
    return card


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Options for small latency-bound models: one thread avoids pool wake-up jitter."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


@dataclass
class OnnxModel:
    """A verified model: its card, its session and the names of its inputs/outputs."""

    path: Path
    card: dict
    session: ort.InferenceSession

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session; inputs by name, outputs in the card's order."""
        return self.session.run(None, inputs)


def load_model(onnx_path: Path, threads: int = 1, verify: bool = True) -> OnnxModel:
    """Load ``onnx_path`` after checking its sha256 against its card."""
    onnx_path = Path(onnx_path)
    if not onnx_path.exists():
        raise ModelError(f"model file {onnx_path} is missing")
    card = read_card(onnx_path)
    if verify:
        expected = card.get("sha256")
        actual = sha256_of(onnx_path)
        if expected != actual:
            raise ModelError(
                f"{onnx_path.name} does not match its card (sha256 {actual[:12]}..., card "
                f"says {str(expected)[:12]}...): the file is corrupt or was replaced; "
                "reinstall Kantor or re-export the model")
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=session_options(threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types
        raise ModelError(f"ONNX Runtime cannot load {onnx_path.name}: {error}") from None
    return OnnxModel(onnx_path, card, session)
