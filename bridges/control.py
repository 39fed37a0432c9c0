"""What the control surfaces (HTTP, WebSocket, OSC, the status page) may ask of the service.

:class:`Controls` is the one door from a surface into :class:`KantorService`: each
operation a client can ask for, with every refusal turned into a :class:`ControlError`
here, in one place, with the HTTP status that fits (OSC sends the same text back). A
surface handles ``ControlError`` and nothing else; anything else escaping is a bug.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from kantor.bridges.harmonizing import HarmonizeOptions
from kantor.bridges.live_process import LiveProcessError
from kantor.bridges.scorefiles import ScoreFileError
from kantor.bridges.serve_config import ServeConfig
from kantor.bridges.service import BusyError, KantorService
from kantor.bridges.speech_service import SpeechRequest, SpeechRequestError
from kantor.engine.chorale.live import LIVE_PARAMETERS
from kantor.engine.chorale.melody import MelodyError
from kantor.engine.models import ModelError
from kantor.engine.speech.voice import Voice


class ControlError(Exception):
    """A request the service refuses; ``status`` is the HTTP status that fits, the text
    says why in words a client can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Every error a client's request can meet, mapped to a :class:`ControlError`."""
    try:
        yield
    except ControlError:
        raise
    except SpeechRequestError as problem:
        raise ControlError(problem.status, str(problem)) from None
    except (ScoreFileError, MelodyError) as problem:
        raise ControlError(422, str(problem)) from None
    except BusyError as problem:
        raise ControlError(503, str(problem)) from None
    except LiveProcessError as problem:  # the live process died or did not answer
        raise ControlError(503, str(problem)) from None
    except ValueError as problem:  # a refused live setting, or a value out of range
        raise ControlError(422, str(problem)) from None


class Controls:
    """The operations a client may ask of ``service``, refusals as :class:`ControlError`."""

    def __init__(self, service: KantorService) -> None:
        self._service = service
        # one explanation at a time (~0.15 s of CPU each, beside the live process)
        self._explaining = threading.Lock()

    @property
    def config(self) -> ServeConfig:
        return self._service.config

    def count(self, what: str) -> None:
        """Count one refused or dropped request under ``what`` (shown in the status)."""
        self._service.count(what)

    def status(self) -> dict:
        """Ports, models and their cards, latencies, drops and underflows."""
        return self._service.status()

    # speech on the service's output
    def speak(self, request: SpeechRequest) -> dict:
        """Queue ``request`` on the output; what was queued and dropped."""
        with _refusals():
            return self._service.speech.speak(request)

    def cancel_speech(self) -> None:
        """Silence the output and forget the queue."""
        self._service.speech.cancel()

    # speech streamed to a client
    def acquire_voice(self) -> Voice | None:
        """A voice of the pool for one client's stream; None when all are taken."""
        return self._service.speech.acquire_voice()

    def release_voice(self, voice: Voice) -> None:
        self._service.speech.release_voice(voice)

    def check_length(self, request: SpeechRequest) -> None:
        """ControlError when the text is longer than the service allows."""
        with _refusals():
            self._service.speech.check_length(request)

    def stream_pcm(self, voice: Voice, request: SpeechRequest, sample_rate: int,
                   cancelled: threading.Event) -> Iterator[bytes]:
        """16-bit PCM chunks of ``request`` at ``sample_rate`` Hz as they are made."""
        return self._service.speech.stream_pcm(voice, request, sample_rate, cancelled)

    def record_stream(self, first_audio_s: float | None, cancelled: bool,
                      failed: bool) -> None:
        """Count one finished stream (first audio in seconds) in the status."""
        self._service.speech.record_stream(first_audio_s, cancelled=cancelled, failed=failed)

    # the live harmoniser
    def _live(self):
        if self._service.live is None:
            raise ControlError(503, "the live harmoniser is not running")
        return self._service.live

    def live_settings(self, **parameters: float | int | bool | str) -> dict:
        """Set live parameters (names in LIVE_PARAMETERS); returns them all."""
        with _refusals():
            return self._live().set(**parameters)

    def live_setting(self, name: str, value: float | int | bool | str) -> float | int | bool:
        """Set one live parameter by name; its value as the harmoniser took it."""
        if name not in LIVE_PARAMETERS:
            raise ControlError(422, f"unknown live parameter '{name}' (settable: "
                                    f"{', '.join(LIVE_PARAMETERS)})")
        return self.live_settings(**{name: value})[name]

    def live_panic(self) -> None:
        """Note-offs for every note the harmoniser sounds, in order with the MIDI."""
        with _refusals():
            self._live().panic()

    def live_latencies(self, last: int, kind: str = "all") -> dict:
        """The last ``last`` arrival-to-answer latencies (ms) and the count so far, of
        every answered message or (``kind`` "note_on") of note-ons alone."""
        with _refusals():
            return self._live().latencies(last, kind)

    def live_explain(self, voice: str) -> dict:
        """Why ``voice`` sang its note in the last chord the live harmoniser answered:
        integrated gradients over the cells its network read (computed here, not in the
        live process, so the live MIDI never waits for it)."""
        from kantor.engine.chorale.encoding import VOICES

        if voice not in VOICES:
            raise ControlError(422, f"voice must be one of {', '.join(VOICES)}, not {voice!r}")
        with _refusals():
            decision = self._live().last_decision()
        if decision is None:
            raise ControlError(409, "no chord answered yet: play a melody note first")
        if not self._explaining.acquire(blocking=False):
            raise ControlError(503, "another explanation is being computed: try again")
        try:
            return self._service.live_explainer.explain(decision, VOICES.index(voice)).to_json()
        except ModelError as problem:
            raise ControlError(503, str(problem)) from None
        except ValueError as problem:  # the soprano: the player's, not the network's
            raise ControlError(422, str(problem)) from None
        finally:
            self._explaining.release()

    # the file harmoniser
    def harmonize(self, data: bytes, kind: str, output: str,
                  options: HarmonizeOptions) -> tuple[bytes, dict]:
        """A melody file's bytes harmonised; (file bytes in ``output`` format, summary)."""
        with _refusals():
            return self._service.harmonize_upload(data, kind, output, options)

