"""Reading melodies from real MIDI/MusicXML files and writing harmonisations."""

import mido
import numpy as np
import pytest

from kantor.bridges.cli import BUNDLED_MELODY
from kantor.bridges.scorefiles import (
    ScoreFileError,
    read_melody,
    voice_notes,
    write_midi,
    write_musicxml,
)
from kantor.engine.chorale.encoding import HOLD_PITCH
from kantor.engine.chorale.melody import Melody, fit_soprano_range


def midi_file(path, notes, tpb=96, tempo_bpm=120, extra_meta=(), channel=0, file_type=1):
    """Write ``notes`` = [(start_beat, beats, pitch or [pitches])] as a one-track file."""
    midi = mido.MidiFile(type=file_type, ticks_per_beat=tpb)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm)))
    for meta in extra_meta:
        track.append(meta)
    events = []
    for start, beats, pitches in notes:
        for p in pitches if isinstance(pitches, list) else [pitches]:
            ch = channel(p) if callable(channel) else channel
            events.append((round(start * tpb), 1, mido.Message("note_on", note=p, velocity=90,
                                                                 channel=ch)))
            # note-off as note-on with velocity 0 (running-status style)
            events.append((round((start + beats) * tpb), 0,
                           mido.Message("note_on", note=p, velocity=0, channel=ch)))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    midi.tracks.append(track)
    midi.save(path)
    return path


def onset_pitches(raw):
    return [int(p) for p in raw if p >= 0]


def test_pickup_tempo_and_key_from_midi(tmp_path):
    # 4/4, pickup on beat 4, odd resolution and a fast tempo.
    notes = [(3, 1, 67), (4, 1, 72), (5, 1, 71), (6, 2, 72)]
    path = midi_file(tmp_path / "m.mid", notes, tpb=37, tempo_bpm=152,
                     extra_meta=[mido.MetaMessage("key_signature", key="G"),
                                 mido.MetaMessage("time_signature", numerator=4,
                                                  denominator=4)])
    melody = read_melody(path)
    assert onset_pitches(melody.soprano) == [67, 72, 71, 72]
    assert melody.start_step == 12 and melody.bar_offset_steps == 12
    assert melody.key_sharps == 1 and round(melody.tempo_bpm) == 152
    assert melody.metadata()[4, 1] == 1  # the downbeat after the pickup
    assert melody.n_steps == 20


def test_three_four_and_estimated_key(tmp_path):
    notes = [(i, 1, p) for i, p in enumerate([62, 66, 69, 74, 73, 71, 69, 67, 66, 64, 62])]
    path = midi_file(tmp_path / "m.mid", notes,
                     extra_meta=[mido.MetaMessage("time_signature", numerator=3,
                                                  denominator=4)])
    melody = read_melody(path)
    assert melody.steps_per_bar == 12
    assert melody.key_sharps == 2  # D major, estimated
    assert any("estimated" in w for w in melody.warnings)


def test_chords_keep_their_top_note(tmp_path):
    path = midi_file(tmp_path / "m.mid", [(0, 1, [60, 64, 67]), (1, 1, 65), (2, 2, [59, 62])])
    melody = read_melody(path)
    assert onset_pitches(melody.soprano) == [67, 65, 62]
    assert any("chord" in w for w in melody.warnings)


def test_first_monophonic_channel_is_the_melody(tmp_path):
    # Type 0: channel 1 carries block chords, channel 2 the tune.
    notes = [(0, 2, [48, 52, 55]), (0, 1, 72), (1, 1, 74), (2, 2, [47, 50, 55]), (2, 2, 71)]
    path = midi_file(tmp_path / "m.mid", notes, file_type=0,
                     channel=lambda p: 1 if p >= 70 else 0)
    melody = read_melody(path)
    assert onset_pitches(melody.soprano) == [72, 74, 71]


def test_bundled_melody_reads_with_fermatas():
    melody = read_melody(BUNDLED_MELODY)
    assert len(onset_pitches(melody.soprano)) == 32
    assert melody.key_sharps == 1 and melody.steps_per_bar == 16
    fermata_notes = [s for s in np.flatnonzero(melody.soprano >= 0) if melody.fermatas[s]]
    assert len(fermata_notes) == 4


@pytest.mark.parametrize("content, name, message", [
    (b"", "empty.mid", "not a readable MIDI"),
    (b"hello, not a midi file at all", "text.mid", "not a readable MIDI"),
    (b"<score-partwise><part><measure>", "broken.musicxml", "not a readable MusicXML"),
    (b"abc", "melody.txt", "not a MIDI"),
])
def test_bad_files_get_one_line_errors(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ScoreFileError, match=message) as info:
        read_melody(path)
    assert "\n" not in str(info.value)


def test_midi_without_notes(tmp_path):
    path = midi_file(tmp_path / "silent.mid", [])
    with pytest.raises(ScoreFileError, match="no notes"):
        read_melody(path)


def test_melody_out_of_range_moves_by_octaves():
    melody = Melody(soprano=np.array([43, HOLD_PITCH, 47, 50], dtype=np.int16))
    fit_soprano_range(melody)
    assert onset_pitches(melody.soprano) == [67, 71, 74]
    assert any("moved up 2 octave" in w for w in melody.warnings)


def four_voices():
    H = HOLD_PITCH
    return np.array([[67, H, H, H, 72, H, 71, H], [62, H, H, H, 64, H, 62, H],
                     [59, H, H, H, 55, H, 55, H], [43, H, H, H, 48, H, 43, H]],
                    dtype=np.int16)


def test_midi_output_has_a_track_and_channel_per_voice(tmp_path):
    raw = four_voices()
    melody = Melody(soprano=raw[0], start_step=12, tempo_bpm=100)
    write_midi(raw, melody, tmp_path / "out.mid")
    midi = mido.MidiFile(tmp_path / "out.mid")
    assert [t.name for t in midi.tracks[1:]] == ["Soprano", "Alto", "Tenor", "Bass"]
    for channel, track in enumerate(midi.tracks[1:]):
        tick, onsets = 0, []
        for message in track:
            tick += message.time
            if message.type == "note_on":
                assert message.channel == channel
                onsets.append((tick, message.note))
        expected = [((12 + s) * 120, p) for s, _, p in voice_notes(raw)[channel]]
        assert onsets == expected


def test_musicxml_output_reads_back_as_four_parts(tmp_path):
    from music21 import converter

    raw = four_voices()
    fermatas = np.zeros(8, dtype=bool)
    fermatas[6:] = True
    melody = Melody(soprano=raw[0], fermatas=fermatas, key_sharps=1, bar_offset_steps=8)
    write_musicxml(raw, melody, tmp_path / "out.musicxml")
    score = converter.parse(tmp_path / "out.musicxml")
    assert [p.partName for p in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    for v, part in enumerate(score.parts):
        pitches = [n.pitch.midi for n in part.flatten().notes]
        assert pitches == [p for _, _, p in voice_notes(raw)[v]]
    last = list(score.parts[0].flatten().notes)[-1]
    assert any(type(e).__name__ == "Fermata" for e in last.expressions)
