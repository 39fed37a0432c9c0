"""Training examples for the voice models: Festival's segments + the analysed frames.

For each utterance: phone items (engine/speech/linguistic), each phone's duration in
5 ms frames, and the frames (f0, mcep, bap) cut to the segments' length. Festival's
``ax`` is ARPAbet ``AH`` unstressed; its syllable stress is 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kantor.engine.speech.features import FRAME_SECONDS, Frames
from kantor.engine.speech.linguistic import PhoneItem, encode
from kantor.engine.speech.phones import PAUSE, PHONE_INDEX
from kantor.export.speech.analysis import FEATURES_DIR, load_frames
from kantor.export.speech.festival import DEFAULT_DIR, Segment, read_corpus_index, read_lab

FESTIVAL_PHONES = {"ax": "AH"}


@dataclass
class Example:
    """One utterance ready for training; ``durations`` in frames, summing to len(frames)."""

    ident: str
    split: str
    text: str
    items: list[PhoneItem]
    ids: np.ndarray
    feats: np.ndarray
    durations: np.ndarray
    frames: Frames | None


def items_from_segments(segments: list[Segment]) -> list[PhoneItem]:
    """Festival segments -> phone items (word index counted from word changes)."""
    items: list[PhoneItem] = []
    word = -1
    previous = None
    for segment in segments:
        if segment.phone == PAUSE:
            items.append(PhoneItem(PAUSE, 0, -1))
            previous = None
            continue
        phone = FESTIVAL_PHONES.get(segment.phone, segment.phone.upper())
        if phone not in PHONE_INDEX:
            raise ValueError(f"unknown Festival phone {segment.phone!r}")
        if segment.word != previous:
            word += 1
            previous = segment.word
        items.append(PhoneItem(phone, segment.stress, word))
    return items


def durations_from_segments(segments: list[Segment]) -> np.ndarray:
    """Frames per segment: boundaries rounded to the 5 ms grid, at least 1 frame each."""
    ends = np.round(np.array([s.end for s in segments]) / FRAME_SECONDS).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    return np.maximum(ends - starts, 1)


def load_example(ident: str, split: str, text: str, corpus: Path = DEFAULT_DIR,
                 features: Path | None = FEATURES_DIR) -> Example:
    """One utterance; ``frames`` is None when ``features`` is None or not analysed yet."""
    segments = read_lab(corpus / f"{ident}.lab")
    items = items_from_segments(segments)
    ids, feats = encode(items, question=text.rstrip().endswith("?"))
    durations = durations_from_segments(segments)
    frames = None
    path = None if features is None else features / f"{ident}.npz"
    if path is not None and path.exists():
        frames = load_frames(path)
        total = int(durations.sum())
        if len(frames) < total:  # analysis is a frame or two short at most: pad the end
            pad = total - len(frames)
            frames = Frames(np.pad(frames.f0, (0, pad)),
                            np.pad(frames.mcep, ((0, pad), (0, 0)), mode="edge"),
                            np.pad(frames.bap, ((0, pad), (0, 0)), mode="edge"))
        frames = frames[:total]
    return Example(ident, split, text, items, ids, feats, durations, frames)


def load_examples(split: str | None = None, limit: int | None = None,
                  need_frames: bool = True, corpus: Path = DEFAULT_DIR,
                  features: Path = FEATURES_DIR) -> list[Example]:
    """Examples of ``split`` ("train"/"test"/None = both), in the corpus order; with
    ``need_frames`` only the analysed ones."""
    rows = [r for r in read_corpus_index(corpus) if split is None or r[1] == split]
    if need_frames:
        rows = [r for r in rows if (features / f"{r[0]}.npz").exists()]
    rows = rows[:limit] if limit else rows
    return [load_example(i, s, t, corpus, features if need_frames else None)
            for i, s, t in tqdm(rows, desc=f"loading {split or 'all'}", unit="utt",
                                disable=len(rows) < 200)]


VALID_COUNT = 100  # sentences of the training split kept back for validation, at most
NOT_RENDERED = "no rendered corpus: run `python -m kantor.export.speech.festival` first"
NOT_ANALYSED = ("no analysed corpus: run `python -m kantor.export.speech.festival` and "
                "`python -m kantor.export.speech.analysis` first")


def training_splits(train_limit: int | None, test_limit: int | None,
                    need_frames: bool = True, corpus: Path = DEFAULT_DIR,
                    features: Path = FEATURES_DIR) -> tuple[list[Example], list[Example]]:
    """(training examples, held-out test examples) of the corpus; ValueError saying what
    to run first when there are too few."""
    examples = load_examples("train", train_limit, need_frames, corpus, features)
    test = load_examples("test", test_limit, need_frames, corpus, features)
    if len(examples) < 2 or not test:
        raise ValueError(NOT_ANALYSED if need_frames else NOT_RENDERED)
    return examples, test


def hold_out(examples: list, count: int = VALID_COUNT) -> tuple[list, list]:
    """(validation, training): the first ``count`` examples, at most a fifth, at least one."""
    keep = max(1, min(count, len(examples) // 5))
    return examples[:keep], examples[keep:]


def card_training_data(what: str, train: list, valid: list, test: list,
                       note: str = "") -> dict:
    """The ``training_data`` of a speech model's card: the Festival corpus (``what`` of it
    the model learns from) and the split sizes and rule."""
    return {"source": "Festival HTS voice cmu_us_slt_arctic_hts rendering of fortunes + "
                      f"WordNet sentences (export/speech/festival.py){what}",
            "train_sentences": len(train), "valid_sentences": len(valid),
            "test_sentences": len(test),
            "test_rule": f"sha256(sentence) % 50 == 0 (export/speech/texts.py){note}"}


def write_card(path: Path, card: dict, training: dict, parity: float, metrics: dict) -> dict:
    """Complete a speech model's card (its training record, ONNX parity, held-out
    metrics, the file's hash) and write it beside ``path``; returns it."""
    import json

    from kantor.engine.models import sha256_of

    card = {**card, "training": training, "onnx_parity_max_abs": parity, "metrics": metrics,
            "sha256": sha256_of(path)}
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return card
