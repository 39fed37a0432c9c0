"""The speech engines the TTS benchmark compares, each behind one small timing surface.

Every engine renders one sentence with :meth:`render` and returns a :class:`Rendering`
(audio as float32 mono, its rate in Hz, wall seconds, and seconds to the first audio).
External engines (Festival, flite, espeak-ng) run as one process per sentence pinned to
CPU 0 with ``taskset`` when it exists: they write a whole file, so their first audio is
the end of the process. Each is also timed warm with :meth:`render_batch` (every sentence
in one process, start-up paid once) next to its bare :meth:`startup_s`. Kantor runs in
process, pinned to CPU 0 as well, and its first audio is the first chunk its
``Voice.stream`` yields.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

FESTIVAL_VOICE = "cmu_us_slt_arctic_hts"


class EngineError(RuntimeError):
    """An engine is missing or failed on a sentence."""


@dataclass(frozen=True)
class Rendering:
    """One synthesised sentence: ``audio`` float32 mono at ``rate`` Hz; times in seconds."""

    audio: np.ndarray
    rate: int
    wall_s: float
    first_audio_s: float

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.rate

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds per second of audio."""
        return self.wall_s / max(self.duration_s, 1e-9)


def _pinned(command: list[str]) -> list[str]:
    """``command`` on CPU 0 only, so every engine gets the same single core."""
    return ["taskset", "-c", "0", *command] if shutil.which("taskset") else command


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ExternalEngine:
    """A command-line synthesiser that writes one WAV per process."""

    name = "external"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def command(self, text: str, text_file: Path, wav: Path) -> list[str]:
        raise NotImplementedError

    def render(self, text: str) -> Rendering:
        """Synthesise ``text`` in a fresh process; wall time includes process start-up."""
        text_file, wav = self.workdir / f"{self.name}.txt", self.workdir / f"{self.name}.wav"
        text_file.write_text(text + "\n")
        wav.unlink(missing_ok=True)
        command = _pinned(self.command(text, text_file, wav))
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - start
        if done.returncode != 0 or not wav.exists():
            raise EngineError(f"{self.name} failed on {text!r}: {done.stderr.strip()[-300:]}")
        audio, rate = _read_mono(wav)
        return Rendering(audio, rate, wall, wall)

    def version(self) -> str:
        return ""

    def _timed(self, command: list[str], timeout: float) -> float:
        """Wall seconds of ``command`` pinned to CPU 0; raises :class:`EngineError` on failure."""
        start = time.perf_counter()
        done = subprocess.run(_pinned(command), capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise EngineError(f"{self.name} failed: {done.stderr.strip()[-300:]}")
        return wall

    def startup_s(self, repeats: int = 5) -> float:
        """Median seconds for a process that reads an empty text and exits (voice loaded)."""
        text_file, wav = self.workdir / "empty.txt", self.workdir / "empty.wav"
        text_file.write_text("")
        command = self.command("", text_file, wav)
        return float(np.median([self._timed(command, 120) for _ in range(repeats)]))

    def render_batch(self, texts: Sequence[str]) -> tuple[float, float]:
        """Every sentence of ``texts`` in one process, one per line of one text file.

        Returns (wall seconds, seconds of audio written). The engine splits the file into
        utterances itself; for flite and espeak-ng the one WAV lasts as long as the
        per-sentence WAVs together (checked on three sentences: 4.65 s both ways).
        """
        text_file, wav = self.workdir / f"{self.name}-batch.txt", self.workdir / "batch.wav"
        text_file.write_text("".join(text + "\n" for text in texts))
        wav.unlink(missing_ok=True)
        wall = self._timed(self.command("", text_file, wav), 60 + 20 * len(texts))
        if not wav.exists():
            raise EngineError(f"{self.name} wrote no batch file")
        audio, rate = _read_mono(wav)
        return wall, len(audio) / rate


class Festival(ExternalEngine):
    """Festival's HTS SLT voice through ``text2wave`` (the teacher of Kantor's voice)."""

    name = "festival"

    def command(self, text: str, text_file: Path, wav: Path) -> list[str]:
        return ["text2wave", "-eval", f"(voice_{FESTIVAL_VOICE})", "-o", str(wav),
                str(text_file)]

    def version(self) -> str:
        done = subprocess.run(["festival", "--version"], capture_output=True, text=True)
        return done.stdout.strip()

    def startup_s(self, repeats: int = 5) -> float:
        """Median seconds for a Festival process that only loads the voice and exits."""
        script = self.workdir / "startup.scm"
        script.write_text(f"(voice_{FESTIVAL_VOICE})\n")
        return float(np.median([self._timed(["festival", "-b", str(script)], 120)
                                for _ in range(repeats)]))

    def render_batch(self, texts: Sequence[str]) -> tuple[float, float]:
        """All ``texts`` in one ``festival -b`` script: (wall seconds, seconds of audio)."""
        wavs = [self.workdir / f"batch-{k}.wav" for k in range(len(texts))]
        lines = [f"(voice_{FESTIVAL_VOICE})"]
        lines += [f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(t)})) "
                  f"{_scheme_string(str(w))} 'riff)" for t, w in zip(texts, wavs, strict=True)]
        script = self.workdir / "batch.scm"
        script.write_text("\n".join(lines) + "\n")
        wall = self._timed(["festival", "-b", str(script)], 60 + 20 * len(texts))
        if not all(w.exists() for w in wavs):
            raise EngineError("festival batch wrote fewer files than sentences")
        return wall, float(sum(len(a) / rate for a, rate in map(_read_mono, wavs)))


