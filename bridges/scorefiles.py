"""Melodies in, harmonisations out: Standard MIDI Files (mido) and MusicXML (music21).

Reading picks the melody (MIDI: the first monophonic track/channel, else the first with
notes; MusicXML: the first part), quantises it to 16th notes whatever the tempo, keeps
the bar phase of a pickup, and notes every liberty taken in ``Melody.warnings``.
Writing puts each voice on its own MIDI track and channel, or its own MusicXML part.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import mido
import numpy as np

from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    REST_PITCH,
    STEPS_PER_QUARTER,
    VOICES,
    sounding_pitches,
)
from kantor.engine.chorale.melody import Melody

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
MUSICXML_SUFFIXES = (".musicxml", ".xml", ".mxl")
OUTPUT_TICKS_PER_BEAT = 480
VOICE_PROGRAM = 52  # General MIDI "Choir Aahs" (0-based)
# MIDI key signature names -> sharps (minor keys by their relative major's signature).
_MAJOR_SHARPS = {"Cb": -7, "Gb": -6, "Db": -5, "Ab": -4, "Eb": -3, "Bb": -2, "F": -1,
                 "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7}
_MINOR_SHARPS = {"Ab": -7, "Eb": -6, "Bb": -5, "F": -4, "C": -3, "G": -2, "D": -1,
                 "A": 0, "E": 1, "B": 2, "F#": 3, "C#": 4, "G#": 5, "D#": 6, "A#": 7}


class ScoreFileError(ValueError):
    """A file that cannot be read as a melody; the message is one line for the user."""


# --------------------------------------------------------------------------- reading
def read_melody(path: Path) -> Melody:
    """Read a melody from a MIDI or MusicXML file (by suffix)."""
    path = Path(path)
    if not path.exists():
        raise ScoreFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return read_midi_melody(path)
    if suffix in MUSICXML_SUFFIXES:
        return read_musicxml_melody(path)
    raise ScoreFileError(f"{path.name}: not a MIDI (.mid) or MusicXML (.musicxml, .xml, .mxl) "
                         "file")


def _grid_from_notes(notes: list[tuple[int, int, int]], warnings: list[str]
                     ) -> tuple[np.ndarray, int]:
    """Raw soprano from (start step, end step, pitch) notes in absolute steps; chords keep
    their top note and overlaps are cut. Returns (raw [T], first step)."""
    by_start: dict[int, tuple[int, int]] = {}
    chords = 0
    for start, end, pitch in notes:
        if start in by_start:
            chords += 1
            if pitch <= by_start[start][1]:
                continue
        by_start[start] = (max(end, start + 1), pitch)
    if chords:
        warnings.append(f"{chords} chord note(s) in the melody dropped: the top note is kept")
    starts = sorted(by_start)
    first, last_end = starts[0], max(end for end, _ in by_start.values())
    raw = np.full(last_end - first, REST_PITCH, dtype=np.int16)
    for i, start in enumerate(starts):
        end, pitch = by_start[start]
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        raw[start - first] = pitch
        raw[start - first + 1:end - first] = HOLD_PITCH
    return raw, first


def _auto_fermatas(raw: np.ndarray) -> np.ndarray:
    """Fermatas where the file has none: on the last note, and on notes at least twice
    as long as the typical note (phrase ends in hymn tunes)."""
    onsets = np.flatnonzero(raw >= 0)
    ends = np.append(onsets[1:], raw.size)
    lengths = ends - onsets
    mask = np.zeros(raw.size, dtype=bool)
    typical = float(np.median(lengths))
    for start, length in zip(onsets, lengths, strict=True):
        if length >= 2 * typical and length >= 2 * STEPS_PER_QUARTER:
            mask[start:start + length] = True
    mask[onsets[-1]:ends[-1]] = True
    return mask


def _sharps_from_midi_key(key: str) -> int:
    if key.endswith("m"):
        return _MINOR_SHARPS.get(key[:-1], 0)
    return _MAJOR_SHARPS.get(key, 0)


def estimate_key_sharps(raw: np.ndarray) -> int:
    """Key signature (sharps) for a melody without one (Krumhansl-Schmuckler, music21)."""
    from music21 import note, stream

    line = stream.Stream()
    onsets = np.flatnonzero(raw >= 0)
    ends = np.append(onsets[1:], raw.size)
    for start, end in zip(onsets, ends, strict=True):
        line.append(note.Note(int(raw[start]), quarterLength=(end - start) / STEPS_PER_QUARTER))
    return int(line.analyze("key").sharps)


def read_melody_bytes(data: bytes, kind: str, name: str = "upload") -> Melody:
    """Read a melody from the bytes of a file, in memory: ``kind`` is ``"midi"`` or
    ``"musicxml"``; ``name`` labels errors and becomes the title."""
    if not data:
        raise ScoreFileError(f"{name}: the file is empty")
    if kind == "midi":
        return read_midi_melody(Path(name), data)
    if kind == "musicxml":
        return read_musicxml_melody(Path(name), data)
    raise ScoreFileError(f"{name}: unknown melody format '{kind}' (midi or musicxml)")


def read_midi_melody(path: Path, data: bytes | None = None) -> Melody:
    """The melody of a Standard MIDI File (read from ``data`` when given, else ``path``)."""
    try:
        if data is not None:
            midi = mido.MidiFile(file=io.BytesIO(data))
        else:
            midi = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as error:
        reason = str(error) or ("it ends too early" if isinstance(error, EOFError)
                                else type(error).__name__)  # mido's EOFError says nothing
        raise ScoreFileError(f"{path.name}: not a readable MIDI file ({reason})") from None
    if midi.type == 2:
        raise ScoreFileError(f"{path.name}: MIDI type 2 (independent sequences) is not "
                             "supported; save it as type 0 or 1")
    tpb = midi.ticks_per_beat
    streams: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    tempo, time_signature, key_sharps = None, None, None
    for index, track in enumerate(midi.tracks):
        tick = 0
        sounding: dict[tuple[int, int], int] = {}
        for message in track:
            tick += message.time
            if message.type == "set_tempo" and tempo is None:
                tempo = mido.tempo2bpm(message.tempo)
            elif message.type == "time_signature" and time_signature is None:
                time_signature = (message.numerator, message.denominator)
            elif message.type == "key_signature" and key_sharps is None:
                key_sharps = _sharps_from_midi_key(message.key)
            elif message.type == "note_on" and message.velocity > 0:
                sounding[(message.channel, message.note)] = tick
            elif message.type in ("note_off", "note_on"):
                start = sounding.pop((message.channel, message.note), None)
                if start is not None:  # a note-off without a note-on is ignored
                    streams[(index, message.channel)].append((start, tick, message.note))
        for (channel, pitch), start in sounding.items():  # never released: ends with track
            streams[(index, channel)].append((start, tick, pitch))
    if not streams:
        raise ScoreFileError(f"{path.name}: the MIDI file has no notes")
    warnings: list[str] = []

    def to_steps(ticks: int) -> int:
        return round(ticks * STEPS_PER_QUARTER / tpb)

    quantised = {key: sorted((to_steps(s), to_steps(e), p) for s, e, p in notes)
                 for key, notes in streams.items()}
    monophonic = [key for key, notes in sorted(quantised.items())
                  if len({s for s, _, _ in notes}) == len(notes)]
    chosen = monophonic[0] if monophonic else sorted(quantised)[0]
    if len(quantised) > 1:
        warnings.append(f"{len(quantised)} tracks/channels with notes: using track "
                        f"{chosen[0]} channel {chosen[1] + 1} as the melody")
    raw, first_step = _grid_from_notes(quantised[chosen], warnings)
    numerator, denominator = time_signature or (4, 4)
    steps_per_bar = max(1, round(numerator * 4 * STEPS_PER_QUARTER / denominator))
    if key_sharps is None:
        key_sharps = estimate_key_sharps(raw)
        warnings.append(f"no key signature in the file: estimated {key_sharps:+d} sharps")
    return Melody(soprano=raw, steps_per_bar=steps_per_bar,
                  bar_offset_steps=first_step % steps_per_bar, key_sharps=key_sharps,
                  fermatas=_auto_fermatas(raw), tempo_bpm=tempo or 120.0,
                  start_step=first_step, time_signature=(numerator, denominator),
                  title=path.stem, warnings=warnings)


def read_musicxml_melody(path: Path, data: bytes | None = None) -> Melody:
    """The first part of a MusicXML file as the melody (from ``data`` when given)."""
    from music21 import converter, expressions, meter, tempo

    try:
        if data is not None:
            # parseData takes text; a file that is not UTF-8 is not MusicXML we can read
            score = converter.parseData(data.decode("utf-8"), format="musicxml")
        else:
            score = converter.parse(str(path), format="musicxml")
    except Exception as error:  # music21 raises many kinds on broken files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ScoreFileError(f"{path.name}: not a readable MusicXML file ({message})") from None
    parts = list(getattr(score, "parts", [])) or [score]
    part = parts[0].stripTies()
    warnings: list[str] = []
    if len(parts) > 1:
        warnings.append(f"{len(parts)} parts: using the first ({parts[0].partName or 'unnamed'})"
                        " as the melody")
    notes, fermata_spans = [], []
    for element in part.flatten().notes:
        start = round(float(element.offset) * STEPS_PER_QUARTER)
        end = round(float(element.offset + element.quarterLength) * STEPS_PER_QUARTER)
        if end <= start:
            continue  # grace notes
        for pitch in element.pitches:
            notes.append((start, end, pitch.midi))
        if any(isinstance(e, expressions.Fermata) for e in element.expressions):
            fermata_spans.append((start, end))
    if not notes:
        raise ScoreFileError(f"{path.name}: the MusicXML file has no notes")
    raw, first_step = _grid_from_notes(sorted(notes), warnings)
    signatures = list(part.recurse().getElementsByClass(meter.TimeSignature))
    numerator, denominator = ((signatures[0].numerator, signatures[0].denominator)
                              if signatures else (4, 4))
    steps_per_bar = max(1, round(numerator * 4 * STEPS_PER_QUARTER / denominator))
    measures = list(part.getElementsByClass("Measure"))
    padding = round(float(measures[0].paddingLeft or 0) * STEPS_PER_QUARTER) if measures else 0
    keys = list(part.recurse().getElementsByClass("KeySignature"))
    if keys:
        key_sharps = int(keys[0].sharps)
    else:
        key_sharps = estimate_key_sharps(raw)
        warnings.append(f"no key signature in the file: estimated {key_sharps:+d} sharps")
    if fermata_spans:
        fermatas = np.zeros(raw.size, dtype=bool)
        for start, end in fermata_spans:
            fermatas[max(start - first_step, 0):max(end - first_step, 0)] = True
    else:
        fermatas = _auto_fermatas(raw)
    marks = list(part.recurse().getElementsByClass(tempo.MetronomeMark))
    bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].number else 90.0
    return Melody(soprano=raw, steps_per_bar=steps_per_bar,
                  bar_offset_steps=(first_step + padding) % steps_per_bar,
                  key_sharps=key_sharps, fermatas=fermatas, tempo_bpm=bpm,
                  start_step=first_step, time_signature=(numerator, denominator),
                  title=(score.metadata.bestTitle if score.metadata and
                         score.metadata.bestTitle else path.stem), warnings=warnings)


# --------------------------------------------------------------------------- writing
def voice_notes(raw: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """Per voice, (start step, length in steps, MIDI pitch) of every note."""
    result = []
    sounding = sounding_pitches(raw)
    for v in range(raw.shape[0]):
        onsets = np.flatnonzero(raw[v] >= 0)
        notes = []
        for start in onsets:
            end = start + 1
            while end < raw.shape[1] and raw[v, end] == HOLD_PITCH:
                end += 1
            notes.append((int(start), int(end - start), int(sounding[v, start])))
        result.append(notes)
    return result


def write_midi(raw: np.ndarray, melody: Melody, path: Path, velocity: int = 80) -> None:
    """A type-1 MIDI file: a conductor track, then one track and channel per voice."""
    Path(path).write_bytes(midi_bytes(raw, melody, velocity))


def midi_bytes(raw: np.ndarray, melody: Melody, velocity: int = 80) -> bytes:
    """The harmonisation as the bytes of a type-1 MIDI file (see :func:`write_midi`)."""
    tpb = OUTPUT_TICKS_PER_BEAT
    ticks_per_step = tpb // STEPS_PER_QUARTER
    midi = mido.MidiFile(type=1, ticks_per_beat=tpb)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=melody.title or "Kantor"))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(melody.tempo_bpm)))
    numerator, denominator = melody.time_signature
    conductor.append(mido.MetaMessage("time_signature", numerator=numerator,
                                      denominator=denominator))
    conductor.append(mido.MetaMessage("key_signature", key=_key_name(melody.key_sharps)))
    midi.tracks.append(conductor)
    for v, notes in enumerate(voice_notes(raw)):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=VOICES[v].capitalize()))
        track.append(mido.Message("program_change", channel=v, program=VOICE_PROGRAM))
        events = []
        for start, length, pitch in notes:
            begin = (melody.start_step + start) * ticks_per_step
            events.append((begin, 1, mido.Message("note_on", channel=v, note=pitch,
                                                  velocity=velocity)))
            events.append((begin + length * ticks_per_step, 0,
                           mido.Message("note_off", channel=v, note=pitch)))
        now = 0
        for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _key_name(sharps: int) -> str:
    by_sharps = {v: k for k, v in _MAJOR_SHARPS.items()}
    return by_sharps.get(max(-7, min(7, sharps)), "C")


def write_musicxml(raw: np.ndarray, melody: Melody, path: Path) -> None:
    """A four-part MusicXML score (S, A, T, B) with the melody's metre, key and fermatas."""
    Path(path).write_bytes(musicxml_bytes(raw, melody))


