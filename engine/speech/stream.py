"""Streaming speech: a synthesis thread feeding a ring buffer that an audio callback drains.

    stream = SpeechStream(Voice.load(), output_rate=48000)
    stream.say("Hello there.")            # queued; False if the queue is full
    ...audio callback: stream.fill(out)   # copies what is ready, zero-fills the rest
    stream.cancel()                       # silence at the next callback, queue emptied
    stream.close()

One producer thread takes utterances from a bounded queue, runs the voice's generator,
resamples each chunk to the output rate (soxr, in this thread, never in the callback) and
copies it into a preallocated float32 ring. The consumer - the device callback, or a file
writer through ``pull`` - copies out of the ring and moves only its own read index; the
producer moves only the write index (single producer, single consumer). The one lock guards
the copy-in and ``cancel``; it is never held while synthesising, and the consumer never
takes it.

Each utterance leaves a small record (ring positions where it starts and ends, and when it
was requested, first buffered and first handed out) in preallocated lists, so the consumer
can tell an underflow (an utterance has started playing, is not finished, and the ring ran
dry) from silence between utterances, and time the first audio without allocating.

This module knows no audio device: bridges/audio.py opens one and calls ``fill``.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kantor.engine.speech.features import resample_chunks

# Utterance records kept (a ring); only the last this many appear in the statistics.
RECORDS = 1024


class SpeechStreamError(RuntimeError):
    """A speech stream was misused (closed, bad settings) or its voice failed."""


class Synthesiser(Protocol):
    """What a voice offers the stream (kantor.engine.speech.voice.Voice does)."""

    sample_rate: int

    def stream(self, text: str, *, rate: float = 1.0, pitch: float = 1.0,
               phonemes: bool = False) -> Iterator[np.ndarray]:
        """Float32 mono chunks in [-1, 1] at ``sample_rate`` as they are synthesised."""
        ...


@dataclass
class SpeechStats:
    """Counters of a stream. Times are seconds; sample counts are at the output rate."""

    utterances_done: int
    cancelled: int
    samples_out: int
    underflows: int  # callbacks that came up short while an utterance was playing
    underflow_samples: int
    drops: int  # say() calls refused because the queue was full
    failed: int  # utterances the voice raised an error on
    first_audio_buffered_s: list[float] = field(default_factory=list)  # request -> ring
    first_audio_out_s: list[float] = field(default_factory=list)  # request -> consumer


@dataclass
class _Utterance:
    text: str
    rate: float
    pitch: float
    phonemes: bool
    generation: int
    requested_at: float
    record: int = -1  # index of its record once its first sample is in the ring
    finished: bool = False


class SpeechStream:
    """Queue texts with ``say``; an audio callback pulls samples with ``fill``.

    ``output_rate`` (Hz) is the device's rate; chunks are resampled to it when it differs
    from the voice's. ``buffer_s`` is the ring's length in seconds: how far synthesis may
    run ahead of playback. ``prebuffer_s``: an utterance starts playing only once this much
    of it is ready (or all of it), which rides over the model runs at phrase starts.
    ``queue_size`` bounds the utterances waiting behind the current one.
    """

    def __init__(self, voice: Synthesiser, output_rate: int | None = None, *,
                 buffer_s: float = 4.0, prebuffer_s: float = 0.1, queue_size: int = 64,
                 resample_quality: str = "HQ") -> None:
        self.voice = voice
        self.input_rate = int(voice.sample_rate)
        self.output_rate = int(output_rate or self.input_rate)
        if self.output_rate <= 0 or buffer_s <= 0 or prebuffer_s < 0 or queue_size < 1:
            raise SpeechStreamError("output_rate and buffer_s must be positive, prebuffer_s "
                                    "not negative, queue_size at least 1")
        if prebuffer_s >= buffer_s:
            raise SpeechStreamError("prebuffer_s must be shorter than buffer_s")
        self.capacity = round(buffer_s * self.output_rate)
        self.prebuffer = round(prebuffer_s * self.output_rate)
        self.resample_quality = resample_quality
        self._ring = np.zeros(self.capacity, dtype=np.float32)
        self._ring_column = self._ring[:, None]  # broadcasts mono into (frames, channels)
        # Indices count samples since the start; the ring position is index % capacity.
        self._write = 0  # producer only
        self._read = 0  # consumer only
        self._discard_to = 0  # set by cancel; the consumer skips up to it
        self._write_lock = threading.Lock()
        self._queue: queue.Queue[_Utterance | None] = queue.Queue(maxsize=queue_size)
        self._generation = 0
        self._pending = 0  # said and neither finished nor cancelled
        self._pending_lock = threading.Lock()
        self._current: _Utterance | None = None
        self._paused = False
        self._closed = False
        self._error: BaseException | None = None
        # Utterance records, written by the producer (positions, request and buffer times)
        # and read by the consumer, which writes when it first handed a sample out.
        self._start_pos = [0] * RECORDS
        self._end_pos = [0] * RECORDS
        self._requested_at = [0.0] * RECORDS
        self._buffered_at = [0.0] * RECORDS
        self._out_at = [0.0] * RECORDS
        self._was_cancelled = [False] * RECORDS
        self._started = 0  # records begun (producer)
        self._finished = 0  # records whose last sample is in the ring (producer / cancel)
        self._heard = 0  # records whose first sample was handed out (consumer)
        self._done = 0  # records whose last sample was handed out (consumer)
        self._completed = 0  # of those, not cancelled
        self._cancelled = 0
        self._samples_out = 0
        self._underflows = 0
        self._underflow_samples = 0
        self._drops = 0
        self._failed = 0
        self._thread = threading.Thread(target=self._produce, name="kantor-speech",
                                        daemon=True)
        self._thread.start()

    # -- control (any thread) -------------------------------------------------------------

    def say(self, text: str, *, rate: float = 1.0, pitch: float = 1.0,
            phonemes: bool = False, block: bool = False, timeout: float | None = None
            ) -> bool:
        """Queue ``text``. With ``block`` wait (up to ``timeout`` seconds) for room;
        otherwise a full queue refuses it: returns False and counts a drop."""
        if self._closed:
            raise SpeechStreamError("the speech stream is closed")
        self._raise_producer_error()
        if not (rate > 0 and pitch > 0 and math.isfinite(rate) and math.isfinite(pitch)):
            raise SpeechStreamError(f"rate and pitch must be positive (got {rate}, {pitch})")
        utterance = _Utterance(text, float(rate), float(pitch), bool(phonemes),
                               self._generation, time.perf_counter())
        with self._pending_lock:
            self._pending += 1
        try:
            self._queue.put(utterance, block=block, timeout=timeout)
        except queue.Full:
            with self._pending_lock:
                self._pending -= 1
            self._drops += 1
            return False
        return True

    def cancel(self) -> None:
        """Stop the current utterance and forget the queued ones: the consumer's next call
        skips everything in the ring."""
        with self._write_lock:
            self._generation += 1
            current = self._current
            if current is not None and not current.finished:
                if current.record >= 0:
                    self._finish_record(current, cancelled=True)
                else:  # still computing its first phrase: nothing to skip
                    current.finished = True
                    self._cancelled += 1
            self._discard_to = self._write
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close() is waiting for the producer: keep its sentinel
                self._queue.put_nowait(None)
                break
            dropped += 1
        with self._pending_lock:
            self._pending -= dropped
        self._cancelled += dropped

    def pause(self) -> None:
        """Hold playback (the consumer outputs silence); synthesis fills the ring."""
        self._paused = True

    def resume(self) -> None:
        """Continue playback where it was paused."""
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def buffered(self) -> int:
        """Samples (at the output rate) synthesised and not yet handed out."""
        return max(0, self._write - max(self._read, self._discard_to))

    @property
    def busy(self) -> bool:
        """Whether something said is still being synthesised or played (never raises)."""
        return self._pending > 0 or self._read < max(self._write, self._discard_to) \
            or self._done < self._finished

    def idle(self) -> bool:
        """True once everything said has been synthesised and handed to the consumer."""
        self._raise_producer_error()
        return self._pending == 0 and self._read >= max(self._write, self._discard_to) \
            and self._done >= self._finished

    def wait_idle(self, timeout: float | None = None, poll_s: float = 0.005) -> bool:
        """Block until ``idle`` (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.idle():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def close(self) -> None:
        """Cancel everything and stop the synthesis thread."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def __enter__(self) -> SpeechStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stats(self) -> SpeechStats:
        """A snapshot of the counters and the latest first-audio times."""
        first = max(0, self._heard - RECORDS)
        buffered, out = [], []
        for k in range(first, self._heard):
            slot = k % RECORDS
            if math.isnan(self._out_at[slot]):  # cancelled before it was heard, or empty
                continue
            buffered.append(self._buffered_at[slot] - self._requested_at[slot])
            out.append(self._out_at[slot] - self._requested_at[slot])
        return SpeechStats(self._completed, self._cancelled, self._samples_out,
                           self._underflows, self._underflow_samples, self._drops,
                           self._failed, buffered, out)

    # -- consumer (the audio callback; one thread) ------------------------------------------

    def fill(self, out: np.ndarray) -> None:
        """Fill ``out`` (float32, (frames,) or (frames, channels); mono is copied to every
        channel) with the next samples, zeros where none are ready. Never blocks and
        allocates no arrays; an audio callback calls it."""
        frames = out.shape[0]
        if self._paused:
            self._skip_discarded()
            out.fill(0)
            return
        n = self._copy_out(out, frames)
        if n < frames:
            out[n:] = 0
            # short while an utterance has begun and not all of it was handed out
            if self._heard > self._done:
                self._underflows += 1
                self._underflow_samples += frames - n

    def pull(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` ready samples into ``out`` and return how many: for
        writers that can wait (files), so nothing counts as an underflow."""
        if self._paused:
            self._skip_discarded()
            return 0
        return self._copy_out(out, out.shape[0])

    def _skip_discarded(self) -> None:
        discard = self._discard_to
        if discard > self._read:
            self._read = discard

    def _copy_out(self, out: np.ndarray, frames: int) -> int:
        self._skip_discarded()
        start = self._read
        limit = self._playable_until()
        n = min(frames, limit - start)
        if n <= 0:
            self._advance(start, start)
            return 0
        at = start % self.capacity
        first = min(n, self.capacity - at)
        source = self._ring if out.ndim == 1 else self._ring_column
        out[:first] = source[at:at + first]
        if n > first:
            out[first:n] = source[:n - first]
        self._read = start + n
        self._samples_out += n
        self._advance(start, start + n)
        return n

    def _playable_until(self) -> int:
        """The ring index the consumer may read up to: the write index, unless the next
        utterance is waiting for its prebuffer."""
        write = self._write
        finished = self._finished  # read before _started: finished <= started holds
        started = self._started
        k = self._heard
        if k < started and k >= finished:
            slot = k % RECORDS
            if write - self._start_pos[slot] < self.prebuffer:
                return max(self._read, self._start_pos[slot])
        return write

    def _advance(self, start: int, end: int) -> None:
        """Bookkeeping after handing out ring[start:end]."""
        finished = self._finished
        started = self._started
        now = -1.0
        while self._heard < started:
            slot = self._heard % RECORDS
            begins, ends = self._start_pos[slot], self._end_pos[slot]
            complete = self._heard < finished
            if not (begins < end or (complete and ends <= end)):
                break
            if complete and ends <= start:  # skipped by a cancel (or empty): never heard
                self._out_at[slot] = math.nan
            else:
                if now < 0:
                    now = time.perf_counter()
                self._out_at[slot] = now
            self._heard += 1
        while self._done < min(finished, self._heard):
            slot = self._done % RECORDS
            if self._end_pos[slot] > end:
                break
            if not self._was_cancelled[slot]:
                self._completed += 1
            self._done += 1

    # -- producer (the synthesis thread) ----------------------------------------------------

    def _produce(self) -> None:
        while True:
            utterance = self._queue.get()
            if utterance is None:
                return
            try:
                if utterance.generation == self._generation:
                    self._synthesise(utterance)
            except Exception as error:  # bad input or a model failure: report, go on
                self._fail(utterance, error)
            finally:
                self._current = None
            with self._pending_lock:
                self._pending -= 1

    def _synthesise(self, utterance: _Utterance) -> None:
        self._current = utterance
        chunks = resample_chunks(
            self.voice.stream(utterance.text, rate=utterance.rate, pitch=utterance.pitch,
                              phonemes=utterance.phonemes),
            self.input_rate, self.output_rate, self.resample_quality)
        try:
            for chunk in chunks:
                if not self._write_chunk(chunk, utterance):
                    return
        finally:
            chunks.close()  # stops the voice mid-utterance after a cancel
        with self._write_lock:
            if utterance.generation != self._generation or utterance.finished:
                return
            if utterance.record < 0:  # nothing came out: an empty record keeps the count
                self._begin_record(utterance)
            self._finish_record(utterance, cancelled=False)

    def _write_chunk(self, chunk: np.ndarray, utterance: _Utterance) -> bool:
        """Copy ``chunk`` into the ring, waiting for room; False once cancelled."""
        done = 0
        total = chunk.shape[0]
        while done < total:
            if utterance.generation != self._generation:
                return False
            room = self.capacity - (self._write - self._read)
            if room <= 0:
                # about the time the consumer needs to free a little room
                time.sleep(min(0.01, max(0.001, 256 / self.output_rate)))
                continue
            n = min(room, total - done)
            with self._write_lock:
                if utterance.generation != self._generation:
                    return False
                write = self._write
                at = write % self.capacity
                first = min(n, self.capacity - at)
                self._ring[at:at + first] = chunk[done:done + first]
                if n > first:
                    self._ring[:n - first] = chunk[done + first:done + n]
                if utterance.record < 0:
                    self._begin_record(utterance)
                self._write = write + n  # published after the samples are in place
            done += n
        return True

    def _begin_record(self, utterance: _Utterance) -> None:
        """Called with the write lock held, before the first sample is published."""
        k = self._started
        slot = k % RECORDS
        self._start_pos[slot] = self._write
        self._end_pos[slot] = self._write
        self._requested_at[slot] = utterance.requested_at
        self._buffered_at[slot] = time.perf_counter()
        self._out_at[slot] = math.nan
        self._was_cancelled[slot] = False
        utterance.record = k
        self._started = k + 1

    def _finish_record(self, utterance: _Utterance, *, cancelled: bool) -> None:
        """Called with the write lock held."""
        slot = utterance.record % RECORDS
        self._end_pos[slot] = self._write
        self._was_cancelled[slot] = cancelled
        if cancelled:
            self._cancelled += 1
        utterance.finished = True
        self._finished += 1

    def _fail(self, utterance: _Utterance, error: Exception) -> None:
        """Close the utterance's record (what was made of it still plays) and keep the
        error for the next ``say`` / ``idle`` call to raise."""
        with self._write_lock:
            if utterance.record >= 0 and not utterance.finished:
                self._finish_record(utterance, cancelled=False)
        self._failed += 1
        self._error = error

    def _raise_producer_error(self) -> None:
        """Raise (once) the last error the voice raised."""
        error, self._error = self._error, None
        if error is not None:
            raise SpeechStreamError(f"speech synthesis failed: {error}") from error
