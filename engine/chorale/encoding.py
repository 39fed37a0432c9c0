"""The chorale grid: four voices on a 16th-note grid, their tokens and per-step metadata.

A chorale is held two ways:

* **raw pitches** ``int16 [4, T]``: a MIDI note number at each onset, :data:`HOLD_PITCH`
  on the steps a note is held, :data:`REST_PITCH` on rests. Transposition works here.
* **tokens** ``int64 [4, T]``: indices into each voice's :class:`VoiceVocabulary`, what the
  voice networks read and predict.

Metadata, one row per step (``int64 [T, 8]``, columns :data:`META_FIELDS`):
``tick`` (16th within the beat, 0-3), ``downbeat`` (1 on the first step of a bar),
``fermata`` (1 under a fermata), ``key`` (key signature as sharps mod 12, 0-11),
``mode`` (0 major, 1 minor), ``tonic`` (the tonic in semitones above the signature's
major tonic: 0 major, 9 minor, 2 Dorian-notated ...; see :mod:`.keys`), ``to_fermata``
and ``to_end`` (steps to the next fermata and to the last step, in
:data:`DISTANCE_BUCKETS`), so a network knows where cadences and the end are even
beyond its window. A model reads the columns its card names (older models: the first 4).

Voices are ordered soprano, alto, tenor, bass (index 0-3) everywhere in Kantor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOICES: tuple[str, ...] = ("soprano", "alto", "tenor", "bass")
STEPS_PER_QUARTER = 4  # the grid is a 16th note

REST_PITCH = -1
HOLD_PITCH = -2

# Token indices shared by every voice; pitches follow from FIRST_PITCH_TOKEN.
START, END, MASK, REST, HOLD = 0, 1, 2, 3, 4
FIRST_PITCH_TOKEN = 5
SPECIAL_TOKENS: tuple[str, ...] = ("START", "END", "MASK", "REST", "HOLD")

# The live harmoniser decides a step's voices in this order: the bass first (with the
# soprano it frames the harmony), then the alto and the tenor fill it in.
LIVE_DECISION_ORDER: tuple[int, ...] = (3, 1, 2)

META_FIELDS: tuple[str, ...] = ("tick", "downbeat", "fermata", "key", "mode", "tonic",
                                 "to_fermata", "to_end")
# Lower bounds of the distance classes, in 16th steps: 0 | 1-2 | 3-4 | 5-8 | 9-12 | 13-16
# | 17-32 | 33 and beyond (also: no fermata ahead, or a live player whose end is unknown).
DISTANCE_BUCKETS: tuple[int, ...] = (0, 1, 3, 5, 9, 13, 17, 33)
FAR = len(DISTANCE_BUCKETS) - 1
META_SIZES: tuple[int, ...] = (STEPS_PER_QUARTER, 2, 2, 12, 2, 12, len(DISTANCE_BUCKETS),
                               len(DISTANCE_BUCKETS))

# Textbook ranges (MIDI, inclusive) used for the yardstick and the sampler's range rule;
# the vocabularies below are wider because Bach himself goes beyond them.
TEXTBOOK_RANGES: tuple[tuple[int, int], ...] = ((60, 81), (55, 74), (48, 69), (36, 62))


@dataclass(frozen=True)
class VoiceVocabulary:
    """Tokens of one voice: the specials, then every MIDI pitch from ``low`` to ``high``."""

    voice: str
    low: int
    high: int

    @property
    def size(self) -> int:
        return FIRST_PITCH_TOKEN + self.high - self.low + 1

    def token_of_pitch(self, pitch: int) -> int:
        """Token for a MIDI pitch; ValueError if it lies outside the voice's range."""
        if not self.low <= pitch <= self.high:
            raise ValueError(
                f"{self.voice} pitch {pitch} outside its range {self.low}-{self.high}"
            )
        return FIRST_PITCH_TOKEN + pitch - self.low

    def tokens_of_pitches(self, pitches: np.ndarray) -> np.ndarray:
        """Tokens ``int64`` of MIDI ``pitches`` already in the voice's range (unchecked:
        for arrays the caller drew or clipped inside it)."""
        return FIRST_PITCH_TOKEN + np.asarray(pitches, dtype=np.int64) - self.low

    def pitch_of_token(self, token: int) -> int:
        """MIDI pitch of a pitch token (``REST_PITCH``/``HOLD_PITCH`` for those tokens)."""
        if token == REST:
            return REST_PITCH
        if token == HOLD:
            return HOLD_PITCH
        if token < FIRST_PITCH_TOKEN:
            return REST_PITCH
        return self.low + token - FIRST_PITCH_TOKEN

    def token_pitches(self) -> np.ndarray:
        """MIDI pitch of every token as ``int64 [size]``; -1 for the special tokens."""
        pitches = np.full(self.size, -1, dtype=np.int64)
        pitches[FIRST_PITCH_TOKEN:] = np.arange(self.low, self.high + 1)
        return pitches

    def to_json(self) -> dict:
        return {"voice": self.voice, "low": self.low, "high": self.high,
                "tokens": [*SPECIAL_TOKENS, f"MIDI {self.low}..{self.high}"]}


