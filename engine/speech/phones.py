"""The phone set shared by the front end, the voice models and the aligner.

ARPAbet as in the CMU dictionary (39 phones, vowels carry stress 0/1/2 in the lexicon)
plus ``pau`` for pauses. Models see the phone without its stress digit and the stress
as a separate feature.
"""

from __future__ import annotations

ARPABET = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
    "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
PAUSE = "pau"
PHONES = (PAUSE, *ARPABET)
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
VOWELS = frozenset(
    ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
)


def split_stress(phone: str) -> tuple[str, int]:
    """``"AH0"`` -> ``("AH", 0)``; phones without a digit get stress 0."""
    if phone and phone[-1].isdigit():
        return phone[:-1], int(phone[-1])
    return phone, 0


def is_phone(phone: str) -> bool:
    """True for an ARPAbet phone with or without a stress digit (or ``pau``)."""
    base, _ = split_stress(phone.upper() if phone != PAUSE else phone)
    return base in PHONE_INDEX
