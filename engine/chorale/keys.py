"""Keys and modes of a melody: what the harmoniser is told about tonality.

A key here is a *tonic* pitch class (0 = C ... 11 = B) and a *mode*: ``major`` or
``minor``. Modal chorale tunes fit this too: the tonic is the modal *final* (the note
the tune ends on) and the mode says whether its third is major or minor (Dorian and
Phrygian tunes are minor-like, Mixolydian and Lydian major-like).

In Bach's chorales the melody ends on the root of the final chord in 96% of the corpus,
and that root is the tonic (or the modal final). The mode is the quality of the tonic's
third over the whole setting; minor settings usually end with a major chord (a Picardy
third), so the final chord alone does not tell the mode. :func:`estimate_key` reads both
from the melody alone, so a user who says nothing still gets a minor tune set in minor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from kantor.engine.chorale.encoding import HOLD_PITCH, sounding_pitches

MODES: tuple[str, ...] = ("major", "minor")
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
# Mode names a musician may type -> major/minor (the church modes by their third).
_MODE_WORDS = {"major": "major", "maj": "major", "ionian": "major", "mixolydian": "major",
               "lydian": "major", "minor": "minor", "min": "minor", "m": "minor",
               "aeolian": "minor", "dorian": "minor", "phrygian": "minor"}


class KeyParseError(ValueError):
    """A key that cannot be understood (the message says what is accepted)."""


@dataclass(frozen=True)
class Key:
    """A tonic pitch class (0-11, C = 0) and a mode (``"major"`` or ``"minor"``)."""

    tonic: int
    mode: str

    def __post_init__(self) -> None:
        if not 0 <= self.tonic <= 11 or self.mode not in MODES:
            raise KeyParseError(f"not a key: tonic {self.tonic}, mode {self.mode!r}")

    @property
    def minor(self) -> bool:
        return self.mode == "minor"

    def degree_of(self, key_sharps: int) -> int:
        """The tonic in semitones above the major tonic of the signature ``key_sharps``
        (0 major, 9 minor, 2 Dorian-notated minor, 4 Phrygian, 7 Mixolydian)."""
        return (self.tonic - signature_tonic(key_sharps)) % 12

    def __str__(self) -> str:
        return f"{PITCH_CLASS_NAMES[self.tonic]} {self.mode}"


def signature_tonic(key_sharps: int) -> int:
    """Pitch class of the major tonic of a signature with ``key_sharps`` sharps."""
    return (key_sharps * 7) % 12


# Mode name -> (major/minor, the tonic's degree above the signature's major tonic).
_MODE_DEGREES = {"ionian": 0, "major": 0, "dorian": 2, "phrygian": 4, "lydian": 5,
                 "mixolydian": 7, "aeolian": 9, "minor": 9}


def parse_key(text: str) -> tuple[Key, int]:
    """A key from what a musician types, with the signature it is written with (sharps):
    ``"b minor"`` -> (B minor, 2), ``"Bm"``, ``"F# major"``, ``"Eb"`` (a bare name is
    major), ``"d dorian"`` -> (D minor, 0). KeyParseError says what is accepted."""
    match = re.match(r"^\s*([A-Ga-g])\s*(#|b|♯|♭|sharp|flat|is|es)?\s*([A-Za-z]*)\s*$", text)
    if not match:
        raise KeyParseError(f"'{text}' is not a key (use e.g. 'b minor', 'Bb major', 'F#m', "
                            "'d dorian')")
    letter, accidental, mode_word = match.groups()
    tonic = _LETTERS[letter.lower()] + {"#": 1, "♯": 1, "sharp": 1, "is": 1, "b": -1, "♭": -1,
                                        "flat": -1, "es": -1}.get(accidental or "", 0)
    mode_word = mode_word.lower() or "major"
    if mode_word not in _MODE_WORDS:
        raise KeyParseError(f"'{text}': the mode must be one of "
                            f"{', '.join(sorted(_MODE_WORDS))}")
    mode = _MODE_WORDS[mode_word]
    degree = _MODE_DEGREES.get(mode_word, 9 if mode == "minor" else 0)
    sharps = (((tonic - degree) % 12) * 7) % 12  # the signature of its major tonic
    return Key(tonic % 12, mode), sharps - 12 if sharps > 6 else sharps


def parse_key_or_sharps(text: int | str) -> tuple[int, Key | None]:
    """(signature in sharps, key or None) from a ``--key`` option: a key name such as
    ``"b minor"`` or ``"d dorian"``, or a number of sharps (negative for flats), which
    leaves the tonic and mode to be read from the melody. KeyParseError otherwise."""
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        sharps = int(text)
        if not -7 <= sharps <= 7:
            raise KeyParseError("a key signature is -7..7 sharps (negative for flats); or "
                                "name the key, e.g. 'b minor'")
        return sharps, None
    key, sharps = parse_key(text)
    return sharps, key


def _durations(soprano: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pitches, lengths in steps) of the melody's notes."""
    soprano = np.asarray(soprano, dtype=np.int64)
    events = np.flatnonzero(soprano != HOLD_PITCH)
    ends = np.append(events[1:], soprano.size)
    pitched = soprano[events] >= 0
    return soprano[events][pitched], (ends - events)[pitched]


def estimate_key(soprano: np.ndarray, key_sharps: int) -> Key:
    """The key of a melody (raw pitches ``[T]``) written with ``key_sharps`` sharps.

    The tonic is the last note's pitch class (a hymn tune ends on its tonic or modal
    final). The mode is the tonic's third that the melody sings longer (minor third vs
    major third, durations in steps); when it sings neither, the signature decides: a
    final on the signature's 1st, 4th or 5th degree is major, otherwise minor.
    """
    pitches, lengths = _durations(soprano)
    if pitches.size == 0:
        return Key(signature_tonic(key_sharps), "major")
    tonic = int(pitches[-1]) % 12
    classes = pitches % 12
    minor_third = float(lengths[classes == (tonic + 3) % 12].sum())
    major_third = float(lengths[classes == (tonic + 4) % 12].sum())
    if minor_third != major_third:
        return Key(tonic, "minor" if minor_third > major_third else "major")
    degree = (tonic - signature_tonic(key_sharps)) % 12
    return Key(tonic, "major" if degree in (0, 5, 7) else "minor")


def key_of_setting(raw: np.ndarray) -> Key:
    """The key of a finished four-part setting (raw pitches ``[4, T]``): the last bass
    note is the tonic; the mode is the tonic's third that sounds on more steps over the
    piece (a minor setting often ends on a major chord, so the last chord would mislead).
    Training labels come from here; a user's melody goes through :func:`estimate_key`."""
    sounding = sounding_pitches(raw)
    bass = sounding[3][sounding[3] >= 0]
    tonic = int(bass[-1]) % 12 if bass.size else 0  # rests may follow the last chord
    classes = sounding[sounding >= 0] % 12
    minor = int((classes == (tonic + 3) % 12).sum()) > int((classes == (tonic + 4) % 12).sum())
    return Key(tonic, "minor" if minor else "major")
