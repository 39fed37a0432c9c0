"""Output files as users get them wrong, and as disks fail: one-line errors (exit 2), and
a target that is whole or untouched, never truncated. Full and read-only filesystems are
real (small tmpfs mounts), not mocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kantor.bridges.outputs import OutputError, check_output, write_atomically
from kantor.engine.models import BUNDLED_MELODY

KANTOR = [sys.executable, "-m", "kantor.bridges.cli"]
QUICK = ["--iterations", "2", "--chains", "1"]


def kantor(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*KANTOR, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kantor: error:"), result.stderr
    assert expected in lines[0], lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def small_fs(tmp_path):
    """mount(options) -> a fresh tmpfs folder; unmounted afterwards."""
    mounted = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_check_output_refuses_what_it_can_know(tmp_path):
    melody = tmp_path / "tune.mid"
    melody.write_bytes(b"MThd")
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path)
    with pytest.raises(OutputError, match="is the input file"):
        check_output(melody, inputs=[melody])
    with pytest.raises(OutputError, match="is the input file"):  # the same file by a link
        (tmp_path / "link.mid").symlink_to(melody)
        check_output(tmp_path / "link.mid", inputs=[melody])
    assert check_output(tmp_path / "new" / "out.mid") == tmp_path / "new" / "out.mid"
    write_atomically("/dev/null", b"not a regular file: written in place")
    with pytest.raises(OutputError, match="No space left"):
        write_atomically("/dev/full", b"x" * 10_000)


def test_harmonize_refuses_a_directory_and_its_own_input(tmp_path):
    (tmp_path / "folder.mid").mkdir()
    one_line_error(kantor("harmonize", "-o", "folder.mid", *QUICK, cwd=tmp_path),
                   "is a directory")
    melody = tmp_path / "tune.musicxml"
    melody.write_bytes(BUNDLED_MELODY.read_bytes())
    one_line_error(kantor("harmonize", melody, "-o", "tune.musicxml", *QUICK, cwd=tmp_path),
                   "is the input file")
    assert melody.read_bytes() == BUNDLED_MELODY.read_bytes()
    one_line_error(kantor("harmonize", "-o", "/proc/kantor.mid", *QUICK, cwd=tmp_path),
                   "/proc/kantor.mid")


def test_harmonize_on_read_only_and_full_filesystems(tmp_path, small_fs):
    read_only = small_fs("size=1m,ro")
    one_line_error(kantor("harmonize", "-o", read_only / "out.mid", *QUICK, cwd=tmp_path),
                   "Read-only file system")
    full = small_fs("size=16k")
    old = b"the previous version of the file, kept whole"
    (full / "out.musicxml").write_bytes(old)
    one_line_error(kantor("harmonize", "-o", full / "out.musicxml", *QUICK, cwd=tmp_path),
                   "No space left on device")
    assert (full / "out.musicxml").read_bytes() == old
    assert leftovers(full) == []


def test_say_to_a_full_disk_leaves_no_partial_wav(tmp_path, small_fs):
    full = small_fs("size=64k")  # 1.4 s of 24 kHz 16-bit audio
    text = "This sentence is long enough to fill a very small disk. " * 3
    one_line_error(kantor("say", text, "-o", full / "speech.wav", cwd=tmp_path),
                   "speech.wav")
    assert sorted(p.name for p in full.iterdir()) == []
    one_line_error(kantor("say", "hello", "-o", tmp_path, cwd=tmp_path), "is a directory")
    result = kantor("say", "Hello there.", "-o", full / "short.wav", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (full / "short.wav").read_bytes()[:4] == b"RIFF" and leftovers(full) == []