def raw_to_tokens(raw: np.ndarray, vocabularies: list[VoiceVocabulary]) -> np.ndarray:
    """Raw pitches ``[4, T]`` -> tokens ``int64 [4, T]``; ValueError on an out-of-range pitch."""
    tokens = np.empty(raw.shape, dtype=np.int64)
    for v, vocab in enumerate(vocabularies):
        row = raw[v].astype(np.int64)
        pitched = row >= 0
        if pitched.any() and (row[pitched].min() < vocab.low or row[pitched].max() > vocab.high):
            raise ValueError(f"{vocab.voice} leaves its range {vocab.low}-{vocab.high}")
        tokens[v] = np.where(row == HOLD_PITCH, HOLD, REST)
        tokens[v, pitched] = FIRST_PITCH_TOKEN + row[pitched] - vocab.low
    return tokens


def tokens_to_raw(tokens: np.ndarray, vocabularies: list[VoiceVocabulary]) -> np.ndarray:
    """Tokens ``[4, T]`` -> raw pitches ``int16 [4, T]`` (START/END/MASK read as rests)."""
    raw = np.full(tokens.shape, REST_PITCH, dtype=np.int16)
    for v, vocab in enumerate(vocabularies):
        row = tokens[v]
        raw[v, row == HOLD] = HOLD_PITCH
        pitched = row >= FIRST_PITCH_TOKEN
        raw[v, pitched] = row[pitched] - FIRST_PITCH_TOKEN + vocab.low
    return raw


def sounding_pitches(raw: np.ndarray) -> np.ndarray:
    """MIDI pitch sounding at each step ``int64 [..., T]``: holds carry the onset's pitch,
    rests (and holds after a rest) are -1."""
    raw = np.asarray(raw, dtype=np.int64)
    is_event = raw != HOLD_PITCH
    steps = np.arange(raw.shape[-1])
    last_event = np.maximum.accumulate(np.where(is_event, steps, -1), axis=-1)
    filled = np.take_along_axis(raw, np.maximum(last_event, 0), axis=-1)
    filled = np.where(last_event < 0, REST_PITCH, filled)
    return np.where(filled < 0, -1, filled)


def transpose_raw(raw: np.ndarray, semitones: int) -> np.ndarray:
    """Move every pitch by ``semitones``; rests and holds stay."""
    out = raw.copy()
    out[raw >= 0] += semitones
    return out


def transpose_key(key: int, semitones: int) -> int:
    """Key signature (sharps mod 12) after transposing by ``semitones``: 7 sharps a semitone."""
    return (key + 7 * semitones) % 12


