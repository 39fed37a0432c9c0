"""The service's status as Prometheus metrics (text exposition format, prometheus_client).

Each scrape takes one status snapshot and turns it into metric families; nothing is
counted twice or kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_QUANTILES = (("p50", "0.5"), ("p99", "0.99"), ("p99.9", "0.999"))


class StatusCollector:
    """A prometheus_client collector reading ``status()`` (KantorService.status) per scrape."""

    def __init__(self, status: Callable[[], dict]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        yield GaugeMetricFamily("kantor_up", "1 while the service runs", value=1)
        yield GaugeMetricFamily("kantor_uptime_seconds", "seconds since the service started",
                                value=status["service"]["uptime_s"])
        yield from _live(status["live"])
        yield from _speech(status["speech"])
        harmonize = status["harmonize"]
        for key, help_text in (("requests", "harmonisation requests"),
                               ("failed", "harmonisation requests that failed"),
                               ("refused_busy", "harmonisation requests refused: busy")):
            yield CounterMetricFamily(f"kantor_harmonize_{key}", help_text,
                                      value=harmonize[key])
        errors = CounterMetricFamily("kantor_control_errors", "malformed or refused control "
                                     "requests, by surface and kind", labels=["kind"])
        for kind, count in status["errors"].items():
            errors.add_metric([kind], count)
        yield errors


def _latency(name: str, help_text: str, percentiles_ms: dict, labels: dict | None = None
             ) -> Iterator[Metric]:
    labels = labels or {}
    names = [*labels, "quantile"]
    gauge = GaugeMetricFamily(name, help_text, labels=names)
    for key, quantile in _QUANTILES:
        if key in percentiles_ms:
            gauge.add_metric([*labels.values(), quantile], percentiles_ms[key] / 1000)
    if "max" in percentiles_ms:
        gauge.add_metric([*labels.values(), "1"], percentiles_ms["max"] / 1000)
    yield gauge


def _live(live: dict) -> Iterator[Metric]:
    yield GaugeMetricFamily("kantor_live_running", "1 while the live harmoniser runs",
                            value=int(live.get("running", False)))
    if not live.get("running"):
        return
    yield CounterMetricFamily("kantor_live_notes_in", "melody notes received",
                              value=live["notes_in"])
    yield CounterMetricFamily("kantor_live_notes_out", "notes sent", value=live["notes_out"])
    yield GaugeMetricFamily("kantor_live_sounding_notes", "notes Kantor holds on now",
                            value=live["sounding"])
    yield from _latency("kantor_live_latency_seconds", "MIDI arrival to answers sent "
                        "(recent events; quantile 1 is the maximum)", live["latency_ms"])
    dropped = CounterMetricFamily("kantor_live_dropped", "MIDI messages dropped, by reason",
                                  labels=["reason"])
    for reason, count in live["dropped"].items():
        dropped.add_metric([reason], count)
    yield dropped
    answered = CounterMetricFamily("kantor_live_decisions", "chords decided, by mode and "
                                   "whether answered ahead (hit) or on arrival (miss)",
                                   labels=["mode", "answer"])
    for mode, counts in (live.get("speculation") or {}).items():
        if isinstance(counts, dict):
            answered.add_metric([mode, "hit"], counts["hits"])
            answered.add_metric([mode, "miss"], counts["misses"])
    yield answered


def _speech(speech: dict) -> Iterator[Metric]:
    output = speech.get("output")
    if output:
        for key, help_text in (("utterances_done", "sentences spoken to the end"),
                               ("cancelled", "sentences cancelled"),
                               ("underflows", "audio callbacks short of samples mid-speech"),
                               ("device_underruns", "audio device underruns"),
                               ("queue_full_drops", "sentences refused: queue full"),
                               ("failed", "sentences the voice failed on")):
            yield CounterMetricFamily(f"kantor_speech_{key}", help_text, value=output[key])
        yield from _latency("kantor_speech_first_audio_seconds", "request to first sample "
                            "handed to the audio device", output["first_audio_ms"],
                            {"surface": "output"})
    streaming = speech["streaming"]
    yield GaugeMetricFamily("kantor_stream_clients_busy", "streaming voices in use",
                            value=streaming["clients_busy"])
    for key, help_text in (("requests", "texts streamed to clients"),
                           ("cancelled", "streams cancelled by their client"),
                           ("refused", "clients refused: every voice busy"),
                           ("failed", "streams the voice failed on")):
        yield CounterMetricFamily(f"kantor_stream_{key}", help_text, value=streaming[key])
    yield from _latency("kantor_stream_first_audio_seconds", "text received to first PCM "
                        "sent to the client", streaming["first_audio_ms"])


def render(status: Callable[[], dict]) -> bytes:
    """The Prometheus text for one snapshot of ``status()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)
