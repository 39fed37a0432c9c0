"""Where speech goes: an audio device (PortAudio via sounddevice), a WAV file, or raw PCM.

    sink = DeviceSink("pulse", blocksize=1024)      # or WavSink("out.wav", rate), RawSink(...)
    stream = SpeechStream(voice, output_rate=sink.samplerate)
    stream.say("Hello.")
    sink.play(stream)                                # returns when all of it was played

``DeviceSink``'s callback does nothing but ``SpeechStream.fill`` (it never blocks and counts
device underruns apart from the stream's own underflows). File sinks pull samples as
soon as they are synthesised, so they never underflow and contain no gaps.

PortAudio scans devices once, when sounddevice is imported; a JACK server started later
(``--start-jack``) appears only after ``rescan()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import sounddevice as _sd
import soundfile as _sf

from kantor.bridges.outputs import AtomicPath, OutputError, check_output
from kantor.engine.speech.stream import SpeechStream

# How to get audio out when no device works: every device error says it.
FILE_HINT = "write a file instead with -o out.wav (or --raw for 16-bit PCM on stdout)"

# PortAudio keeps the pointer it is given as the JACK client name: it must outlive it.
_jack_client_name: ctypes.Array | None = None


class AudioOutputError(RuntimeError):
    """No output device, none matching the request, or it failed to open."""


@dataclass(frozen=True)
class OutputDevice:
    """An output device as PortAudio lists it; ``rate`` is its default rate in Hz."""

    index: int
    name: str
    hostapi: str
    channels: int
    rate: int
    default: bool


def rescan(jack_client_name: str | None = None) -> None:
    """Restart PortAudio so that it sees devices (a JACK server) that appeared since it
    started; with ``jack_client_name``, Kantor's JACK ports are named after it. Call it
    only while no stream is open."""
    global _jack_client_name
    # sounddevice (0.5) has no public way to rescan: its own _terminate/_initialize keep
    # the count its exit handler relies on (Pa_Terminate called directly would leave it
    # off by one, and the exit handler would raise at every exit)
    while _sd._initialized:  # sounddevice counts nested initialisations
        _sd._terminate()
    if jack_client_name:
        try:
            library = ctypes.CDLL(_sd._libname)
            _jack_client_name = ctypes.create_string_buffer(jack_client_name.encode())
            library.PaJack_SetClientName(_jack_client_name)
        except (OSError, AttributeError):  # a PortAudio without JACK: the name is moot
            pass
    _sd._initialize()


def list_devices() -> list[OutputDevice]:
    """Every device with output channels."""
    hostapis = _sd.query_hostapis()
    try:
        default_out = _sd.default.device[1]
    except Exception:  # no default device
        default_out = -1
    defaults = {api["default_output_device"] for api in hostapis}
    devices = []
    for index, info in enumerate(_sd.query_devices()):
        if info["max_output_channels"] > 0:
            devices.append(OutputDevice(index, info["name"], hostapis[info["hostapi"]]["name"],
                                        info["max_output_channels"],
                                        int(info["default_samplerate"]),
                                        index == default_out or (default_out < 0
                                                                 and index in defaults)))
    return devices


def find_device(device: str | int | None = None, hostapi: str | None = None) -> OutputDevice:
    """The output device by index or by (part of) its name, within host APIs whose name
    contains ``hostapi`` ("jack", "alsa", "pulse", "wasapi", ...); the default otherwise."""
    devices = list_devices()
    if hostapi:
        devices = [d for d in devices if hostapi.lower() in d.hostapi.lower()]
    if not devices:
        where = f" on a host API matching '{hostapi}'" if hostapi else ""
        raise AudioOutputError(f"no audio output device found{where}; {FILE_HINT}")
    if device is None or device == "":
        return next((d for d in devices if d.default), devices[0])
    if isinstance(device, int) or str(device).isdigit():
        index = int(device)
        match = [d for d in devices if d.index == index]
    else:
        match = [d for d in devices if str(device).lower() in d.name.lower()]
    if not match:
        names = "; ".join(f"{d.index}: {d.name} ({d.hostapi})" for d in devices)
        raise AudioOutputError(f"no output device matches '{device}' (available: {names}); "
                               f"{FILE_HINT}")
    return match[0]


class DeviceSink:
    """An output stream on a device; its callback pulls from a ``SpeechStream``.

    ``blocksize`` is frames per callback (0: PortAudio picks); ``samplerate`` defaults to
    the device's own, which the speech stream then resamples to. Mono speech goes to the
    first ``channels`` (default: up to 2) channels."""

    def __init__(self, device: str | int | None = None, *, hostapi: str | None = None,
                 blocksize: int = 1024, samplerate: int | None = None,
                 channels: int | None = None, latency: str | float = "low") -> None:
        if blocksize < 0:
            raise AudioOutputError("blocksize must be 0 (automatic) or a number of frames")
        self.device = find_device(device, hostapi)
        self.samplerate = int(samplerate or self.device.rate)
        self.channels = int(channels or min(2, self.device.channels))
        if not 1 <= self.channels <= self.device.channels:
            raise AudioOutputError(f"{self.device.name} has {self.device.channels} output "
                                   f"channels, not {self.channels}")
        self.blocksize = blocksize
        self.latency = latency
        self.device_underruns = 0  # PortAudio's own: the callback came too late
        self._speech: SpeechStream | None = None
        self._output: _sd.OutputStream | None = None

    def start(self, speech: SpeechStream) -> None:
        """Open the device and start calling ``speech.fill``."""
        if speech.output_rate != self.samplerate:
            raise AudioOutputError(f"the speech stream runs at {speech.output_rate} Hz but "
                                   f"the device at {self.samplerate} Hz")
        self._speech = speech
        try:
            self._output = _sd.OutputStream(
                device=self.device.index, samplerate=self.samplerate, channels=self.channels,
                dtype="float32", blocksize=self.blocksize, latency=self.latency,
                callback=self._callback)
            self._output.start()
        except _sd.PortAudioError as error:
            self._output = None
            raise AudioOutputError(f"cannot open '{self.device.name}' "
                                   f"({self.device.hostapi}) at {self.samplerate} Hz: {error}; "
                                   f"{FILE_HINT}") from None

    def _callback(self, outdata: np.ndarray, frames: int, timing, status) -> None:
        if status.output_underflow:
            self.device_underruns += 1
        self._speech.fill(outdata)

    @property
    def output_latency_s(self) -> float:
        """Seconds from a callback to the loudspeaker, as PortAudio reports it."""
        return float(self._output.latency) if self._output is not None else 0.0

    @property
    def port_names(self) -> list[str]:
        """JACK port names of this stream ('<client>:out_<n>'), if on JACK."""
        if "jack" not in self.device.hostapi.lower():
            return []
        try:
            library = ctypes.CDLL(_sd._libname)
            library.PaJack_GetClientName.restype = ctypes.c_int
            name = ctypes.c_char_p()
            library.PaJack_GetClientName(ctypes.byref(name))
            client = name.value.decode()
        except (OSError, AttributeError):
            return []
        return [f"{client}:out_{i}" for i in range(self.channels)]

    def stop(self) -> None:
        """Close the device (what was handed to it but not yet played is cut)."""
        if self._output is not None:
            self._output.stop()
            self._output.close()
            self._output = None

    def play(self, speech: SpeechStream, stop: threading.Event | None = None,
             said: threading.Event | None = None) -> None:
        """Start, wait until everything said has played (once ``said`` is set, if given: a
        feeder may still be queueing text) or ``stop`` is set, and close the device."""
        self.start(speech)
        try:
            while not (speech.idle() and (said is None or said.is_set())):
                if stop is not None and stop.is_set():
                    speech.cancel()
                    return
                time.sleep(0.01)
            # the last block is still on its way through the device's buffers
            time.sleep(self.output_latency_s + 2 * max(self.blocksize, 256) / self.samplerate)
        finally:
            self.stop()


class _FileSink:
    """Writes speech as soon as it is synthesised (a file, or a pipe)."""

    samplerate: int

    def write(self, block: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def write_speech(self, chunks: Iterable[np.ndarray]) -> tuple[int, float | None]:
        """Write float chunks (at this sink's rate) as they are made, straight from the
        voice: a file needs no ring and no real-time pacing. Returns (samples written,
        seconds from the call to the first sample written, None if nothing was)."""
        started = time.perf_counter()
        first, samples = None, 0
        for chunk in chunks:
            if chunk.size:
                self.write(chunk)
                if first is None:
                    first = time.perf_counter() - started
                samples += chunk.size
        return samples, first

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WavSink(_FileSink):
    """A mono sound file (WAV by default; the format follows the suffix), 16-bit PCM
    unless ``subtype`` says otherwise ("FLOAT", "PCM_24", ...). It is written beside the
    target and renamed over it by :meth:`close`, so a failure (a full disk) or
    :meth:`abort` leaves no partial file; AudioOutputError in one line."""

    def __init__(self, path: str | Path, samplerate: int, subtype: str = "PCM_16",
                 inputs: tuple[str | Path, ...] = ()) -> None:
        self.samplerate = int(samplerate)
        try:
            self.path = check_output(path, inputs)
        except OutputError as error:
            raise AudioOutputError(str(error)) from None
        kind = self.path.suffix.lstrip(".").upper()
        if kind not in _sf.available_formats():
            raise AudioOutputError(f"cannot write {self.path}: '{self.path.suffix}' is not a "
                                   "sound file type libsndfile writes (use .wav, .flac, .ogg)")
        self._atomic = AtomicPath(self.path)
        self._file = None
        try:
            temporary = self._atomic.__enter__()
            self._file = _sf.SoundFile(temporary, "w", samplerate=self.samplerate,
                                       channels=1, subtype=subtype, format=kind)
        except (_sf.LibsndfileError, ValueError, TypeError, OSError) as error:
            self.abort()
            raise AudioOutputError(f"cannot write {self.path}: {error}") from None

    def write(self, block: np.ndarray) -> None:
        try:
            self._file.write(block)
        except (_sf.LibsndfileError, OSError, RuntimeError, AssertionError) as error:
            # libsndfile writes less than asked on a full disk (soundfile asserts on it)
            self.abort()
            raise AudioOutputError(f"cannot write {self.path}: "
                                   f"{error or 'the disk took only part of it'}") from None

    def close(self) -> None:
        """Finish the file and put it in place (AudioOutputError if that fails)."""
        if self._file is None:
            return
        try:
            self._file.close()
            self._file = None
            self._atomic.__exit__(None, None, None)
        except (_sf.LibsndfileError, OSError, RuntimeError) as error:
            self.abort()
            raise AudioOutputError(f"cannot write {self.path}: {error}") from None

    def abort(self) -> None:
        """Stop writing and leave the target as it was."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        self._atomic.discard()
        self._atomic.__exit__(None, None, None)


def to_pcm16(block: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 (clipped, rounded, full scale 32767)."""
    return np.round(np.clip(block, -1.0, 1.0) * 32767.0).astype("<i2")


class RawSink(_FileSink):
    """Headerless 16-bit little-endian mono PCM to a binary file (e.g. stdout's buffer)."""

    def __init__(self, output: BinaryIO, samplerate: int) -> None:
        self.output = output
        self.samplerate = int(samplerate)

    def write(self, block: np.ndarray) -> None:
        try:
            self.output.write(to_pcm16(block).tobytes())
        except BrokenPipeError:
            raise AudioOutputError("the raw PCM reader closed the pipe") from None

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.output.flush()


def shutdown() -> None:
    """Stop PortAudio for good (before stopping a JACK server it is connected to: libjack
    aborts the process if PortAudio's exit handler finds its server gone)."""
    while _sd._initialized:
        _sd._terminate()
