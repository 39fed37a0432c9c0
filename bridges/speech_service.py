"""The speech side of ``kantor serve``: one voice speaking on the service's audio output, and
a fixed pool of voices that stream 16-bit PCM to clients (WebSocket) as it is made.

Every voice shares the same ONNX sessions and front end; each has its own vocoder (its
state runs from chunk to chunk). The pool is made and warmed before the service says
ready, and bounds how many clients synthesise at once: a client beyond it is refused, not
queued, so one busy service never builds an unbounded backlog.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.bridges import audio
from kantor.engine.realtime import LatencyRecorder
from kantor.engine.speech.features import resample_chunks
from kantor.engine.speech.stream import SpeechStream, SpeechStreamError
from kantor.engine.speech.text import TextError
from kantor.engine.speech.voice import PITCH_RANGE, RATE_RANGE, Voice, VoiceError, parse_phonemes

log = logging.getLogger(__name__)

# Output rates a streaming client may ask for (the voice's own is 24 kHz).
STREAM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
# Words a text may become when read out, per character allowed: English prose is ~0.2
# words a character, but "$$$..." is a word a character (5000 of them: 29 minutes).
WORDS_PER_CHAR = 0.25


class SpeechRequestError(ValueError):
    """A request the service refuses; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SpeechRequest:
    """One thing to say. ``rate`` and ``pitch`` multiply the voice's own."""

    text: str
    rate: float = 1.0
    pitch: float = 1.0
    phonemes: bool = False

    def check(self, max_chars: int) -> None:
        """SpeechRequestError saying what is wrong, if anything."""
        if not isinstance(self.text, str) or not self.text.strip():
            raise SpeechRequestError("nothing to say: the text is empty")
        if len(self.text) > max_chars:
            raise SpeechRequestError(f"the text has {len(self.text)} characters; this "
                                     f"service takes at most {max_chars}", status=413)
        for name, value, (low, high) in (("rate", self.rate, RATE_RANGE),
                                         ("pitch", self.pitch, PITCH_RANGE)):
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value) or not low <= value <= high:
                raise SpeechRequestError(f"{name} must be a number from {low} to {high}")
        if self.phonemes:
            try:  # cheap, and refused now rather than after the request was accepted
                if not parse_phonemes(self.text):
                    raise SpeechRequestError("nothing to say: no phonemes in the text")
            except VoiceError as problem:
                raise SpeechRequestError(str(problem)) from None


