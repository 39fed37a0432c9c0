"""The speaking voice: text in, 24 kHz audio out, chunk by chunk as it is made.

Per sentence: the front end gives phrases of words with phones; the prosody model gives
durations and F0; then, a few frames at a time, the acoustic model (only the frames
needed, plus context) and the vocoder. The first chunk is short (``FIRST_CHUNK_FRAMES``)
so audio starts quickly; later chunks are longer (``CHUNK_FRAMES``) for throughput. The
vocoder is the neural one (engine/speech/neural_vocoder.py) when its model is there, or
the WORLD-style one (``vocoder="world"``); the acoustic model runs ``lookahead`` frames
ahead of what the neural one renders, so each chunk is as long with either.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.engine.speech.acoustic import VoiceModels
from kantor.engine.speech.features import SAMPLE_RATE
from kantor.engine.speech.linguistic import PhoneItem, encode
from kantor.engine.speech.neural_vocoder import make_vocoder
from kantor.engine.speech.phones import PAUSE, is_phone, split_stress
from kantor.engine.speech.prosody import f0_track, round_durations
from kantor.engine.speech.text import Phrase

FIRST_CHUNK_FRAMES = 8  # 40 ms
CHUNK_FRAMES = 40  # 200 ms
# the corpus opens every utterance with ~175 ms of silence; a listener waiting for an
# answer should not, so the first sentence's opening pause is capped at 50 ms
OPENING_PAUSE_FRAMES = 10
RATE_RANGE = (0.25, 4.0)
PITCH_RANGE = (0.25, 4.0)
_SENTENCE_MARKS = (".", "!", "?", "?!", "...")


def _phrase_text(phrase: Phrase) -> str:
    """A normalised phrase as text that normalises back to the same phrase and break."""
    mark = phrase.mark if phrase.mark and set(phrase.mark) <= set(".,;:!?") else ""
    if not mark and phrase.break_after != "end":
        mark = "," if phrase.break_after == "minor" else ";"
    return " ".join(phrase.words) + mark


class VoiceError(ValueError):
    """Input the voice cannot speak (bad phoneme, rate or pitch out of range)."""


@dataclass
class Sentence:
    """One sentence as phone items (pauses between phrases) and whether it asks."""

    items: list[PhoneItem]
    question: bool
    text: str


def sentence_from_phrases(phrases: list[list[list[str]]], question: bool,
                          text: str = "") -> Sentence:
    """Phrases of words of ARPAbet phones (with stress digits) -> a sentence with a pause
    at each end and between phrases."""
    items = [PhoneItem(PAUSE, 0, -1)]
    word = 0
    for phrase in phrases:
        spoken = [w for w in phrase if w]
        if not spoken:
            continue
        for phones in spoken:
            for phone in phones:
                base, stress = split_stress(phone)
                items.append(PhoneItem(base, 1 if stress > 0 else 0, word))
            word += 1
        items.append(PhoneItem(PAUSE, 0, -1))
    return Sentence(items, question, text)


def parse_phonemes(text: str) -> list[Sentence]:
    """Phoneme input: ARPAbet phones separated by spaces, ``|`` between words, ``,`` ``;``
    ``:`` between phrases, ``.`` ``!`` ``?`` between sentences. E.g.
    ``"HH AH0 L OW1 | W ER1 L D ."``"""
    sentences: list[Sentence] = []
    phrases: list[list[list[str]]] = [[[]]]
    spaced = text
    for mark in ",;:.!?|":
        spaced = spaced.replace(mark, f" {mark} ")
    for token in spaced.split():
        if token == "|":
            phrases[-1].append([])
        elif token in ",;:":
            phrases.append([[]])
        elif token in ".!?":
            sentences.append(sentence_from_phrases(phrases, token == "?", text))
            phrases = [[[]]]
        else:
            phone = token.upper()
            if not is_phone(phone) or phone.lower() == PAUSE:
                raise VoiceError(f"unknown phoneme {token!r} (ARPAbet, e.g. AH0, K, S)")
            phrases[-1][-1].append(phone)
    if any(any(w) for p in phrases for w in p):
        sentences.append(sentence_from_phrases(phrases, False, text))
    return sentences


class Voice:
    """A loaded voice: front end, models and vocoder, all prepared (``load`` warms them).

    ``stream(text)`` yields float32 mono chunks at ``sample_rate`` (24 kHz), in [-1, 1].
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, models: VoiceModels, front_end, seed: int = 0,
                 vocoder: str = "auto") -> None:
        self.models = models
        self.front_end = front_end
        self.vocoder = make_vocoder(vocoder, models.vocoder_model, seed, models.vocoder_error)

    @classmethod
    def load(cls, folder: Path | None = None, threads: int = 1,
             vocoder: str = "auto") -> Voice:
        """Load the shipped voice (or one in ``folder``) and run it once so nothing is
        compiled or allocated for the first time on a listener's request. ``vocoder``:
        ``auto`` (neural when its model loads, else WORLD-style), ``neural`` or ``world``."""
        from kantor.engine.speech.frontend import FrontEnd

        voice = cls(VoiceModels.load(folder, threads, vocoder=vocoder != "world"),
                    FrontEnd.load(), vocoder=vocoder)
        voice.front_end.lexicon.prepare()
        for _ in voice.stream("Ready."):
            pass
        return voice

    def split(self, text: str) -> list[str]:
        """Text cut into sentences (for queueing long texts one sentence at a time), each
        written back as normalised words with its phrase punctuation, so speaking the
        pieces sounds like speaking the whole. Nothing is looked up here."""
        return [" ".join(_phrase_text(p) for p in group) for group in self._groups(text)]

    def sentences(self, text: str, phonemes: bool = False) -> list[Sentence]:
        """The sentences to speak, as phone items."""
        return list(self._sentences(text, phonemes))

    def _groups(self, text: str) -> Iterator[list[Phrase]]:
        """Normalised phrases grouped into sentences."""
        pending: list[Phrase] = []
        for phrase in self.front_end.normalize(text):
            pending.append(phrase)
            if phrase.mark in _SENTENCE_MARKS or phrase.break_after == "end":
                yield pending
                pending = []
        if pending:
            yield pending

    def _sentences(self, text: str, phonemes: bool) -> Iterator[Sentence]:
        """Sentences one at a time: the text is normalised at once (cheap), but words are
        looked up (and unknown ones sent to the G2P) only when their sentence is next, so
        a long text starts speaking as soon as its first sentence is ready."""
        if phonemes:
            yield from parse_phonemes(text)
            return
        for group in self._groups(text):
            sentence = self._sentence(self.front_end.pronounce(group))
            if len(sentence.items) > 1:
                yield sentence

    @staticmethod
    def _sentence(phrases: list) -> Sentence:
        words = [[list(word.phones) for word in phrase.words] for phrase in phrases]
        text = " ".join(word.text for phrase in phrases for word in phrase.words)
        return sentence_from_phrases(words, phrases[-1].question, text)

    def stream(self, text: str, *, rate: float = 1.0, pitch: float = 1.0,
               phonemes: bool = False) -> Iterator[np.ndarray]:
        """Speak ``text``: float32 chunks at 24 kHz as they are made. ``rate`` > 1 speaks
        faster, ``pitch`` multiplies F0; ``phonemes`` reads ``text`` as ARPAbet
        (see ``parse_phonemes``)."""
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise VoiceError(f"rate {rate} outside {RATE_RANGE}")
        if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
            raise VoiceError(f"pitch {pitch} outside {PITCH_RANGE}")
        self.vocoder.reset()
        first = True
        for sentence in self._sentences(text, phonemes):
            yield from self._speak(sentence, rate, math.log(pitch), first)
            first = False
        if not first:  # something was said: the vocoder's last samples
            yield np.clip(self.vocoder.flush(), -1.0, 1.0)

    def _speak(self, sentence: Sentence, rate: float, log_pitch: float,
               first: bool) -> Iterator[np.ndarray]:
        ids, feats = encode(sentence.items, sentence.question)
        prosody = self.models.prosody(ids, feats)
        durations = round_durations(prosody.frames, rate)
        if first:
            durations[0] = min(durations[0], OPENING_PAUSE_FRAMES)
        f0 = f0_track(durations, prosody.log_f0 + log_pitch, prosody.voiced)
        encodings = self.models.encode(ids, feats)
        total = int(durations.sum())
        fed = 0  # frames handed to the vocoder
        start, size = 0, FIRST_CHUNK_FRAMES if first else CHUNK_FRAMES
        while start < total:
            stop = min(total, start + size)
            ahead = min(total, stop + self.vocoder.lookahead)
            if ahead > fed:
                frames = self.models.acoustic_window(encodings, durations, f0, fed, ahead)
                fed = ahead
                audio = self.vocoder.process(frames)
                if len(audio):
                    yield np.clip(audio, -1.0, 1.0)
            start, size = stop, CHUNK_FRAMES

    def synthesize(self, text: str, **options) -> np.ndarray:
        """The whole utterance at once (float32, 24 kHz)."""
        chunks = list(self.stream(text, **options))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
