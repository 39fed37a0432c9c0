"""Melodies from outside the chorale repertoire, for judging how Kantor ends them.

Traditional tunes (public domain), transcribed here by ear: nursery tunes, a march, two
tunes in 3/4, minor folk songs and a Dorian sea shanty. Each carries the tonic (or
modal final) a musician would name, so a harmonisation can be checked for ending on it.
Notes are written ``PITCH:QUARTERS`` (``G4:1.5``; a bare pitch is a quarter note).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kantor.engine.chorale.encoding import HOLD_PITCH, STEPS_PER_QUARTER
from kantor.engine.chorale.keys import Key, parse_key
from kantor.engine.chorale.melody import Melody, guess_fermatas, parse_pitch


@dataclass(frozen=True)
class Tune:
    """A melody with its metre (quarters per bar), pickup (quarters) and its key."""

    name: str
    key: str  # as a musician names it, e.g. "d dorian"
    notes: str
    beats_per_bar: int = 4
    pickup_quarters: float = 0.0

    def tonic(self) -> Key:
        return parse_key(self.key)[0]

    def melody(self) -> Melody:
        """The tune as a user's melody file would give it: its key signature, no key
        named (the harmoniser reads tonic and mode from the melody), fermatas guessed."""
        raw: list[int] = []
        for token in self.notes.split():
            pitch, _, quarters = token.partition(":")
            steps = round(float(quarters or 1) * STEPS_PER_QUARTER)
            raw += [parse_pitch(pitch)] + [HOLD_PITCH] * (steps - 1)
        soprano = np.array(raw, dtype=np.int16)
        steps_per_bar = self.beats_per_bar * STEPS_PER_QUARTER
        pickup = round(self.pickup_quarters * STEPS_PER_QUARTER)
        return Melody(soprano=soprano, steps_per_bar=steps_per_bar,
                      bar_offset_steps=(steps_per_bar - pickup) % steps_per_bar,
                      key_sharps=parse_key(self.key)[1], fermatas=guess_fermatas(soprano),
                      time_signature=(self.beats_per_bar, 4), title=self.name)


TUNES: tuple[Tune, ...] = (
    Tune("Twinkle, Twinkle, Little Star", "C major",
         "C5 C5 G5 G5 A5 A5 G5:2 F5 F5 E5 E5 D5 D5 C5:2 G5 G5 F5 F5 E5 E5 D5:2 "
         "G5 G5 F5 F5 E5 E5 D5:2 C5 C5 G5 G5 A5 A5 G5:2 F5 F5 E5 E5 D5 D5 C5:2"),
    Tune("Frère Jacques", "G major",
         "G4 A4 B4 G4 G4 A4 B4 G4 B4 C5 D5:2 B4 C5 D5:2 "
         "D5:0.5 E5:0.5 D5:0.5 C5:0.5 B4 G4 D5:0.5 E5:0.5 D5:0.5 C5:0.5 B4 G4 "
         "G4 D4 G4:2 G4 D4 G4:2"),
    Tune("Ode to Joy", "D major",
         "F#4 F#4 G4 A4 A4 G4 F#4 E4 D4 D4 E4 F#4 F#4:1.5 E4:0.5 E4:2 "
         "F#4 F#4 G4 A4 A4 G4 F#4 E4 D4 D4 E4 F#4 E4:1.5 D4:0.5 D4:2"),
    Tune("Happy Birthday (3/4)", "C major",
         "G4:0.75 G4:0.25 A4 G4 C5 B4:2 G4:0.75 G4:0.25 A4 G4 D5 C5:2 "
         "G4:0.75 G4:0.25 G5 E5 C5 B4 A4 F5:0.75 F5:0.25 E5 C5 D5 C5:3",
         beats_per_bar=3, pickup_quarters=1),
    Tune("Auld Lang Syne", "G major",
         "D4 G4:1.5 G4:0.5 G4 B4 A4:1.5 G4:0.5 A4 B4 G4:1.5 G4:0.5 B4 D5 E5:3 "
         "E5 D5:1.5 B4:0.5 B4 G4 A4:1.5 G4:0.5 A4 B4 G4:1.5 E4:0.5 E4 D4 G4:3",
         pickup_quarters=1),
    Tune("God Save the King (3/4)", "G major",
         "G4 G4 A4 F#4:1.5 G4:0.5 A4 B4 B4 C5 B4:1.5 A4:0.5 G4 A4 G4 F#4 G4:3 "
         "D5 D5 D5 D5:1.5 C5:0.5 B4 C5 C5 C5 C5:1.5 B4:0.5 A4 "
         "B4 C5:0.5 B4:0.5 A4:0.5 G4:0.5 B4:1.5 C5:0.5 D5 E5:0.5 C5:0.5 B4 A4 G4:3",
         beats_per_bar=3),
    Tune("Yankee Doodle", "G major",
         "G4:0.5 G4:0.5 A4:0.5 B4:0.5 G4:0.5 B4:0.5 A4:0.5 D4:0.5 "
         "G4:0.5 G4:0.5 A4:0.5 B4:0.5 G4 F#4 G4:0.5 G4:0.5 A4:0.5 B4:0.5 "
         "C5:0.5 B4:0.5 A4:0.5 G4:0.5 F#4:0.5 D4:0.5 E4:0.5 F#4:0.5 G4 G4"),
    Tune("Greensleeves (3/4)", "a minor",
         "A4 C5:2 D5 E5:1.5 F5:0.5 E5 D5:2 B4 G4:1.5 A4:0.5 B4 C5:2 A4 "
         "A4:1.5 G#4:0.5 A4 B4:2 G#4 E4:2 A4 C5:2 D5 E5:1.5 F5:0.5 E5 D5:2 B4 "
         "G4:1.5 A4:0.5 B4 C5:1.5 B4:0.5 A4 G#4:1.5 F#4:0.5 G#4 A4:3",
         beats_per_bar=3, pickup_quarters=1),
    Tune("Korobeiniki", "a minor",
         "E5 B4:0.5 C5:0.5 D5 C5:0.5 B4:0.5 A4 A4:0.5 C5:0.5 E5 D5:0.5 C5:0.5 "
         "B4:1.5 C5:0.5 D5 E5 C5 A4 A4:2 D5:1.5 F5:0.5 A5 G5:0.5 F5:0.5 "
         "E5:1.5 C5:0.5 E5 D5:0.5 C5:0.5 B4 B4:0.5 C5:0.5 D5 E5 C5 A4 A4:2"),
    Tune("God Rest Ye Merry, Gentlemen", "e minor",
         "E4 E4 B4 B4 A4 G4 F#4 E4 D4 E4 F#4 G4 A4 B4:3 E4 E4 B4 B4 A4 G4 F#4 E4 D4 "
         "E4 F#4 G4 A4 B4:3 B4 C5 A4 B4 C5 D5 E5 B4 A4 G4 E4 F#4 G4 A4:2 G4 A4 "
         "B4:2 C5 B4 B4 A4 G4 F#4 E4 G4:0.5 F#4:0.5 E4 D4 G4:2 F#4 G4 A4:2 B4 C5 "
         "B4 A4 G4 F#4 E4:3", pickup_quarters=1),
    Tune("Drunken Sailor (Dorian)", "d dorian",
         "A4 A4:0.5 A4:0.5 A4 A4:0.5 A4:0.5 A4 D4 F4 A4 "
         "G4 G4:0.5 G4:0.5 G4 G4:0.5 G4:0.5 G4 C4 E4 G4 "
         "A4 A4:0.5 A4:0.5 A4 A4:0.5 A4:0.5 A4 B4 C5 D5 C5 A4 G4 E4 D4:2 D4:2"),
)
