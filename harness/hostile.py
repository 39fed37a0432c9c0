"""Hostile and careless melody files, made byte by byte: each is what a user (or an attacker)
could upload or pass to ``kantor harmonize``. Shared by the tests and the reliability
benchmark; every one must be refused with a one-line error, or read within the limits."""

from __future__ import annotations

import struct

END_OF_TRACK = b"\x00\xff\x2f\x00"
NOTE = b"\x00\x90\x3c\x40\x60\x80\x3c\x00"  # middle C, one beat at 96 ticks per beat


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.insert(0, (value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out)


def smf(tracks: list[bytes], ticks_per_beat: int = 96, file_type: int = 0) -> bytes:
    """A Standard MIDI File from raw track bodies (end-of-track included by the caller)."""
    out = b"MThd" + struct.pack(">IHHH", 6, file_type, len(tracks), ticks_per_beat)
    for track in tracks:
        out += b"MTrk" + struct.pack(">I", len(track)) + track
    return out


def musicxml(measures: int, beats: str = "4", duration: str = "4", notes_per_measure: int = 1,
             title: str | None = None) -> bytes:
    """A one-part score of ``measures`` measures of ``notes_per_measure`` notes each."""
    body = []
    each = max(1, int(duration) // notes_per_measure) if duration.isdigit() else duration
    for i in range(measures):
        attributes = ("<attributes><divisions>1</divisions><key><fifths>0</fifths></key>"
                      f"<time><beats>{beats}</beats><beat-type>4</beat-type></time>"
                      "</attributes>") if i == 0 else ""
        notes = "".join(f"<note><pitch><step>C</step><octave>5</octave></pitch>"
                        f"<duration>{each}</duration></note>"
                        for _ in range(notes_per_measure))
        body.append(f'<measure number="{i + 1}">{attributes}{notes}</measure>')
    work = f"<work><work-title>{title}</work-title></work>" if title else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><score-partwise version="3.1">{work}'
            '<part-list><score-part id="P1"><part-name>Melody</part-name></score-part>'
            f'</part-list><part id="P1">{"".join(body)}</part></score-partwise>').encode()


def compact_measures(measures: int) -> bytes:
    """Many one-rest measures in few bytes (8000 fit in ~400 KB)."""
    body = "".join('<measure><note><rest/><duration>4</duration></note></measure>'
                   for _ in range(measures))
    return ('<?xml version="1.0"?><score-partwise><part-list><score-part id="P1"/>'
            f'</part-list><part id="P1"><measure><attributes><divisions>1</divisions>'
            f'</attributes><note><pitch><step>C</step><octave>5</octave></pitch>'
            f'<duration>4</duration></note></measure>{body}</part></score-partwise>').encode()


# name -> (bytes, kind, what the one-line error says)
HOSTILE_FILES: dict[str, tuple[bytes, str, str]] = {
    # 37 bytes: 1 tick per beat, one note 0x0FFFFFFF ticks long (~1e9 16ths)
    "one-huge-note.mid": (smf([b"\x00\x90\x3c\x40" + vlq(0x0FFFFFFF) + b"\x80\x3c\x00"
                               + END_OF_TRACK], ticks_per_beat=1), "midi", "16ths"),
    # ~800 KB: 100,000 notes, each a tick long
    "100k-notes.mid": (smf([b"\x00\x90\x3c\x40\x01\x80\x3c\x00" * 100_000 + END_OF_TRACK],
                           ticks_per_beat=960), "midi", "notes"),
    "tpb-0.mid": (smf([NOTE + END_OF_TRACK], ticks_per_beat=0), "midi", "0 ticks per beat"),
    "smpte.mid": (smf([NOTE + END_OF_TRACK], ticks_per_beat=0xE728), "midi", "SMPTE"),
    "tempo-0.mid": (smf([b"\x00\xff\x51\x03\x00\x00\x00" + NOTE + END_OF_TRACK]), "midi",
                    "tempo"),
    "key-40-05.mid": (smf([b"\x00\xff\x59\x02\x40\x05" + NOTE + END_OF_TRACK]), "midi",
                      "key signature"),
    "time-0-4.mid": (smf([b"\x00\xff\x58\x04\x00\x02\x18\x08" + NOTE + END_OF_TRACK]), "midi",
                     "time signature 0/4"),
    "note-after-an-age.mid": (smf([vlq(0x0FFFFFF0) + NOTE[1:] + END_OF_TRACK]), "midi",
                              "16ths into the file"),
    "truncated.mid": (smf([NOTE * 4 + END_OF_TRACK])[:-9], "midi", "ends too early"),
    "huge-duration.musicxml": (musicxml(2, duration="999999999999"), "musicxml",
                               "quarter notes"),
    "nan-duration.musicxml": (musicxml(2, duration="nan"), "musicxml", "duration"),
    "time-0-4.musicxml": (musicxml(4, beats="0"), "musicxml", "0/4"),
    "8000-measures.musicxml": (compact_measures(8000), "musicxml", "more than"),
    "billion-laughs.musicxml": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<score-partwise><part-list/><part id="P1">&lol2;</part></score-partwise>',
        "musicxml", "entity"),
    "external-entity.musicxml": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<score-partwise><part-list/><part id="P1">&e;</part></score-partwise>',
        "musicxml", "entity"),
}


def largest_midi(limit_bytes: int = 1_000_000) -> bytes:
    """The heaviest MIDI file the service takes: a 1024-16th melody of 16th notes (1024
    notes) with 7168 more notes on other channels, padded with controllers to the upload
    limit."""
    melody = b"".join(b"\x00\x90" + bytes([60 + i % 12]) + b"\x40\x18\x80"
                      + bytes([60 + i % 12]) + b"\x00" for i in range(1024))
    chords = b"".join(b"\x00" + bytes([0x91 + c % 3]) + bytes([48 + c % 12]) + b"\x40"
                      for c in range(7168)) + b"\x18" + bytes([0xB1]) + b"\x07\x40"
    head = smf([melody + END_OF_TRACK, chords + END_OF_TRACK], ticks_per_beat=96,
               file_type=1)
    padding = limit_bytes - len(head) - 8 - 4 - 4
    filler = b"\x00\xb5\x07\x40" * (padding // 4)
    return smf([melody + END_OF_TRACK, chords + END_OF_TRACK, filler + END_OF_TRACK],
               ticks_per_beat=96, file_type=1)


def largest_musicxml(parts: int = 16, measures: int = 64) -> bytes:
    """The heaviest MusicXML the service takes: 16 parts of 64 measures (1024 measures),
    eight eighth notes each (8192 notes), ~0.9 MB."""
    steps = "CDEFGABC"
    part_list = "".join(f'<score-part id="P{p}"><part-name>V{p}</part-name></score-part>'
                        for p in range(parts))
    body = []
    for p in range(parts):
        measures_text = []
        for m in range(measures):
            attributes = ("<attributes><divisions>2</divisions><key><fifths>0</fifths></key>"
                          "<time><beats>4</beats><beat-type>4</beat-type></time></attributes>"
                          if m == 0 else "")
            notes = "".join(f"<note><pitch><step>{s}</step><octave>5</octave></pitch>"
                            "<duration>1</duration><type>eighth</type></note>" for s in steps)
            measures_text.append(f'<measure number="{m + 1}">{attributes}{notes}</measure>')
        body.append(f'<part id="P{p}">{"".join(measures_text)}</part>')
    return ('<?xml version="1.0" encoding="UTF-8"?><score-partwise version="3.1">'
            f'<part-list>{part_list}</part-list>{"".join(body)}</score-partwise>').encode()
