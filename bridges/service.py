"""``kantor serve``'s core: the live harmoniser (in its own process), the speech engine and
the offline sampler, prepared once, shared by every control surface (HTTP, WebSocket, OSC)
and stopped in an order that leaves nothing sounding.

Control surfaces only call this object; it knows nothing of HTTP or OSC.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path

from kantor.bridges import audio
from kantor.bridges.harmonizing import HarmonizeOptions, harmonize
from kantor.bridges.live_process import LiveConfig, LiveProcess, LiveProcessError
from kantor.bridges.midi import JackWatch, MidiPortError, pick_api, start_private_jack
from kantor.bridges.scorefiles import (
    SERVICE_LIMITS,
    midi_bytes,
    musicxml_bytes,
    read_melody_bytes,
)
from kantor.bridges.serve_config import ServeConfig
from kantor.bridges.speech_service import SpeechService
from kantor.engine.chorale.explain import LiveExplainer
from kantor.engine.chorale.gibbs import ChoraleSampler
from kantor.engine.models import ASSETS, BUNDLED_MELODY, ModelError, read_card

log = logging.getLogger(__name__)

SERVICE_MODELS = ("chorale-live-alto", "chorale-live-tenor", "chorale-live-bass",
                  "chorale-soprano", "chorale-alto", "chorale-tenor", "chorale-bass",
                  "voice-prosody", "voice-acoustic-encoder", "voice-acoustic",
                  "g2p-encoder", "g2p-decoder")
# Models the service may do without (the WORLD-style vocoder stands in for the neural
# one; the live harmoniser plays its prior without a tuned set).
OPTIONAL_MODELS = ("voice-vocoder", "chorale-live-tuned-alto", "chorale-live-tuned-tenor",
                   "chorale-live-tuned-bass")  # the live networks tuned by RL, CC 27


class ServiceError(RuntimeError):
    """The service cannot start; the message says what to do."""


class BusyError(RuntimeError):
    """Too many requests of a kind are waiting; try again later."""


def model_cards(assets: Path = ASSETS) -> list[dict]:
    """Name, version, sha256 and held-out metrics of every model the service runs."""
    cards = []
    optional = [n for n in OPTIONAL_MODELS if (assets / f"{n}.onnx").exists()]
    for name in (*SERVICE_MODELS, *optional):
        card = read_card(assets / f"{name}.onnx")
        cards.append({"name": card.get("name", name), "version": card.get("version"),
                      "task": card.get("task"), "sha256": card.get("sha256"),
                      "metrics": card.get("metrics")})
    return cards


class KantorService:
    """Everything ``kantor serve`` runs. ``start`` prepares it all; ``stop`` undoes it."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.jack = None
        self.live: LiveProcess | None = None
        self.speech = SpeechService(
            output=config.speech, device=config.device, hostapi=config.hostapi,
            blocksize=config.blocksize, sample_rate=config.sample_rate,
            clients=config.speech_clients, queue_size=config.speech_queue,
            max_chars=config.max_chars, assets=Path(config.assets) if config.assets else None,
            vocoder=config.vocoder)
        self.sampler: ChoraleSampler | None = None
        self.models: list[dict] = []
        self.started_at = time.time()
        self._harmonize_lock = threading.Lock()
        self._harmonize_slots = threading.BoundedSemaphore(1 + config.harmonize_waiting)
        self.read_limits = dataclasses.replace(SERVICE_LIMITS, max_bytes=config.max_body_bytes)
        self.harmonize_counts = {"requests": 0, "failed": 0, "refused_busy": 0}
        self.last_harmonisation: dict | None = None
        self.counters: dict[str, int] = {}  # control surfaces' errors, by kind
        self._counter_lock = threading.Lock()
        self.watch: JackWatch | None = None  # this process's view of the JACK server
        self.jack_lost_once = False  # PortAudio then hangs at exit: the CLI skips it

    def count(self, name: str) -> None:
        """Count one event (e.g. 'osc malformed', 'http 413') for the status."""
        with self._counter_lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open ports and devices and warm every model; ServiceError with a hint if not."""
        config = self.config
        started = time.perf_counter()
        try:
            api = self._midi_api()
            self.live = LiveProcess(LiveConfig(
                api=api, client_name=config.midi_name, in_port=config.in_port,
                out_port=config.out_port, assets=config.assets,
                settings=config.live_settings(), verbose=config.verbose,
                cpu=config.live_cpu,
                environment={k: os.environ[k] for k in ("JACK_DEFAULT_SERVER",
                                                        "JACK_NO_START_SERVER")
                             if k in os.environ}))
            self.live.start()
            log.debug("live harmoniser ready in %.2f s", time.perf_counter() - started)
            if config.speech:
                # PortAudio sees a JACK server started since it loaded, under a client name
                # apart from the MIDI ports' (JACK client names must differ)
                audio.rescan(f"{config.midi_name}-speech")
                if self.jack is not None and config.hostapi is None:
                    self.speech.hostapi = "jack"
            self.speech.start()
            if api == "jack" or "jack" in (self.speech.sink.device.hostapi.lower()
                                           if self.speech.sink else ""):
                self._watch_jack()
            self._prepare_sampler()
            self.models = model_cards(Path(config.assets) if config.assets else ASSETS)
            # explains live chords from the same files; reads a network when first asked
            self.live_explainer = LiveExplainer(Path(config.assets) if config.assets
                                                else ASSETS)
        except (MidiPortError, LiveProcessError, ModelError) as error:
            self.stop()
            raise ServiceError(str(error)) from None
        except audio.AudioOutputError as error:
            self.stop()
            reason = str(error).replace(f"; {audio.FILE_HINT}", "")  # `say`'s advice
            raise ServiceError(f"{reason} (or run with --no-audio: speech then only streams "
                               "to WebSocket clients)") from None
        except Exception:
            self.stop()
            raise
        log.debug("service prepared in %.2f s", time.perf_counter() - started)

    def _watch_jack(self) -> None:
        """Notice the JACK server dying (the live process notices for its MIDI ports and
        re-creates them; this process has PortAudio's client and the speech output)."""

        def lost(reason: str) -> None:
            self.jack_lost_once = True
            self.count("jack server lost")
            if self.speech.sink is not None:
                log.error("speech output lost with the JACK server: speaking aloud is off "
                          "until kantor serve restarts (WebSocket streaming goes on)")
                self.speech.lose_output(f"JACK server lost: {reason}")

        watch = JackWatch(lost, lambda: self.count("jack server returned"),
                          name=f"{self.config.midi_name}-service-watch")
        if watch.start():
            self.watch = watch

    def _midi_api(self) -> str:
        try:
            return pick_api(self.config.api)
        except MidiPortError as error:
            if not self.config.start_jack:
                raise MidiPortError(f"{error}; or pass --start-jack to start a private JACK "
                                    "server") from None
        self.jack = start_private_jack(f"kantor-jack-{os.getpid()}")
        log.info("no MIDI system was running: started a JACK server '%s' (dummy driver); "
                 "other JACK clients reach it with JACK_DEFAULT_SERVER=%s", self.jack.name,
                 self.jack.name)
        return "jack"

    def _prepare_sampler(self) -> None:
        """Load the offline sampler and harmonise a few bars once: its kernels compile and
        its sessions warm before the first request."""
        self.sampler = ChoraleSampler.load(Path(self.config.assets)
                                           if self.config.assets else ASSETS)
        melody = read_melody_bytes(BUNDLED_MELODY.read_bytes(), "musicxml", "warm-up")
        harmonize(self.sampler, melody, HarmonizeOptions(iterations=1, chains=1))

    def stop(self) -> dict:
        """Drain or cancel speech, release every live note, close ports and devices, stop
        a JACK server the service started. Safe to call more than once."""
        final: dict = {}
        if self.watch is not None:
            self.watch.stop()
        self.speech.stop(self.config.drain_seconds)
        if self.live is not None:
            final = self.live.stop() or {}
            self.live = None
        if self.jack is not None:
            if not self.jack_lost_once:  # PortAudio never returns from a dead server
                audio.shutdown()  # PortAudio lets go of the server before it goes
            self.jack.stop()
            self.jack = None
        return final

    # -- requests ----------------------------------------------------------------------------

    def harmonize_upload(self, data: bytes, kind: str, output: str,
                         options: HarmonizeOptions, name: str = "upload"
                         ) -> tuple[bytes, dict]:
        """Harmonise a melody file's bytes; (file bytes in ``output`` format, summary).
        ScoreFileError/MelodyError for bad input; BusyError when too many wait."""
        if not self._harmonize_slots.acquire(blocking=False):
            with self._counter_lock:
                self.harmonize_counts["refused_busy"] += 1
            raise BusyError("harmoniser busy: too many requests waiting, try again shortly")
        try:
            with self._harmonize_lock:  # one at a time: the sampler uses every core it has
                self.harmonize_counts["requests"] += 1
                try:
                    # the limits hold while reading: no file costs more than they allow
                    melody = read_melody_bytes(data, kind, name, self.read_limits)
                    result, melody = harmonize(self.sampler, melody, options)
                    body = midi_bytes(result.raw, melody) if output == "midi" \
                        else musicxml_bytes(result.raw, melody)
                except Exception:
                    self.harmonize_counts["failed"] += 1
                    raise
        finally:
            self._harmonize_slots.release()
        summary = {"bars": melody.n_steps / melody.steps_per_bar,
                   "seconds": result.seconds, "rule_breaks": result.violations,
                   "key_sharps": melody.key_sharps, "warnings": list(melody.warnings),
                   "title": melody.title, "time": time.time(),
                   "opening": _opening_chords(result.raw)}
        self.last_harmonisation = summary
        return body, summary

    def live_status(self) -> dict:
        """The live process's status, or why there is none."""
        if self.live is None:
            return {"running": False}
        try:
            status = self.live.status()
        except LiveProcessError as error:
            return {"running": False, "error": str(error)}
        status["running"] = True
        status["pid"] = self.live.pid
        status["scheduling"] = self.live.info.get("scheduling")
        return status

    def status(self) -> dict:
        """Everything a status page or monitor shows; times in milliseconds."""
        config = self.config
        return {
            "service": {"uptime_s": time.time() - self.started_at, "pid": os.getpid(),
                        "jack": self.watch.status() if self.watch is not None else None,
                        "http": f"http://{config.host}:{config.http_port}",
                        "osc": f"{config.osc_host}:{config.osc_port}" if config.osc_port
                        else None,
                        "jack_server": self.jack.name if self.jack is not None else None},
            "live": self.live_status(),
            "speech": self.speech.status(),
            "harmonize": dict(self.harmonize_counts, last=self.last_harmonisation),
            "errors": dict(self.counters),
            "models": self.models,
        }


def _opening_chords(raw, limit: int = 8) -> list[list[int]]:
    """The first ``limit`` chords (S, A, T, B MIDI pitches at each soprano onset)."""
    from kantor.engine.chorale.encoding import sounding_pitches

    sounding = sounding_pitches(raw)
    onsets = [t for t in range(raw.shape[1]) if raw[0, t] >= 0][:limit]
    return [[int(sounding[v, t]) for v in range(4)] for t in onsets]
