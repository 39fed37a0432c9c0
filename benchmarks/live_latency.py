"""Live harmoniser latency on real JACK MIDI ports, next to a pass-through baseline.

For each JACK period (default 128 and 1024 frames at 48 kHz) a JACK server with the dummy
driver is started; a client process (the DAW) plays ``--notes`` melody notes (one every
``--gap`` seconds, released half-way) first through a pass-through processor, then
through Kantor's live harmoniser, both behind the same ``LiveMidiService`` (same ports,
queue and worker). It records:

* the round trip as the DAW sees it: note-on sent -> its answer (the echoed melody note)
  received, through JACK both ways;
* Kantor's processing latency in process: message arrival -> answers sent.

Added latency = Kantor minus pass-through, per percentile. Writes live_latency.json and
live_latency.png under ``--out``.

    python benchmarks/live_latency.py [--notes 5000] [--periods 128 1024]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import rtmidi

from kantor.bridges.midi import LiveMidiService, MidiPorts
from kantor.engine.chorale.live import LiveHarmonizer, LiveStats


class PassThrough:
    """The baseline processor: every note message goes straight back out."""

    def __init__(self) -> None:
        self.stats = LiveStats()
        self.sounding_notes: list = []

    def prepare(self) -> None:
        pass

    def process(self, message, now_s=None):
        if len(message) == 3 and message[0] & 0xF0 in (0x80, 0x90):
            return [list(message)]
        return []

    def release_all(self, out=None):
        return []


def start_jack(period: int) -> tuple[subprocess.Popen, str]:
    name = f"kantor-bench-{uuid.uuid4().hex[:6]}"
    server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000",
                               "-p", str(period)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    for _ in range(150):
        if subprocess.run(["jack_lsp"], capture_output=True).returncode == 0:
            return server, name
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("jackd did not start")


MELODY = [67, 69, 71, 72, 74, 72, 71, 69]


def play_notes(out, sent: dict[int, float], lock, first: int, count: int, gap: float) -> None:
    """Play ``count`` notes of the melody from note ``first`` on, one every ``gap`` seconds,
    each released half-way; ``sent[pitch]`` is set to when its note-on left. A pitch
    recurs only every 8 notes (the melody, then a fourth lower: inside the soprano range),
    so an answer belongs to its pitch's latest send."""
    next_time = time.perf_counter()
    for i in range(first, first + count):
        pitch = MELODY[i % len(MELODY)] - 5 * ((i // len(MELODY)) % 2)
        with lock:
            sent[pitch] = time.perf_counter()
        out.send_message([0x90, pitch, 90])
        next_time += gap / 2
        time.sleep(max(0.0, next_time - time.perf_counter()))
        out.send_message([0x80, pitch, 0])
        next_time += gap / 2
        time.sleep(max(0.0, next_time - time.perf_counter()))


def play(label: str, notes: int, gap: float, kantor_in: str, kantor_out: str,
         results) -> None:
    """The DAW side, in its own process (as a real DAW is): play ``notes`` notes, one
    every ``gap`` seconds, and time each note-on until its echoed melody note returns."""
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"daw{label}")
    out.open_virtual_port("out")
    inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"daw{label}-in")
    inp.open_virtual_port("in")
    sent: dict[int, float] = {}  # pitch -> when its latest note-on left
    round_trips: list[float] = []
    lock = threading.Lock()

    def on_message(event, data=None):
        now = time.perf_counter()
        message = event[0]
        if message[0] == 0x90 and message[2] > 0:  # the echoed melody (channel 1)
            with lock:
                # A pitch recurs only every 8 notes, so an answer belongs to its latest
                # send; a lost answer then cannot shift the later matches.
                started = sent.pop(message[1], None)
                if started is not None:
                    round_trips.append(now - started)

    inp.set_callback(on_message)
    subprocess.run(["jack_connect", f"daw{label}:out", kantor_in], check=True)
    subprocess.run(["jack_connect", kantor_out, f"daw{label}-in:in"], check=True)
    time.sleep(0.3)
    play_notes(out, sent, lock, 0, notes, gap)
    time.sleep(0.5)
    inp.cancel_callback()  # closing under a live callback can crash rtmidi
    for port in (out, inp):
        port.close_port()
        port.delete()
    results.put(round_trips)


