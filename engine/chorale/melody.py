"""A melody to harmonise, and turning it (plus any pinned notes) into sampler inputs.

Bridges read files into a :class:`Melody`; the CLI and the HTTP service then call
:func:`harmonize_melody`. Times are in 16th-note steps from the melody's first note
unless a name says ``beats`` (quarter notes, counted from 1 like a musician would).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    REST_PITCH,
    STEPS_PER_QUARTER,
    TEXTBOOK_RANGES,
    VOICES,
    build_metadata,
)
from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings, Harmonisation
from kantor.engine.chorale.keys import Key, estimate_key
from kantor.engine.chorale.rules import NO_STEP, PieceContext

_NOTE_NAME = re.compile(r"^([A-Ga-g])([#b]*)(-?\d)$")
_PITCH_CLASSES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


class MelodyError(ValueError):
    """The melody cannot be harmonised (no notes, bad pinned note, ...)."""


@dataclass
class Melody:
    """A soprano line on the 16th grid with what the harmoniser needs to know of it.

    ``soprano`` holds raw pitches ``int16 [T]`` (MIDI onsets, HOLD_PITCH, REST_PITCH).
    ``start_step`` is where step 0 sits in the source file (16ths from its start), so
    the output lines up with the input.
    """

    soprano: np.ndarray
    steps_per_bar: int = 16
    bar_offset_steps: int = 0  # steps of the first bar before step 0 (a pickup)
    key_sharps: int = 0
    key: Key | None = None  # tonic and mode; None: estimated from the melody
    fermatas: np.ndarray | None = None  # bool [T]
    tempo_bpm: float = 90.0
    start_step: int = 0
    time_signature: tuple[int, int] = (4, 4)
    title: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return int(self.soprano.shape[0])

    def resolved_key(self) -> Key:
        """The key the harmoniser is told: the user's, or the melody's estimated one."""
        return self.key or estimate_key(self.soprano, self.key_sharps)

    def metadata(self) -> np.ndarray:
        key = self.resolved_key()
        return build_metadata(self.n_steps, self.bar_offset_steps, self.steps_per_bar,
                              self.fermatas, self.key_sharps, mode=int(key.minor),
                              tonic_degree=key.degree_of(self.key_sharps))


@dataclass(frozen=True)
class FixedNote:
    """A note pinned by the user: ``voice`` (0-3), onset ``step``, ``length`` in steps,
    ``pitch`` (MIDI, or REST_PITCH for a pinned rest)."""

    voice: int
    step: int
    length: int
    pitch: int


def parse_pitch(text: str) -> int:
    """MIDI number from '67', 'G4', 'F#3', 'Bb2' or 'rest' (REST_PITCH)."""
    text = text.strip()
    if text.lower() == "rest":
        return REST_PITCH
    if text.isdigit():
        pitch = int(text)
    else:
        match = _NOTE_NAME.match(text)
        if not match:
            raise MelodyError(f"'{text}' is not a pitch (use e.g. G4, F#3, Bb2 or 67)")
        letter, accidentals, octave = match.groups()
        pitch = (12 * (int(octave) + 1) + _PITCH_CLASSES[letter.lower()]
                 + accidentals.count("#") - accidentals.count("b"))
    if not 0 <= pitch <= 127:
        raise MelodyError(f"pitch {text} is outside MIDI's 0-127")
    return pitch


def parse_fixed_note(text: str) -> FixedNote:
    """Parse ``VOICE@BEAT=PITCH[:BEATS]``, e.g. ``alto@3=G4`` or ``bass@5.5=D3:2``.

    Beats are quarter notes counted from 1 at the melody's first note; the note lasts
    ``BEATS`` quarters (default 1)."""
    match = re.match(r"^\s*(\w+)\s*@\s*([\d.]+)\s*=\s*([^:\s]+)\s*(?::\s*([\d.]+))?\s*$", text)
    if not match:
        raise MelodyError(f"'{text}': pinned notes look like alto@3=G4 or bass@5.5=D3:2")
    voice_name, beat, pitch, beats = match.groups()
    voices = {v: i for i, v in enumerate(VOICES)} | {v[0]: i for i, v in enumerate(VOICES)}
    if voice_name.lower() not in voices:
        raise MelodyError(f"'{voice_name}' is not a voice (soprano, alto, tenor, bass)")
    step = round((float(beat) - 1) * STEPS_PER_QUARTER)
    length = round(float(beats or 1) * STEPS_PER_QUARTER)
    if step < 0 or length < 1:
        raise MelodyError(f"'{text}': beats count from 1 and a note lasts at least a 16th")
    return FixedNote(voices[voice_name.lower()], step, length, parse_pitch(pitch))


def guess_fermatas(soprano: np.ndarray) -> np.ndarray:
    """Fermatas for a melody that marks none (``bool [T]``): on the last note, and on
    notes at least twice as long as the typical note and a half note or longer (phrase
    ends in hymn tunes). Lengths run to the next note, rests included, in steps."""
    onsets = np.flatnonzero(np.asarray(soprano) >= 0)
    mask = np.zeros(len(soprano), dtype=bool)
    if not onsets.size:
        return mask
    ends = np.append(onsets[1:], len(soprano))
    lengths = ends - onsets
    typical = float(np.median(lengths))
    for start, length in zip(onsets, lengths, strict=True):
        if length >= 2 * typical and length >= 2 * STEPS_PER_QUARTER:
            mask[start:start + length] = True
    mask[onsets[-1]:ends[-1]] = True
    return mask


def fermatas_at_beats(melody: Melody, beats: list[float]) -> np.ndarray:
    """Fermata mask ``bool [T]`` covering the melody notes that sound at ``beats``
    (quarter notes counted from 1 at the first note)."""
    mask = np.zeros(melody.n_steps, dtype=bool)
    onsets = np.flatnonzero(melody.soprano != HOLD_PITCH)
    for beat in beats:
        step = round((beat - 1) * STEPS_PER_QUARTER)
        if not 0 <= step < melody.n_steps:
            raise MelodyError(f"fermata at beat {beat:g} is outside the melody")
        start = onsets[onsets <= step].max()
        later = onsets[onsets > step]
        mask[start:later.min() if later.size else melody.n_steps] = True
    return mask


def fit_soprano_range(melody: Melody, low: int = TEXTBOOK_RANGES[0][0],
                      high: int = TEXTBOOK_RANGES[0][1]) -> Melody:
    """Move the melody by whole octaves so as many notes as possible lie in the soprano
    range (MIDI ``low``-``high``), preferring no move; notes still outside are folded in
    by octaves. Each change is recorded in ``melody.warnings``."""
    soprano = melody.soprano.astype(np.int64)
    onset = soprano >= 0
    if not onset.any():
        return melody
    pitches = soprano[onset]

    def outside(shift: int) -> int:
        return int(((pitches + shift < low) | (pitches + shift > high)).sum())

    shift = min((0, 12, -12, 24, -24, 36, -36), key=lambda s: (outside(s), abs(s)))
    if shift:
        direction = "up" if shift > 0 else "down"
        melody.warnings.append(f"melody moved {direction} {abs(shift) // 12} octave(s) to fit "
                               f"the soprano range (MIDI {low}-{high})")
    moved = pitches + shift
    folded = moved.copy()
    while (folded < low).any() or (folded > high).any():
        folded = np.where(folded < low, folded + 12, np.where(folded > high, folded - 12,
                                                               folded))
    if (folded != moved).any():
        melody.warnings.append(f"{int((folded != moved).sum())} melody note(s) outside the "
                               "soprano range moved by an octave")
    soprano[onset] = folded
    melody.soprano = soprano.astype(np.int16)
    return melody


def sampler_inputs(melody: Melody, fixed_notes: list[FixedNote] = ()
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(notes [4, T], fixed [4, T], meta [T, 4]) for :meth:`ChoraleSampler.harmonize`."""
    n_steps = melody.n_steps
    if n_steps == 0 or not (melody.soprano >= 0).any():
        raise MelodyError("the melody has no notes")
    notes = np.full((4, n_steps), REST_PITCH, dtype=np.int16)
    fixed = np.zeros((4, n_steps), dtype=bool)
    notes[0] = melody.soprano
    fixed[0] = True
    for note in fixed_notes:
        if note.step >= n_steps:
            raise MelodyError(f"pinned {VOICES[note.voice]} note at beat "
                              f"{note.step / STEPS_PER_QUARTER + 1:g} is after the melody ends")
        end = min(note.step + note.length, n_steps)
        if note.pitch >= 0:
            low, high = TEXTBOOK_RANGES[note.voice]
            if not low - 5 <= note.pitch <= high + 5:
                raise MelodyError(f"pinned {VOICES[note.voice]} pitch {note.pitch} is far "
                                  f"outside its range (MIDI {low}-{high})")
        notes[note.voice, note.step] = note.pitch
        notes[note.voice, note.step + 1:end] = HOLD_PITCH if note.pitch >= 0 else REST_PITCH
        fixed[note.voice, note.step:end] = True
    return notes, fixed, melody.metadata()