def musicxml_bytes(raw: np.ndarray, melody: Melody) -> bytes:
    """The harmonisation as MusicXML bytes (see :func:`write_musicxml`)."""
    from music21 import clef, expressions, key, metadata, meter, note, stream
    from music21 import tempo as m21tempo

    score = stream.Score()
    score.metadata = metadata.Metadata(title=melody.title or "Kantor harmonisation")
    clefs = [clef.TrebleClef(), clef.TrebleClef(), clef.Treble8vbClef(), clef.BassClef()]
    lead_in = melody.bar_offset_steps  # rests that complete a pickup bar
    for v, notes in enumerate(voice_notes(raw)):
        part = stream.Part(id=VOICES[v])
        part.partName = VOICES[v].capitalize()
        part.insert(0, clefs[v])
        part.insert(0, meter.TimeSignature(f"{melody.time_signature[0]}/"
                                           f"{melody.time_signature[1]}"))
        part.insert(0, key.KeySignature(max(-7, min(7, melody.key_sharps))))
        if v == 0:
            part.insert(0, m21tempo.MetronomeMark(number=round(melody.tempo_bpm)))
        cursor = 0
        for start, length, pitch in notes:
            if start > cursor:
                part.insert((lead_in + cursor) / STEPS_PER_QUARTER,
                            note.Rest(quarterLength=(start - cursor) / STEPS_PER_QUARTER))
            n = note.Note(_spelled(pitch, melody.key_sharps),
                          quarterLength=length / STEPS_PER_QUARTER)
            if v == 0 and melody.fermatas is not None and melody.fermatas[start] and (
                    start + length >= raw.shape[1] or not melody.fermatas[start + length]):
                n.expressions.append(expressions.Fermata())
            part.insert((lead_in + start) / STEPS_PER_QUARTER, n)
            cursor = start + length
        if lead_in:
            part.insert(0, note.Rest(quarterLength=lead_in / STEPS_PER_QUARTER))
        score.insert(0, part)
    score = score.makeNotation()
    score.metadata = metadata.Metadata(title=melody.title or "Kantor harmonisation",
                                       composer="harmonised by Kantor")
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(score).parse()


def _spelled(midi: int, key_sharps: int):
    """A pitch spelled for the key: black keys as sharps in sharp keys, flats otherwise
    (a note built from a bare MIDI number would print a natural sign on every note)."""
    from music21 import pitch

    spelled = pitch.Pitch(midi=midi)
    if spelled.accidental is not None and key_sharps >= 0 and spelled.accidental.alter < 0:
        spelled = spelled.getEnharmonic()
    return spelled


def write_harmonisation(raw: np.ndarray, melody: Melody, path: Path) -> None:
    """Write MIDI or MusicXML by ``path``'s suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        write_midi(raw, melody, path)
    elif suffix in MUSICXML_SUFFIXES and suffix != ".mxl":
        write_musicxml(raw, melody, path)
    else:
        raise ScoreFileError(f"{path.name}: write .mid or .musicxml")
