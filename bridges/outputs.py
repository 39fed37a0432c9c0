"""Output files written whole or not at all.

Every file Kantor writes for a user (a harmonisation's MIDI or MusicXML, ``say -o``'s WAV)
goes to a temporary file beside the target, is flushed to disk, and only then renamed over
the target: a full disk, a killed process or an error midway leaves the old file (or
none), never a truncated one. Targets that are not regular files (``/dev/null``, a FIFO)
cannot be renamed over and are written directly.

    check_output(path, inputs=[melody])     # before any work: one-line OutputError
    write_atomically(path, data)            # bytes -> file
    with AtomicPath(path) as temporary:     # a library that writes by path (libsndfile)
        write_to(temporary)
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path


class OutputError(OSError):
    """An output that cannot be written; the message is one line for the user."""


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """``path`` as a Path, after refusing what can be known before writing: a directory,
    one of ``inputs`` (it would be overwritten), or a folder that cannot be made."""
    path = Path(path)
    if str(path).endswith(os.sep) or path.is_dir():
        raise OutputError(f"{path}: is a directory; name a file to write")
    for source in inputs:
        source = Path(source)
        same = False
        with contextlib.suppress(OSError):
            same = path.exists() and os.path.samefile(path, source)
        if same or path.resolve() == source.resolve():
            raise OutputError(f"{path}: is the input file; write the result elsewhere")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {_reason(error)}") from None
    return path


def _writes_in_place(path: Path) -> bool:
    """Whether ``path`` exists and is not a regular file (a device, a FIFO)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class AtomicPath:
    """A temporary path beside ``path``; on a clean exit it is flushed and renamed over
    ``path``, on an exception (or :meth:`discard`) removed. OutputError in one line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.temporary: Path | None = None
        self._discarded = False

    def __enter__(self) -> Path:
        if _writes_in_place(self.path):
            return self.path
        try:
            handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                            dir=self.path.parent or ".")
        except OSError as error:
            raise OutputError(f"cannot write {self.path}: {_reason(error)}") from None
        os.close(handle)
        self.temporary = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.temporary, 0o666 & ~umask)  # as a plain open() would have made it
        return self.temporary

    def discard(self) -> None:
        """Keep the target as it was (e.g. the user cancelled)."""
        self._discarded = True

    def __exit__(self, kind, value, traceback) -> None:
        if self.temporary is None:
            return
        if kind is not None or self._discarded:
            with contextlib.suppress(OSError):
                self.temporary.unlink()
            return
        try:
            with open(self.temporary, "rb+") as file:
                os.fsync(file.fileno())  # on disk before the rename makes it visible
            os.replace(self.temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                self.temporary.unlink()
            raise OutputError(f"cannot write {self.path}: {_reason(error)}") from None


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (OutputError in one line)."""
    path = Path(path)
    try:
        with AtomicPath(path) as temporary, open(temporary, "wb") as file:
            file.write(data)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {path}: {_reason(error)}") from None