def piece_context(melody: Melody) -> PieceContext:
    """The tonic, the cadences (the first step of each fermata) and the step where the
    final chord starts when it must be a tonic triad: the melody's last note lies in it
    (major or minor), as in almost every chorale; a melody ending elsewhere leaves the
    final chord free."""
    key = melody.resolved_key()
    onsets = np.flatnonzero(melody.soprano >= 0)
    fermatas = (np.zeros(melody.n_steps, dtype=bool) if melody.fermatas is None
                else np.asarray(melody.fermatas, dtype=bool))
    cadences = fermatas & ~np.concatenate([[False], fermatas[:-1]])
    if not onsets.size:
        return PieceContext(tonic=key.tonic, cadences=cadences)
    last = int(onsets[-1])
    in_triad = (int(melody.soprano[last]) - key.tonic) % 12 in (0, 3, 4, 7)
    return PieceContext(tonic=key.tonic, final_from=last if in_triad else NO_STEP,
                        cadences=cadences)


def harmonize_melody(sampler: ChoraleSampler, melody: Melody,
                     fixed_notes: list[FixedNote] = (),
                     settings: GibbsSettings | None = None) -> Harmonisation:
    """Alto, tenor and bass (and any unpinned soprano) for ``melody``."""
    notes, fixed, meta = sampler_inputs(melody, fixed_notes)
    piece = piece_context(melody)
    for note in fixed_notes:
        vocab = sampler.vocabularies[note.voice]
        if note.pitch >= 0 and not vocab.low <= note.pitch <= vocab.high:
            raise MelodyError(f"pinned {VOICES[note.voice]} pitch {note.pitch} is outside "
                              f"what the model knows (MIDI {vocab.low}-{vocab.high})")
    return sampler.harmonize(notes, fixed, meta, settings or GibbsSettings(), piece)
