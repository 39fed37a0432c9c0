"""The speech front end: text -> phrases of words with phones, what the voice models read.

    frontend = FrontEnd.load()                      # CMU dictionary + neural G2P
    for phrase in frontend.phrases("Hello, Dr. Kantor?"):
        phrase.words        # (Word('hello', ('HH', 'AH0', 'L', 'OW1'), 'dictionary'),)
        phrase.break_after  # "minor", then "end"
        phrase.question     # False, then True

Normalisation is :mod:`kantor.engine.speech.text`, pronunciation
:mod:`kantor.engine.speech.lexicon`; the lexicon also decides whether an all-capital word
is read as a word (NASA) or spelled (FBI). Errors are TextError (LexiconError for phones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kantor.engine.speech.lexicon import AUTO, AutoFallback, Lexicon
from kantor.engine.speech.text import Phrase, normalize


@dataclass(frozen=True)
class Word:
    """One spoken word: its normalised text, ARPAbet phones with stress, and the phones'
    source ("inline", "letter", "user", "dictionary", "g2p" or "spelled")."""

    text: str
    phones: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class SpokenPhrase:
    """Words said without a pause and the break after them ("minor", "major" or "end");
    ``mark`` is the punctuation that closed the phrase (see text.Phrase)."""

    words: tuple[Word, ...]
    break_after: str
    mark: str = ""

    @property
    def question(self) -> bool:
        """True when the phrase ends in a question mark (rising intonation)."""
        return "?" in self.mark

    @property
    def phones(self) -> list[str]:
        """All the phrase's phones in order."""
        return [p for word in self.words for p in word.phones]


class FrontEnd:
    """Normaliser + lexicon: one call turns text into :class:`SpokenPhrase` objects."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon if lexicon is not None else Lexicon()

    @classmethod
    def load(cls, user_lexicon: Mapping[str, str | Iterable[str]] | str | Path | None = None,
             fallback: Callable[[str], list[str]] | AutoFallback | None = AUTO) -> FrontEnd:
        """A front end with the CMU dictionary, an optional user lexicon (mapping or file)
        and the out-of-vocabulary ``fallback`` (default: the neural G2P when installed)."""
        return cls(Lexicon(user=user_lexicon, fallback=fallback))

    def normalize(self, text: str) -> list[Phrase]:
        """Just the words (text.normalize with this lexicon's idea of pronounceable)."""
        return normalize(text, pronounceable=self.lexicon.reads_as_word)

    def phrases(self, text: str) -> list[SpokenPhrase]:
        """Phrases of pronounced words; [] for text with no words (empty, emoji only)."""
        return self.pronounce(self.normalize(text))

    def pronounce(self, normalized: list[Phrase]) -> list[SpokenPhrase]:
        """Phones for already normalised phrases (so a caller can pronounce a long text
        sentence by sentence, as it speaks)."""
        # one batched G2P call for all the text's unknown words, not one call per word
        self.lexicon.guess_all(w for phrase in normalized for w in phrase.words)
        spoken = []
        for phrase in normalized:
            words = []
            for text_word in phrase.words:
                pronunciation = self.lexicon.lookup(text_word)
                words.append(Word(text_word, pronunciation.phones, pronunciation.source))
            spoken.append(SpokenPhrase(tuple(words), phrase.break_after, phrase.mark))
        return spoken

    __call__ = phrases