class Flite(ExternalEngine):
    """flite with the best SLT voice it ships (``slt``; ``kal`` when slt is missing)."""

    name = "flite"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
        self.voice = "slt" if "slt" in listed.split() else "kal"

    def command(self, text: str, text_file: Path, wav: Path) -> list[str]:
        return ["flite", "-voice", self.voice, "-f", str(text_file), "-o", str(wav)]

    def version(self) -> str:
        done = subprocess.run(["flite", "--version"], capture_output=True, text=True)
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


class EspeakNg(ExternalEngine):
    """espeak-ng's formant synthesiser, American English voice."""

    name = "espeak-ng"
    voice = "en-us"

    def command(self, text: str, text_file: Path, wav: Path) -> list[str]:
        return ["espeak-ng", "-v", self.voice, "-w", str(wav), "-f", str(text_file)]

    def version(self) -> str:
        done = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
        return done.stdout.strip()


class KantorVoice:
    """Kantor's streaming voice in this process, one ONNX Runtime thread, pinned to CPU 0.

    Raises :class:`EngineError` when the voice is not built yet.
    """

    def __init__(self, vocoder: str = "auto", name: str = "kantor") -> None:
        self.name = name
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            from kantor.engine.speech.voice import Voice
        except ImportError as error:
            raise EngineError(f"Kantor's voice is not available: {error}") from error
        parameters = inspect.signature(Voice.load).parameters
        threads = {name: 1 for name in ("threads", "num_threads", "intra_op_num_threads")
                   if name in parameters}
        try:
            self.voice = Voice.load(**threads, vocoder=vocoder)
        except (OSError, ValueError, RuntimeError) as error:
            raise EngineError(f"Kantor's voice did not load: {error}") from error
        self.rate = int(getattr(self.voice, "sample_rate", 24000))
        self.threads = threads

    def render(self, text: str) -> Rendering:
        """Text in -> all audio out; first audio = the first chunk ``stream`` yields."""
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        try:
            start = time.perf_counter()
            stream = self.voice.stream(text)
            chunks = [np.asarray(next(stream), dtype=np.float32)]
            first = time.perf_counter() - start
            chunks.extend(np.asarray(c, dtype=np.float32) for c in stream)
            wall = time.perf_counter() - start
        finally:
            os.sched_setaffinity(0, allowed)
        return Rendering(np.concatenate([c.reshape(-1) for c in chunks]), self.rate, wall, first)

    def version(self) -> str:
        return f"kantor.engine.speech.voice, {type(self.voice.vocoder).__name__}"


def external_engines(workdir: Path) -> list[ExternalEngine]:
    """Festival, flite and espeak-ng, writing their files under ``workdir``."""
    missing = [tool for tool in ("text2wave", "festival", "flite", "espeak-ng")
               if shutil.which(tool) is None]
    if missing:
        raise EngineError(f"missing engines: {', '.join(missing)} (apt-get install festival "
                          "festvox-us-slt-hts flite espeak-ng)")
    return [Festival(workdir), Flite(workdir), EspeakNg(workdir)]


def scratch_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for the engines' files, removed on exit; RAM-backed when there is
    one, so file writes do not time the disk."""
    fast = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="kantor-tts-", dir=fast)
