"""Melody files a careless or hostile user could hand Kantor: refused in one line while
reading (before the grid exists), within bounded memory, never through music21's pickle
cache; titles any script can write."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
import zlib

import mido
import numpy as np
import pytest

from harness.hostile import HOSTILE_FILES, largest_midi, largest_musicxml, musicxml
from kantor.bridges.scorefiles import (
    CLI_LIMITS,
    SERVICE_LIMITS,
    ScoreFileError,
    midi_bytes,
    read_melody,
    read_melody_bytes,
)
from kantor.engine.chorale.encoding import HOLD_PITCH
from kantor.engine.models import BUNDLED_MELODY

KANTOR = [sys.executable, "-m", "kantor.bridges.cli"]


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
@pytest.mark.parametrize("limits", [SERVICE_LIMITS, CLI_LIMITS], ids=["service", "cli"])
def test_hostile_files_are_refused_in_one_line(name, limits):
    data, kind, expected = HOSTILE_FILES[name]
    with pytest.raises(ScoreFileError) as info:
        read_melody_bytes(data, kind, name, limits)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}: ")
    assert expected in message.removeprefix(f"{name}: "), message


def test_the_largest_legal_uploads_are_read():
    for data, kind in ((largest_midi(), "midi"), (largest_musicxml(), "musicxml")):
        assert len(data) <= SERVICE_LIMITS.max_bytes
        melody = read_melody_bytes(data, kind, "big", SERVICE_LIMITS)
        assert melody.n_steps == SERVICE_LIMITS.max_steps


def test_limits_hold_at_the_edge():
    # 64 bars of whole notes are taken; one more bar is refused, and says so
    read_melody_bytes(musicxml(64), "musicxml", "edge", SERVICE_LIMITS)
    with pytest.raises(ScoreFileError, match="lasts 1040 16ths; at most 1024"):
        read_melody_bytes(musicxml(65), "musicxml", "edge", SERVICE_LIMITS)
    with pytest.raises(ScoreFileError, match="over 1000000 bytes"):
        read_melody_bytes(b"MThd" + bytes(1_000_000), "midi", "big", SERVICE_LIMITS)


def test_mxl_bombs_are_read_no_further_than_the_limit(tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("score.musicxml", b" " * (CLI_LIMITS.max_bytes + 10))  # ~16 KB zipped
    path = tmp_path / "bomb.mxl"
    path.write_bytes(archive.getvalue())
    assert path.stat().st_size < 100_000
    with pytest.raises(ScoreFileError, match=r"inside the \.mxl is over"):
        read_melody(path)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as good:
        good.writestr("META-INF/container.xml", '<container><rootfiles><rootfile '
                      'full-path="tune.musicxml"/></rootfiles></container>')
        good.writestr("tune.musicxml", musicxml(4))
    path.write_bytes(archive.getvalue())
    assert read_melody(path).n_steps == 64


def test_non_latin1_titles_are_written_as_utf8(tmp_path):
    melody = read_melody_bytes(musicxml(2, title="Hymn Ω"), "musicxml", "x.musicxml")
    assert melody.title == "Hymn Ω"
    raw = np.stack([melody.soprano, melody.soprano - 5, melody.soprano - 12,
                    melody.soprano - 24]).astype(np.int16)
    raw[raw < 0] = HOLD_PITCH
    data = midi_bytes(raw, melody)
    assert "Hymn Ω".encode() in data
    name = next(m.name for m in mido.MidiFile(file=io.BytesIO(data)).tracks[0]
                if m.type == "track_name")
    assert name.encode("latin-1").decode("utf-8") == "Hymn Ω"


def test_cli_refuses_hostile_files_in_one_line(tmp_path):
    for name in ("one-huge-note.mid", "100k-notes.mid", "tpb-0.mid", "smpte.mid",
                 "tempo-0.mid", "key-40-05.mid", "huge-duration.musicxml",
                 "8000-measures.musicxml"):
        data, _, expected = HOSTILE_FILES[name]
        (tmp_path / name).write_bytes(data)
        result = subprocess.run([*KANTOR, "harmonize", name, "-o", "out.mid"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kantor: error:"), result.stderr
        assert expected in lines[0]
        assert not (tmp_path / "out.mid").exists()


def test_cli_writes_a_file_name_outside_latin1_as_the_title(tmp_path):
    from tests.test_scorefiles import midi_file

    melody = midi_file(tmp_path / "Hymn Ω.mid", [(0, 1, 72), (1, 1, 71), (2, 2, 72)])
    result = subprocess.run([*KANTOR, "harmonize", melody.name, "-o", "out.mid",
                             "--iterations", "2", "--chains", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Hymn Ω".encode() in (tmp_path / "out.mid").read_bytes()


class _Planted:
    """A pickle that makes a folder when loaded: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_musicxml_is_never_read_from_musics21s_pickle_cache(tmp_path):
    from music21 import converter

    melody = tmp_path / "tune.musicxml"
    melody.write_bytes(BUNDLED_MELODY.read_bytes())
    marker = tmp_path / "pickle-ran"
    # where music21 looks for this path's cached parse (its scratch folder in the
    # system temp directory), newer than the file, as another user could leave it
    cached = converter.PickleFilter(melody).getPickleFp(zipType="gz")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(zlib.compress(pickle.dumps(_Planted(str(marker)))))
    future = melody.stat().st_mtime + 3600
    os.utime(cached, (future, future))
    try:
        result = subprocess.run([*KANTOR, "harmonize", str(melody), "-o", "out.mid",
                                 "--iterations", "2", "--chains", "1"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert not marker.exists(), "kantor harmonize loaded music21's cached pickle"
        # the plant is real: music21's own parse by path runs it
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from music21 import converter\n"
             "try: converter.parse(sys.argv[1])\nexcept Exception: pass", str(melody)],
            capture_output=True, text=True, timeout=120)
        assert marker.exists(), probe.stderr
    finally:
        cached.unlink(missing_ok=True)


def test_peak_memory_per_harmonise_request_is_bounded():
    """Every hostile file and the largest legal uploads through the service's own request
    path, 16 chains (the most a request may ask for), in a process of its own."""
    result = subprocess.run([sys.executable, "-m", "tests.request_memory"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    harmonised = [name for name, r in report["requests"].items()
                  if r["outcome"].startswith("harmonised")]
    assert len(harmonised) == 4, report  # both largest uploads, both output formats
    for name, request in report["requests"].items():
        assert request["peak_growth_mb"] <= 500, (name, request)
        if name.split(" -> ")[0] in HOSTILE_FILES:
            assert request["outcome"].startswith("refused"), (name, request)
            assert request["peak_growth_mb"] <= 50, (name, request)