def meta_columns(card: dict) -> np.ndarray:
    """Indices into :data:`META_FIELDS` of the metadata a model reads, from its card
    (models trained before the key and distance fields read the first four)."""
    fields = card.get("inputs", {}).get("meta", {}).get("fields", META_FIELDS[:4])
    unknown = [f for f in fields if f not in META_FIELDS]
    if unknown:
        raise ValueError(f"the model reads metadata this engine does not know: {unknown}")
    return np.array([META_FIELDS.index(f) for f in fields], dtype=np.int64)


def distance_bucket(steps: np.ndarray | int) -> np.ndarray:
    """Class of a distance in steps (see :data:`DISTANCE_BUCKETS`); negative reads as far."""
    steps = np.asarray(steps, dtype=np.int64)
    classes = np.searchsorted(DISTANCE_BUCKETS, steps, side="right") - 1
    return np.where(steps < 0, FAR, classes)


def steps_to_next(mask: np.ndarray) -> np.ndarray:
    """For every step, how many steps until ``mask`` is next True (0 where it is True,
    -1 where it never is again)."""
    mask = np.asarray(mask, dtype=bool)
    n = mask.size
    marked = np.where(mask, np.arange(n), n)
    following = np.minimum.accumulate(marked[::-1])[::-1]
    return np.where(following < n, following - np.arange(n), -1)


def build_metadata(n_steps: int, bar_offset_steps: int, steps_per_bar: int,
                   fermata_steps: np.ndarray | None, key_sharps: int,
                   mode: int = 0, tonic_degree: int | None = None) -> np.ndarray:
    """Metadata ``int64 [T, 8]`` for a piece on the 16th grid.

    ``bar_offset_steps`` is how many steps of the first bar precede step 0 (a pickup of
    one quarter in 4/4 has 12); ``steps_per_bar`` is 16 for 4/4 and 12 for 3/4.
    ``fermata_steps`` is a boolean mask ``[T]`` or None; ``key_sharps`` counts sharps
    (negative for flats); ``mode`` is 0 for major, 1 for minor; ``tonic_degree`` is the
    tonic in semitones above the signature's major tonic (default: 0 if major, 9 if minor).
    """
    steps = np.arange(n_steps) + bar_offset_steps
    meta = np.zeros((n_steps, len(META_FIELDS)), dtype=np.int64)
    meta[:, 0] = steps % STEPS_PER_QUARTER
    meta[:, 1] = (steps % steps_per_bar) == 0
    fermatas = (np.zeros(n_steps, dtype=bool) if fermata_steps is None
                else np.asarray(fermata_steps, dtype=bool))
    meta[:, 2] = fermatas
    meta[:, 3] = key_sharps % 12
    meta[:, 4] = int(bool(mode))
    meta[:, 5] = (9 if mode else 0) if tonic_degree is None else tonic_degree % 12
    meta[:, 6] = distance_bucket(steps_to_next(fermatas))
    meta[:, 7] = distance_bucket(np.arange(n_steps)[::-1])
    return meta


def pad_for_windows(tokens: np.ndarray, meta: np.ndarray, context: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pad tokens with START/END and metadata by continuing its grid, ``context`` steps
    each side, so every step has a full window."""
    n_voices, n_steps = tokens.shape
    padded = np.concatenate([
        np.full((n_voices, context), START, dtype=np.int64),
        tokens.astype(np.int64),
        np.full((n_voices, context), END, dtype=np.int64),
    ], axis=1)
    before = np.arange(-context, 0)
    after = np.arange(n_steps, n_steps + context)
    idx = np.concatenate([before, np.arange(n_steps), after])
    meta_padded = meta[np.clip(idx, 0, n_steps - 1)].copy()
    # Ticks keep counting outside the piece; fermatas do not extend beyond it.
    first_tick = meta[0, 0]
    meta_padded[:, 0] = (first_tick + idx) % STEPS_PER_QUARTER
    meta_padded[:context, 2] = 0
    meta_padded[context + n_steps:, 2] = 0
    if meta.shape[1] > 7:  # after the end: no fermata ahead, the end behind
        meta_padded[context + n_steps:, 6] = FAR
        meta_padded[context + n_steps:, 7] = 0
    return padded, meta_padded
