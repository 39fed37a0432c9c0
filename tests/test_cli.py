"""The kantor command as a user runs it: files in, files out, one-line errors."""

import subprocess
import sys

import mido
import pytest

from tests.test_scorefiles import midi_file

KANTOR = [sys.executable, "-m", "kantor.bridges.cli"]


def kantor(*args, cwd):
    return subprocess.run([*KANTOR, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_harmonize_writes_midi_and_musicxml(tmp_path):
    melody = midi_file(tmp_path / "tune.mid", [(0, 1, 72), (1, 1, 71), (2, 1, 69),
                                               (3, 1, 67), (4, 2, 69), (6, 2, 67)],
                       extra_meta=[mido.MetaMessage("key_signature", key="C")])
    result = kantor("harmonize", melody, "-o", "out.mid", "-o", "out.musicxml",
                    "--iterations", "10", "--seed", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote out.mid" in result.stdout
    midi = mido.MidiFile(tmp_path / "out.mid")
    assert len(midi.tracks) == 5
    assert (tmp_path / "out.musicxml").read_text().count("<part id=") == 4


def test_same_seed_same_file(tmp_path):
    for name in ("a.mid", "b.mid"):
        assert kantor("harmonize", "-o", name, "--iterations", "8", cwd=tmp_path).returncode == 0
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()


def test_chords_and_low_melodies_are_reported(tmp_path):
    melody = midi_file(tmp_path / "low.mid", [(0, 1, [48, 52]), (1, 1, 50), (2, 2, 48)])
    result = kantor("harmonize", melody, "-o", "out.mid", "--iterations", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "chord note(s) in the melody dropped" in result.stderr
    assert "moved up" in result.stderr


@pytest.mark.parametrize("name, content, message", [
    ("empty.mid", b"", "not a readable MIDI file"),
    ("notes.txt", b"C D E", "not a MIDI"),
    ("bad.musicxml", b"<score-partwise>", "not a readable MusicXML"),
    ("missing.mid", None, "no such file"),
])
def test_bad_input_exits_non_zero_with_one_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = kantor("harmonize", name, "-o", "out.mid", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kantor: error:") and message in lines[0]
    assert not (tmp_path / "out.mid").exists()


def test_silent_midi_and_bad_options(tmp_path):
    silent = midi_file(tmp_path / "silent.mid", [])
    result = kantor("harmonize", silent, cwd=tmp_path)
    assert result.returncode == 2 and "no notes" in result.stderr
    result = kantor("harmonize", "--fix", "alto@x=C4", cwd=tmp_path)
    assert result.returncode == 2 and "pinned notes look like" in result.stderr
    result = kantor("harmonize", "-o", "out.wav", cwd=tmp_path)
    assert result.returncode == 2 and ".mid or .musicxml" in result.stderr
