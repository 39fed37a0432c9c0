"""Phone-level inputs of the voice models: which phone, and where it sits.

An utterance is a sequence of ``PhoneItem`` (ARPAbet phone without stress digit, or
``pau``; its stress; the index of its word, -1 for pauses). Pauses separate phrases.
``encode`` turns it into the arrays the ONNX models take: phone ids (N,) int64 and
context features (N, FEATURES) float32. Training (from Festival's segments) and the
engine (from the text front end) both go through this one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kantor.engine.speech.phones import PAUSE, PHONE_INDEX, VOWELS

FEATURE_NAMES = (
    "stressed", "vowel", "word_first", "word_last", "position_in_word", "word_length",
    "word_in_phrase", "phrase_words", "words_to_phrase_end", "last_phrase",
    "phrases_to_end", "question", "pause", "edge_pause", "syllables_in_word",
    "syllable_in_word",
)
FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class PhoneItem:
    """One phone of an utterance: ``phone`` in engine/speech/phones.PHONES (no digit),
    ``stress`` 0/1 (1 = primary or secondary), ``word`` index in the utterance or -1."""

    phone: str
    stress: int
    word: int


def encode(items: list[PhoneItem], question: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Phone ids (N,) int64 and features (N, FEATURES) float32 of one utterance."""
    n = len(items)
    ids = np.array([PHONE_INDEX[item.phone] for item in items], dtype=np.int64)
    feats = np.zeros((n, FEATURES), np.float32)
    # phrase number of each item (pauses belong to no phrase) and words per phrase
    phrase_of = np.full(n, -1)
    phrase = -1
    in_phrase = False
    for i, item in enumerate(items):
        if item.phone == PAUSE:
            in_phrase = False
            continue
        if not in_phrase:
            phrase += 1
            in_phrase = True
        phrase_of[i] = phrase
    phrases = phrase + 1
    words_of_phrase: dict[int, list[int]] = {}
    phones_of_word: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        if item.phone != PAUSE:
            words = words_of_phrase.setdefault(phrase_of[i], [])
            if not words or words[-1] != item.word:
                words.append(item.word)
            phones_of_word.setdefault(item.word, []).append(i)
    for i, item in enumerate(items):
        row = feats[i]
        if item.phone == PAUSE:
            row[12] = 1.0
            row[13] = 1.0 if i in (0, n - 1) else 0.0
            row[11] = float(question)
            continue
        members = phones_of_word[item.word]
        place = members.index(i)
        vowels = [j for j in members if items[j].phone in VOWELS]
        words = words_of_phrase[phrase_of[i]]
        word_place = words.index(item.word)
        row[0] = float(item.stress > 0 and item.phone in VOWELS)
        row[1] = float(item.phone in VOWELS)
        row[2] = float(place == 0)
        row[3] = float(place == len(members) - 1)
        row[4] = place / max(1, len(members) - 1)
        row[5] = len(members) / 10.0
        row[6] = word_place / max(1, len(words) - 1)
        row[7] = len(words) / 10.0
        row[8] = (len(words) - 1 - word_place) / 10.0
        row[9] = float(phrase_of[i] == phrases - 1)
        row[10] = min(phrases - 1 - phrase_of[i], 5) / 5.0
        row[11] = float(question)
        row[14] = len(vowels) / 5.0
        row[15] = sum(1 for j in vowels if j <= i) / 5.0
    return ids, feats
