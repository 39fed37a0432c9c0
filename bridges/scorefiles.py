"""Melodies in, harmonisations out: Standard MIDI Files (mido) and MusicXML (music21).

Reading picks the melody (MIDI: the first monophonic track/channel, else the first with
notes; MusicXML: the first part), quantises it to 16th notes whatever the tempo, keeps
the bar phase of a pickup, and notes every liberty taken in ``Melody.warnings``.
Writing puts each voice on its own MIDI track and channel, or its own MusicXML part.
"""

from __future__ import annotations

import io
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from kantor.bridges.outputs import write_atomically
from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    REST_PITCH,
    STEPS_PER_QUARTER,
    VOICES,
    sounding_pitches,
)
from kantor.engine.chorale.melody import Melody, guess_fermatas

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
MUSICXML_SUFFIXES = (".musicxml", ".xml", ".mxl")
OUTPUT_TICKS_PER_BEAT = 480
VOICE_PROGRAM = 52  # General MIDI "Choir Aahs" (0-based)
# MIDI key signature names -> sharps (minor keys by their relative major's signature).
_MAJOR_SHARPS = {"Cb": -7, "Gb": -6, "Db": -5, "Ab": -4, "Eb": -3, "Bb": -2, "F": -1,
                 "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7}


class ScoreFileError(ValueError):
    """A file that cannot be read as a melody; the message is one line for the user."""


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ReadLimits:
    """How much of a melody file is read before it is refused. Every limit is checked while
    reading, before anything is expanded to the 16th grid, so any file costs bounded time
    and memory.

    ``max_bytes``: the file's size. ``max_steps``: the melody's length in 16ths, from its
    first note to the end of its last; no note may start later than ``4 * max_steps`` 16ths
    into the file. ``max_notes``: notes in the whole file (every track, channel or part).
    ``max_measures``: MusicXML measures of all parts together (music21's parsing time grows
    faster than linearly with them: ~0.6 s for 1024 one-note measures, ~10 s for 4096)."""

    max_bytes: int
    max_steps: int
    max_notes: int
    max_measures: int


# The service's limits: ~64 bars of 4/4, read in about a second at most. The command
# line's are larger, for a long piece on the user's own machine, and still bounded.
SERVICE_LIMITS = ReadLimits(max_bytes=1_000_000, max_steps=1024, max_notes=8192,
                            max_measures=1024)
CLI_LIMITS = ReadLimits(max_bytes=16_000_000, max_steps=8192, max_notes=65536,
                        max_measures=4096)


def read_melody(path: Path, limits: ReadLimits = CLI_LIMITS) -> Melody:
    """Read a melody from a MIDI or MusicXML file (by suffix), within ``limits``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        kind = "midi"
    elif suffix in MUSICXML_SUFFIXES:
        kind = "mxl" if suffix == ".mxl" else "musicxml"
    else:
        if not path.exists():
            raise ScoreFileError(f"{path}: no such file")
        raise ScoreFileError(f"{path.name}: not a MIDI (.mid) or MusicXML (.musicxml, .xml, "
                             ".mxl) file")
    try:
        with path.open("rb") as file:
            data = file.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise ScoreFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ScoreFileError(f"{path}: is a directory, not a melody file") from None
    except OSError as error:
        raise ScoreFileError(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(data) > limits.max_bytes:
        raise ScoreFileError(f"{path.name}: the file is over {limits.max_bytes} bytes; "
                             "a melody file is much smaller")
    if kind == "mxl":
        data = _unzip_musicxml(data, path.name, limits)
        kind = "musicxml"
    # From the bytes, never from the path: music21 keys its pickle cache (in a shared temp
    # folder) by path, and would run a pickle planted there as code.
    return read_melody_bytes(data, kind, path.name, limits, title=path.stem)


def read_melody_bytes(data: bytes, kind: str, name: str = "upload",
                      limits: ReadLimits = SERVICE_LIMITS, title: str | None = None) -> Melody:
    """Read a melody from the bytes of a file, in memory: ``kind`` is ``"midi"`` or
    ``"musicxml"``; ``name`` labels errors; ``title`` (default: ``name``) names the
    melody when the file has no title of its own."""
    if kind not in ("midi", "musicxml"):
        raise ScoreFileError(f"{name}: unknown melody format '{kind}' (midi or musicxml)")
    label = "MIDI" if kind == "midi" else "MusicXML"
    if not data:
        raise ScoreFileError(f"{name}: not a readable {label} file (the file is empty)")
    if len(data) > limits.max_bytes:
        raise ScoreFileError(f"{name}: the file is over {limits.max_bytes} bytes")
    title = name if title is None else title
    if kind == "midi":
        return _midi_melody(data, name, limits, title)
    return _musicxml_melody(data, name, limits, title)


def _unzip_musicxml(data: bytes, name: str, limits: ReadLimits) -> bytes:
    """The score inside a compressed MusicXML (.mxl) file, read no further than
    ``limits.max_bytes`` (a zip's declared sizes can lie)."""
    import xml.etree.ElementTree as ElementTree
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            target = None
            if "META-INF/container.xml" in names:
                container = _read_member(archive, "META-INF/container.xml", 65536, name)
                root = ElementTree.fromstring(container)  # small, and expat refuses bombs
                for element in root.iter():
                    if element.tag.endswith("rootfile") and element.get("full-path"):
                        target = element.get("full-path")
                        break
            if target is None or target not in names:
                target = next((n for n in names if not n.startswith("META-INF/")
                               and n.lower().endswith((".xml", ".musicxml"))), None)
            if target is None:
                raise ScoreFileError(f"{name}: the .mxl archive holds no MusicXML score")
            return _read_member(archive, target, limits.max_bytes, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ElementTree.ParseError, OSError,
            EOFError, RuntimeError, NotImplementedError) as error:
        raise ScoreFileError(f"{name}: not a readable .mxl file ({error})") from None


def _read_member(archive, member: str, limit: int, name: str) -> bytes:
    with archive.open(member) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ScoreFileError(f"{name}: the score inside the .mxl is over {limit} bytes")
    return data


def _grid_from_notes(notes: list[tuple[int, int, int]], warnings: list[str], name: str,
                     limits: ReadLimits) -> tuple[np.ndarray, int]:
    """Raw soprano from (start step, end step, pitch) notes in absolute steps; chords keep
    their top note and overlaps are cut. Returns (raw [T], first step). ScoreFileError
    when the melody is longer than ``limits.max_steps`` (checked before the grid exists)."""
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
    if last_end - first > limits.max_steps:
        raise ScoreFileError(f"{name}: the melody lasts {last_end - first} 16ths; at most "
                             f"{limits.max_steps} ({limits.max_steps // 16} bars of 4/4) "
                             "are taken")
    raw = np.full(last_end - first, REST_PITCH, dtype=np.int16)
    for i, start in enumerate(starts):
        end, pitch = by_start[start]
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        raw[start - first] = pitch
        raw[start - first + 1:end - first] = HOLD_PITCH
    return raw, first


def estimate_key_sharps(raw: np.ndarray) -> int:
    """Key signature (sharps) for a melody without one (Krumhansl-Schmuckler, music21)."""
    from music21 import note, stream

    line = stream.Stream()
    onsets = np.flatnonzero(raw >= 0)
    ends = np.append(onsets[1:], raw.size)
    for start, end in zip(onsets, ends, strict=True):
        line.append(note.Note(int(raw[start]), quarterLength=(end - start) / STEPS_PER_QUARTER))
    return int(line.analyze("key").sharps)


def _check_time_signature(numerator: int, denominator: int, name: str) -> None:
    if not (1 <= numerator <= 64 and denominator in (1, 2, 4, 8, 16, 32, 64)):
        raise ScoreFileError(f"{name}: time signature {numerator}/{denominator} is not one "
                             "a chorale can be written in")


# ---- Standard MIDI Files, read event by event with every length and limit checked
@dataclass
class _SmfContent:
    ticks_per_beat: int
    tracks: int
    notes: dict[tuple[int, int], list[tuple[int, int, int]]]  # (track, channel) -> notes
    tempo_bpm: float | None = None
    time_signature: tuple[int, int] | None = None
    key_sharps: int | None = None


# Data bytes after a status byte: channel messages by their high nibble, system messages
# (which a file should not hold, but some do) by their own value.
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xF9: 0, 0xFA: 0,
                      0xFB: 0, 0xFC: 0, 0xFD: 0, 0xFE: 0}


def _read_smf(data: bytes, name: str, limits: ReadLimits) -> _SmfContent:
    """The notes (per track and channel, in ticks) and the first tempo, time and key
    signature of a Standard MIDI File. ScoreFileError, in one line, for anything malformed
    or beyond ``limits``; work and memory stay proportional to the file's size."""

    def fail(reason: str) -> ScoreFileError:
        return ScoreFileError(f"{name}: not a readable MIDI file ({reason})")

    size = len(data)
    if data[:4] != b"MThd":
        raise fail("it does not start with a MIDI header")
    if size < 14:
        raise fail("it ends too early")
    header_length = int.from_bytes(data[4:8], "big")
    if header_length < 6:
        raise fail(f"a header of {header_length} bytes")
    file_type, track_count, division = (int.from_bytes(data[i:i + 2], "big")
                                        for i in (8, 10, 12))
    if file_type == 2:
        raise ScoreFileError(f"{name}: MIDI type 2 (independent sequences) is not "
                             "supported; save it as type 0 or 1")
    if file_type > 2:
        raise fail(f"unknown MIDI file type {file_type}")
    if division & 0x8000:
        raise ScoreFileError(f"{name}: the file counts time in SMPTE frames, which is not "
                             "supported; save it with ticks per beat")
    if division == 0:
        raise fail("0 ticks per beat")
    content = _SmfContent(division, track_count, defaultdict(list))
    latest_onset = 4 * limits.max_steps * division // STEPS_PER_QUARTER  # in ticks
    note_count = 0
    position = 8 + header_length
    tracks_read = 0
    while tracks_read < track_count:
        if position + 8 > size:
            raise fail(f"it ends too early: {tracks_read} of {track_count} tracks")
        chunk, length = data[position:position + 4], int.from_bytes(
            data[position + 4:position + 8], "big")
        start, end = position + 8, position + 8 + length
        if end > size:
            raise fail("it ends too early")
        position = end
        if chunk != b"MTrk":
            continue  # chunks of unknown kinds are skipped, as the standard asks
        index = tracks_read
        tracks_read += 1

        tick, status, at = 0, None, start
        sounding: dict[tuple[int, int], int] = {}
        while at < end:
            delta, at = _varlen(data, at, end, fail)
            tick += delta
            if at >= end:
                raise fail("it ends too early")
            byte = data[at]
            if byte == 0xFF:  # meta event
                if at + 1 >= end:
                    raise fail("it ends too early")
                kind = data[at + 1]
                length, at = _varlen(data, at + 2, end, fail)
                if at + length > end:
                    raise fail("it ends too early")
                body = data[at:at + length]
                at += length
                if kind == 0x2F:
                    break  # end of track
                _meta(kind, body, content, name, fail)
                continue
            if byte in (0xF0, 0xF7):  # SysEx: skipped
                length, at = _varlen(data, at + 1, end, fail)
                at += length
                if at > end:
                    raise fail("it ends too early")
                continue
            if byte & 0x80:
                status = byte
                at += 1
            elif status is None:
                raise fail("a data byte without a status byte")
            count = _DATA_BYTES.get(status & 0xF0) if status < 0xF0 else \
                _SYSTEM_DATA_BYTES.get(status)
            if count is None:
                raise fail(f"status byte 0x{status:02X} in a track")
            if at + count > end:
                raise fail("it ends too early")
            values = data[at:at + count]
            at += count
            if any(v > 127 for v in values):
                raise fail("a data byte above 127")
            kind, channel = status & 0xF0, status & 0x0F
            if kind == 0x90 and values[1] > 0:
                note_count += 1
                if note_count > limits.max_notes:
                    raise ScoreFileError(f"{name}: more than {limits.max_notes} notes; at "
                                         f"most {limits.max_notes} are read")
                if tick > latest_onset:
                    raise ScoreFileError(f"{name}: a note starts more than "
                                         f"{4 * limits.max_steps} 16ths into the file")
                sounding[(channel, values[0])] = tick
            elif kind in (0x80, 0x90):
                begun = sounding.pop((channel, values[0]), None)
                if begun is not None:  # a note-off without a note-on is ignored
                    content.notes[(index, channel)].append((begun, tick, values[0]))
        for (channel, pitch), begun in sounding.items():  # never released: ends with track
            content.notes[(index, channel)].append((begun, tick, pitch))
    return content


def _varlen(data: bytes, at: int, end: int, fail) -> tuple[int, int]:
    """A variable-length quantity at ``at`` (before ``end``): (value, position after)."""
    value = 0
    for _ in range(4):
        if at >= end:
            raise fail("it ends too early")
        byte = data[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, at
    raise fail("a number longer than 4 bytes")


def _meta(kind: int, body: bytes, content: _SmfContent, name: str, fail) -> None:
    """The first tempo, time signature and key signature; each checked as it is used."""
    if kind == 0x51 and content.tempo_bpm is None:
        if len(body) != 3:
            raise fail(f"a tempo event of {len(body)} bytes")
        microseconds = int.from_bytes(body, "big")
        if microseconds == 0:
            raise ScoreFileError(f"{name}: its tempo is 0 microseconds per beat")
        content.tempo_bpm = 60_000_000 / microseconds
    elif kind == 0x58 and content.time_signature is None:
        if len(body) < 2:
            raise fail(f"a time signature of {len(body)} bytes")
        numerator, power = body[0], body[1]
        _check_time_signature(numerator, 2 ** min(power, 16), name)
        content.time_signature = (numerator, 2 ** power)
    elif kind == 0x59 and content.key_sharps is None:
        if len(body) != 2:
            raise fail(f"a key signature of {len(body)} bytes")
        sharps = body[0] - 256 if body[0] > 127 else body[0]
        if not -7 <= sharps <= 7 or body[1] > 1:
            raise ScoreFileError(f"{name}: its key signature (bytes {body[0]:02X} "
                                 f"{body[1]:02X}) is not a key: sharps go from -7 to 7 and "
                                 "the mode is 0 (major) or 1 (minor)")
        content.key_sharps = sharps  # minor keys too: the signature is what counts here


def _midi_melody(data: bytes, name: str, limits: ReadLimits, title: str) -> Melody:
    """The melody of a Standard MIDI File: the first monophonic track/channel, else the
    first with notes."""
    content = _read_smf(data, name, limits)
    if not content.notes:
        raise ScoreFileError(f"{name}: the MIDI file has no notes")
    warnings: list[str] = []
    tpb = content.ticks_per_beat

    def to_steps(ticks: int) -> int:
        return round(ticks * STEPS_PER_QUARTER / tpb)

    quantised = {key: sorted((to_steps(s), to_steps(e), p) for s, e, p in notes)
                 for key, notes in content.notes.items()}
    monophonic = [key for key, notes in sorted(quantised.items())
                  if len({s for s, _, _ in notes}) == len(notes)]
    chosen = monophonic[0] if monophonic else sorted(quantised)[0]
    if len(quantised) > 1:
        warnings.append(f"{len(quantised)} tracks/channels with notes: using track "
                        f"{chosen[0]} channel {chosen[1] + 1} as the melody")
    raw, first_step = _grid_from_notes(quantised[chosen], warnings, name, limits)
    numerator, denominator = content.time_signature or (4, 4)
    steps_per_bar = max(1, round(numerator * 4 * STEPS_PER_QUARTER / denominator))
    key_sharps = content.key_sharps
    if key_sharps is None:
        key_sharps = estimate_key_sharps(raw)
        warnings.append(f"no key signature in the file: estimated {key_sharps:+d} sharps")
    return Melody(soprano=raw, steps_per_bar=steps_per_bar,
                  bar_offset_steps=first_step % steps_per_bar, key_sharps=key_sharps,
                  fermatas=guess_fermatas(raw), tempo_bpm=content.tempo_bpm or 120.0,
                  start_step=first_step, time_signature=(numerator, denominator),
                  title=title, warnings=warnings)


# ---- MusicXML: a streaming pass that checks the limits, then music21 on the bytes
def _prescan_musicxml(data: bytes, name: str, limits: ReadLimits) -> None:
    """Walk the XML once with expat (C, streaming, no tree) and refuse it before music21
    builds anything: entity declarations (expansion bombs), more measures or notes than
    ``limits`` allow, durations that are not numbers or run past the melody limit."""
    import xml.parsers.expat

    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    latest_quarters = 5 * limits.max_steps / STEPS_PER_QUARTER  # start limit + length
    state = {"measures": 0, "notes": 0, "depth": 0, "first_part": None, "in_first": False,
             "divisions": 1.0, "position": 0.0, "text": [], "chord": False, "grace": False,
             "duration": None}

    def refuse(reason: str) -> ScoreFileError:
        return ScoreFileError(f"{name}: {reason}")

    def number(tag: str) -> float:
        text = "".join(state["text"]).strip()
        try:
            value = float(text)
        except ValueError:
            raise refuse(f"not a readable MusicXML file (<{tag}> '{text[:20]}' is not a "
                         "number)") from None
        if not (math.isfinite(value) and value >= 0):
            raise refuse(f"not a readable MusicXML file (<{tag}> {text[:20]})")
        return value

    def start(tag: str, attributes: dict) -> None:
        state["depth"] += 1
        state["text"] = []
        if tag == "measure":
            state["measures"] += 1
            if state["measures"] > limits.max_measures:
                raise refuse(f"more than {limits.max_measures} measures (all parts "
                             f"together); at most {limits.max_measures} are read")
        elif tag == "note":
            state["notes"] += 1
            if state["notes"] > limits.max_notes:
                raise refuse(f"more than {limits.max_notes} notes; at most "
                             f"{limits.max_notes} are read")
            state["chord"] = state["grace"] = False
            state["duration"] = None
        elif tag == "part" and state["depth"] == 2:  # partwise: <score-partwise><part>
            if state["first_part"] is None:
                state["first_part"] = attributes.get("id", "")
            state["in_first"] = attributes.get("id", "") == state["first_part"]
        elif tag == "chord":
            state["chord"] = True
        elif tag == "grace":
            state["grace"] = True

    def end(tag: str) -> None:
        state["depth"] -= 1
        if tag == "divisions":
            divisions = number(tag)
            if divisions <= 0:
                raise refuse("not a readable MusicXML file (<divisions> must be above 0)")
            state["divisions"] = divisions
        elif tag == "duration":
            quarters = number(tag) / state["divisions"]
            if quarters > latest_quarters:
                raise refuse(f"a note or rest lasts {quarters:g} quarter notes; the melody "
                             f"may last at most {limits.max_steps // STEPS_PER_QUARTER}")
            state["duration"] = quarters
        elif state["in_first"] and tag in ("note", "forward", "backup"):
            quarters = state["duration"] or 0.0
            if tag == "backup":
                state["position"] = max(0.0, state["position"] - quarters)
            elif not (tag == "note" and (state["chord"] or state["grace"])):
                state["position"] += quarters
            if state["position"] > latest_quarters:
                raise refuse(f"the melody lasts more than {limits.max_steps} 16ths; at most "
                             f"{limits.max_steps} ({limits.max_steps // 16} bars of 4/4) "
                             "are taken")
            state["duration"] = None
        elif tag == "part":
            state["in_first"] = False

    def entity(*_) -> None:
        raise refuse("not a readable MusicXML file (entity declarations are not accepted)")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = lambda text: state["text"].append(text) \
        if len(state["text"]) < 64 else None
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        raise refuse(f"not a readable MusicXML file ({xml.parsers.expat.ErrorString(error.code)}"
                     f" at line {error.lineno})") from None


def _musicxml_melody(data: bytes, name: str, limits: ReadLimits, title: str) -> Melody:
    """The first part of a MusicXML file as the melody."""
    _prescan_musicxml(data, name, limits)
    from music21 import converter

    try:
        # parseData takes text; a file that is not UTF-8 is not MusicXML we can read.
        # From a string, music21 neither reads nor writes its pickle cache.
        score = converter.parseData(data.decode("utf-8"), format="musicxml")
    except Exception as error:  # music21 raises many kinds on broken files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ScoreFileError(f"{name}: not a readable MusicXML file ({message})") from None
    try:
        return _melody_from_score(score, name, limits, title)
    except ScoreFileError:
        raise
    except (ArithmeticError, ValueError, TypeError, AttributeError, IndexError,
            KeyError) as error:  # music21 objects a broken file left half-formed
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ScoreFileError(f"{name}: not a readable MusicXML file ({reason})") from None


def _melody_from_score(score, name: str, limits: ReadLimits, title: str) -> Melody:
    from music21 import expressions, meter, tempo

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
            if 0 <= pitch.midi <= 127:
                notes.append((start, end, pitch.midi))
        if any(isinstance(e, expressions.Fermata) for e in element.expressions):
            fermata_spans.append((start, end))
    if not notes:
        raise ScoreFileError(f"{name}: the MusicXML file has no notes")
    raw, first_step = _grid_from_notes(sorted(notes), warnings, name, limits)
    signatures = list(part.recurse().getElementsByClass(meter.TimeSignature))
    numerator, denominator = ((signatures[0].numerator, signatures[0].denominator)
                              if signatures else (4, 4))
    _check_time_signature(numerator, denominator, name)
    steps_per_bar = max(1, round(numerator * 4 * STEPS_PER_QUARTER / denominator))
    measures = list(part.getElementsByClass("Measure"))
    padding = round(float(measures[0].paddingLeft or 0) * STEPS_PER_QUARTER) if measures else 0
    keys = list(part.recurse().getElementsByClass("KeySignature"))
    if keys and -7 <= int(keys[0].sharps) <= 7:
        key_sharps = int(keys[0].sharps)
    else:
        key_sharps = estimate_key_sharps(raw)
        warnings.append(f"no key signature in the file: estimated {key_sharps:+d} sharps")
    if fermata_spans:
        fermatas = np.zeros(raw.size, dtype=bool)
        for start, end in fermata_spans:
            fermatas[max(start - first_step, 0):max(end - first_step, 0)] = True
    else:
        fermatas = guess_fermatas(raw)
    marks = list(part.recurse().getElementsByClass(tempo.MetronomeMark))
    bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].number else 90.0
    if not (math.isfinite(bpm) and 1 <= bpm <= 1000):
        warnings.append(f"tempo {bpm:g} BPM ignored: 90 BPM used")
        bpm = 90.0
    return Melody(soprano=raw, steps_per_bar=steps_per_bar,
                  bar_offset_steps=(first_step + padding) % steps_per_bar,
                  key_sharps=key_sharps, fermatas=fermatas, tempo_bpm=bpm,
                  start_step=first_step, time_signature=(numerator, denominator),
                  title=(score.metadata.bestTitle if score.metadata and
                         score.metadata.bestTitle else title), warnings=warnings)


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
    write_atomically(path, midi_bytes(raw, melody, velocity))


def midi_bytes(raw: np.ndarray, melody: Melody, velocity: int = 80) -> bytes:
    """The harmonisation as the bytes of a type-1 MIDI file (see :func:`write_midi`)."""
    tpb = OUTPUT_TICKS_PER_BEAT
    ticks_per_step = tpb // STEPS_PER_QUARTER
    midi = mido.MidiFile(type=1, ticks_per_beat=tpb)
    conductor = mido.MidiTrack()
    # MIDI text is bytes: written as UTF-8 (what DAWs read), passed through mido's Latin-1
    conductor.append(mido.MetaMessage("track_name", name=_midi_text(melody.title or "Kantor")))
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


def _midi_text(text: str, limit: int = 256) -> str:
    """``text`` as mido's Latin-1 string whose bytes are the UTF-8 of ``text`` (so a title
    like "Hymn Ω" is written, not refused), at most ``limit`` bytes, without control bytes."""
    cleaned = "".join(c for c in text if c.isprintable())
    return cleaned.encode("utf-8")[:limit].decode("utf-8", "ignore").encode("utf-8").decode(
        "latin-1")


def _key_name(sharps: int) -> str:
    by_sharps = {v: k for k, v in _MAJOR_SHARPS.items()}
    return by_sharps.get(max(-7, min(7, sharps)), "C")


def write_musicxml(raw: np.ndarray, melody: Melody, path: Path) -> None:
    """A four-part MusicXML score (S, A, T, B) with the melody's metre, key and fermatas."""
    write_atomically(path, musicxml_bytes(raw, melody))


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
    """Write MIDI or MusicXML by ``path``'s suffix, whole or not at all (OutputError)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        write_midi(raw, melody, path)
    elif suffix in MUSICXML_SUFFIXES and suffix != ".mxl":
        write_musicxml(raw, melody, path)
    else:
        raise ScoreFileError(f"{path.name}: write .mid or .musicxml")