class SpeechService:
    """Speech for the service: ``speak`` on the audio output, ``stream_pcm`` to clients."""

    def __init__(self, *, output: bool = True, device: str | int | None = None,
                 hostapi: str | None = None, blocksize: int = 1024,
                 sample_rate: int | None = None, clients: int = 4, queue_size: int = 64,
                 max_chars: int = 5000, assets: Path | None = None,
                 vocoder: str = "auto") -> None:
        self.output_enabled = output
        self.assets = assets  # the voice models' folder (default: the shipped ones)
        self.vocoder = vocoder  # auto, neural or world (engine/speech/neural_vocoder.py)
        self.device, self.hostapi = device, hostapi
        self.blocksize, self.sample_rate = blocksize, sample_rate
        self.clients = clients
        self.queue_size = queue_size
        self.max_chars = max_chars
        self.voice: Voice | None = None
        self.sink: audio.DeviceSink | None = None
        self.stream: SpeechStream | None = None
        # Why the audio output is gone (its JACK server stopped), or None. PortAudio then
        # hangs in any call on that stream (stop, abort, terminate), so it is left alone
        # until the process exits; clients still get speech over the WebSocket.
        self.output_lost: str | None = None
        self._pool: queue.SimpleQueue[Voice] = queue.SimpleQueue()
        self.ws_first_audio = LatencyRecorder(4096)  # request -> first PCM handed to a client
        self.ws_requests = 0
        self.ws_cancelled = 0
        self.ws_refused = 0  # clients turned away: every voice busy
        self.ws_failed = 0
        self.speak_requests = 0
        self.speak_dropped_sentences = 0
        self._count_lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Load and warm the voices and open the audio output (AudioOutputError if it
        cannot be opened)."""
        started = time.perf_counter()
        self.voice = Voice.load(self.assets, vocoder=self.vocoder)
        for seed in range(self.clients):  # the same vocoder as the voice that loaded
            voice = Voice(self.voice.models, self.voice.front_end, seed=seed + 1,
                          vocoder=self.voice.vocoder.name)
            for _ in voice.stream("Ready."):  # its vocoder's first run, before any client
                pass
            self._pool.put(voice)
        if self.output_enabled:
            self.sink = audio.DeviceSink(self.device, hostapi=self.hostapi,
                                         blocksize=self.blocksize, samplerate=self.sample_rate)
            self.stream = SpeechStream(self.voice, self.sink.samplerate,
                                       queue_size=self.queue_size)
            self.sink.start(self.stream)
        log.debug("speech ready in %.2f s (%d streaming voices)",
                  time.perf_counter() - started, self.clients)

    def lose_output(self, reason: str) -> None:
        """The audio output's server is gone: refuse to speak on it from now on and never
        touch its stream again (a PortAudio call on it would never return)."""
        self.output_lost = reason
        if self.stream is not None:
            self.stream.cancel()

    def stop(self, drain_s: float = 0.0) -> None:
        """Let queued speech finish for up to ``drain_s`` seconds, cancel the rest and
        close the output (an output that was lost is abandoned, not closed)."""
        if self.output_lost is not None:
            self.sink = None
        if self.stream is not None:
            if drain_s > 0 and self.sink is not None and \
                    not self.stream.wait_idle(timeout=drain_s):
                log.info("speech still queued after %.1f s: cancelled", drain_s)
            self.stream.cancel()
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.stream is not None:
            self.stream.close()

    # -- the service's own output ----------------------------------------------------------------

    def check_length(self, request: SpeechRequest) -> None:
        """SpeechRequestError (413) for a text that reads out as more words than
        ``max_chars * WORDS_PER_CHAR``, or 422 for one the front end cannot read:
        normalising only, a few ms for 5000 characters, nothing synthesised."""
        request.check(self.max_chars)
        if request.phonemes:
            return
        try:
            words = sum(len(phrase.words) for phrase in self.voice.front_end.normalize(
                request.text))
        except TextError as problem:
            raise SpeechRequestError(str(problem)) from None
        limit = max(1, int(self.max_chars * WORDS_PER_CHAR))
        if words > limit:
            raise SpeechRequestError(f"the text reads out as {words} words; this service "
                                     f"speaks at most {limit} per request", status=413)

    def speak(self, request: SpeechRequest) -> dict:
        """Queue ``request`` on the audio output, sentence by sentence; what was queued and
        what was dropped because the queue was full."""
        self.check_length(request)
        if self.stream is None:
            raise SpeechRequestError("this service has no audio output (started with "
                                     "--no-audio); stream speech over /v1/speech/stream",
                                     status=409)
        if self.output_lost is not None:
            raise SpeechRequestError(f"the audio output is gone ({self.output_lost}); "
                                     "restart kantor serve to speak aloud again (streaming "
                                     "over /v1/speech/stream still works)", status=503)
        sentences = [request.text] if request.phonemes else \
            [s for s in self.voice.split(request.text) if s.strip()]
        if not sentences:
            raise SpeechRequestError("nothing to say: the text has no words")
        queued = 0
        for sentence in sentences:
            try:
                accepted = self.stream.say(sentence, rate=request.rate, pitch=request.pitch,
                                           phonemes=request.phonemes)
            except SpeechStreamError as error:  # an earlier request's failure, raised once
                log.warning("%s", error)
                accepted = self.stream.say(sentence, rate=request.rate, pitch=request.pitch,
                                           phonemes=request.phonemes)
            if not accepted:
                break
            queued += 1
        dropped = len(sentences) - queued
        with self._count_lock:
            self.speak_requests += 1
            self.speak_dropped_sentences += dropped
        if queued == 0:
            raise SpeechRequestError(f"the speech queue is full ({self.queue_size} "
                                     "sentences waiting): nothing queued", status=503)
        if dropped:
            log.warning("speech queue full: %d of %d sentences dropped", dropped,
                        len(sentences))
        return {"sentences": len(sentences), "queued": queued, "dropped": dropped}

    def cancel(self) -> None:
        """Silence the output now and forget what is queued."""
        if self.stream is not None:
            self.stream.cancel()

    # -- streaming to clients -----------------------------------------------------------------

    def acquire_voice(self) -> Voice | None:
        """A free streaming voice, or None when every one is busy (counted)."""
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            with self._count_lock:
                self.ws_refused += 1
            return None

    def release_voice(self, voice: Voice) -> None:
        self._pool.put(voice)

    def stream_pcm(self, voice: Voice, request: SpeechRequest, sample_rate: int,
                   cancelled: threading.Event) -> Iterator[bytes]:
        """16-bit little-endian mono PCM at ``sample_rate`` Hz, chunk by chunk as ``voice``
        makes it; stops early once ``cancelled`` is set."""
        chunks = resample_chunks(voice.stream(request.text, rate=request.rate,
                                              pitch=request.pitch, phonemes=request.phonemes),
                                 voice.sample_rate, sample_rate)
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    return
                if chunk.size:
                    yield audio.to_pcm16(chunk).tobytes()
        finally:
            chunks.close()

    def record_stream(self, first_audio_s: float | None, cancelled: bool, failed: bool
                      ) -> None:
        """Count one finished client stream."""
        with self._count_lock:
            self.ws_requests += 1
            self.ws_cancelled += cancelled
            self.ws_failed += failed
            if first_audio_s is not None:
                self.ws_first_audio.record(first_audio_s)

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict:
        """Output, queue and client counters; times in milliseconds."""
        result: dict = {"voice_sample_rate": self.voice.sample_rate if self.voice else None,
                        "output": None, "speak_requests": self.speak_requests,
                        "speak_dropped_sentences": self.speak_dropped_sentences}
        if self.stream is not None and self.sink is not None:
            stats = self.stream.stats()
            first = np.array(stats.first_audio_out_s[-256:])
            result["output"] = {
                "device": self.sink.device.name, "hostapi": self.sink.device.hostapi,
                "ports": self.sink.port_names if self.output_lost is None else [],
                "lost": self.output_lost, "sample_rate": self.sink.samplerate,
                "speaking": self.stream.busy,
                "utterances_done": stats.utterances_done, "cancelled": stats.cancelled,
                "underflows": stats.underflows, "device_underruns": self.sink.device_underruns,
                "queue_full_drops": stats.drops, "failed": stats.failed,
                "first_audio_ms": _percentiles_ms(first)}
        result["streaming"] = {
            "clients_max": self.clients, "clients_busy": self.clients - self._pool.qsize(),
            "requests": self.ws_requests, "cancelled": self.ws_cancelled,
            "refused": self.ws_refused, "failed": self.ws_failed,
            "first_audio_ms": self.ws_first_audio.percentiles_ms()}
        return result


def _percentiles_ms(seconds: np.ndarray) -> dict[str, float]:
    if seconds.size == 0:
        return {}
    return {"p50": float(np.percentile(seconds, 50) * 1000),
            "p99": float(np.percentile(seconds, 99) * 1000),
            "max": float(seconds.max() * 1000)}