def measure(processor, notes: int, gap: float, label: str) -> dict:
    """Serve ``processor`` on JACK ports while a DAW process plays into them."""
    ports = MidiPorts("jack", client_name=f"k{label}")
    service = LiveMidiService(processor, ports, queue_size=4096)
    service.start()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    daw = context.Process(target=play, args=(label, notes, gap, ports.names.input,
                                             ports.names.output, results))
    daw.start()
    round_trips = results.get()
    daw.join()
    service.stop()
    return {"round_trip_s": round_trips, "processing_s": service.latency.values().tolist(),
            "answered": len(round_trips), "sent": notes,
            "dropped": service.status()["dropped"]}


def summary(values: list[float]) -> dict:
    array = np.asarray(values) * 1000
    if array.size == 0:
        return {}
    return {"n": int(array.size), "p50_ms": float(np.percentile(array, 50)),
            "p99_ms": float(np.percentile(array, 99)),
            "p99.9_ms": float(np.percentile(array, 99.9)), "max_ms": float(array.max()),
            "jitter_ms": float(np.percentile(array, 99) - np.percentile(array, 1)),
            "std_ms": float(array.std())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=5000)
    parser.add_argument("--gap", type=float, default=0.03, help="seconds between notes")
    parser.add_argument("--periods", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    results: dict = {"notes": args.notes, "gap_s": args.gap, "sample_rate": 48000,
                     "machine": {"cpu": platform.processor() or platform.machine(),
                                 "cores": os.cpu_count()}, "periods": {}}
    for period in args.periods:
        server, _ = start_jack(period)
        try:
            runs = {"passthrough": measure(PassThrough(), args.notes, args.gap, "thru"),
                    "kantor": measure(LiveHarmonizer.load(), args.notes, args.gap, "live")}
        finally:
            server.terminate()
            stderr = server.communicate(timeout=10)[1]
        entry = {"period_frames": period, "period_ms": period / 48.0,
                 "jack_xrun_reports": stderr.lower().count("xrun")}
        for name, run in runs.items():
            entry[name] = {"round_trip": summary(run["round_trip_s"]),
                            "processing": summary(run["processing_s"]),
                            "answered": run["answered"], "sent": run["sent"],
                            "dropped": run["dropped"]}
        entry["added"] = {
            key: {stat: entry["kantor"][key][stat] - entry["passthrough"][key][stat]
                  for stat in ("p50_ms", "p99_ms", "p99.9_ms", "max_ms")}
            for key in ("round_trip", "processing")}
        results["periods"][str(period)] = entry
        print(f"period {period}: added round trip p50 {entry['added']['round_trip']['p50_ms']:.2f}"
              f" ms, p99 {entry['added']['round_trip']['p99_ms']:.2f} ms; added processing p99 "
              f"{entry['added']['processing']['p99_ms']:.2f} ms, max "
              f"{entry['added']['processing']['max_ms']:.2f} ms", flush=True)
        entry["_raw"] = {k: {"round_trip_s": v["round_trip_s"], "processing_s": v["processing_s"]}
                         for k, v in runs.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "live_latency.png")
    for entry in results["periods"].values():
        entry.pop("_raw")
    (out / "live_latency.json").write_text(json.dumps(results, indent=2) + "\n")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    periods = list(results["periods"])
    fig, axes = plt.subplots(2, len(periods), figsize=(6 * len(periods), 7), squeeze=False)
    for col, period in enumerate(periods):
        raw = results["periods"][period]["_raw"]
        for row, key in enumerate(("round_trip_s", "processing_s")):
            ax = axes[row][col]
            for name in ("passthrough", "kantor"):
                values = np.asarray(raw[name][key]) * 1000
                if values.size:
                    ax.hist(values, bins=80, alpha=0.6, label=name, log=True)
            ax.set_title(f"{'round trip (DAW view)' if row == 0 else 'processing (in process)'}"
                         f", JACK period {period} frames")
            ax.set_xlabel("ms")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
