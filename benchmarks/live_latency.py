"""Live harmoniser latency on real JACK MIDI ports, next to a pass-through baseline.

For each JACK period (default 64, 128 and 1024 frames at 48 kHz) a JACK server with the
dummy driver is started; a client process (the DAW) plays ``--notes`` melody notes (one
every ``--gap`` seconds, released half-way) through three processors in turn, each behind
the same ``LiveMidiService`` (same ports, queue and worker, the worker under SCHED_FIFO
where allowed and the process kept to one core, as Kantor's live process is; the DAW and
JACK use every core): a pass-through, Kantor computing each answer when the note arrives
(``--speculation 0``), and Kantor as shipped (answering ahead). It records:

* note-on and note-off processing latency on their own, in process: message arrival
  (rtmidi's callback) -> answers sent;
* the round trip as the DAW sees it: note-on sent -> its echo received, through JACK;
* the JACK server's xruns during each condition (seen by the service's JACK watch), and
  the answers-ahead hits and misses.

Added latency = Kantor minus pass-through for the median and p99, with 95% bootstrap
intervals. Writes live_latency.json and live_latency.png under ``--out``.

    python benchmarks/live_latency.py [--notes 3000] [--periods 64 128 1024]
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

from kantor.bridges.jack import JackServer, realtime_allowed
from kantor.bridges.midi import LiveMidiService, MidiPorts
from kantor.bridges.scheduling import keep_to_one_core, raise_priority, real_time
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings, LiveStats


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


def start_jack(period: int) -> JackServer:
    """A private JACK server (dummy driver) at ``period`` frames, as a musician runs it:
    real-time, its threads above Kantor's live worker (SCHED_FIFO 10), where this user may
    (root or an rtprio limit); else without real-time scheduling. This process's clients
    use it; ``stop()`` returns its log."""
    free_of_kantors_core()  # jackd, started from this thread, is not Kantor's to pin
    server = JackServer(f"kantor-bench-{uuid.uuid4().hex[:6]}", period,
                        realtime=realtime_allowed(70), priority=70).start()
    server.point_here()
    return server


MELODY = [67, 69, 71, 72, 74, 72, 71, 69]


ALL_CORES = os.sched_getaffinity(0)  # what this process may use, before any pinning


def free_of_kantors_core() -> None:
    """Let this thread (and what it starts) use every core this process may use again."""
    os.sched_setaffinity(0, ALL_CORES)


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
    free_of_kantors_core()  # a DAW is not kept to the live process's core
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
    """Serve ``processor`` on JACK ports while a DAW process plays into them. The worker
    runs under the same scheduling in every condition (SCHED_FIFO where allowed)."""
    free_of_kantors_core()  # each condition starts free and keeps to the same core
    ports = MidiPorts("jack", client_name=f"k{label}")
    by_kind: dict[str, list[float]] = {"note_on": [], "note_off": []}

    def on_answer(message, answers, seconds):  # the worker thread: append only
        kind = "note_on" if message[0] & 0xF0 == 0x90 and message[2] > 0 else "note_off"
        by_kind[kind].append(seconds)

    service = LiveMidiService(processor, ports, queue_size=4096, on_answer=on_answer)
    service.start()
    scheduling = real_time(service.worker_id) or "normal"
    core = keep_to_one_core()  # as the live process does
    if core:
        scheduling += f", {core}"
    xruns_before = service.watch.xruns if service.watch is not None else 0
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    daw = context.Process(target=play, args=(label, notes, gap, ports.names.input,
                                             ports.names.output, results))
    daw.start()
    round_trips = results.get()
    daw.join()
    xruns = (service.watch.xruns - xruns_before) if service.watch is not None else None
    status = service.status()
    service.stop()
    return {"round_trip_s": round_trips, "note_on_s": by_kind["note_on"],
            "note_off_s": by_kind["note_off"], "answered": len(round_trips), "sent": notes,
            "dropped": status["dropped"], "xruns": xruns, "scheduling": scheduling,
            "speculation": status.get("speculation")}


# Quote a percentile only with at least this many samples beyond it (p99 needs 1000
# samples, p99.9 10000).
TAIL_SAMPLES = 10
BOOTSTRAP_RESAMPLES = 2000
CONDITIONS = {  # name -> processor factory; every condition runs at every period
    "passthrough": PassThrough,
    "kantor_on_arrival": lambda: LiveHarmonizer.load(settings=LiveSettings(speculation=0)),
    "kantor_answered_ahead": lambda: LiveHarmonizer.load(settings=LiveSettings()),
}


def describe(seconds: list[float]) -> dict:
    """n, mean, p50, max and the tail percentiles the sample size supports, in ms."""
    values = np.asarray(seconds) * 1000
    if values.size == 0:
        return {"n": 0}
    stats = {"n": int(values.size), "mean_ms": float(values.mean()),
             "p50_ms": float(np.percentile(values, 50)), "max_ms": float(values.max())}
    for name, q in (("p99_ms", 99), ("p99.9_ms", 99.9)):
        if values.size * (1 - q / 100) >= TAIL_SAMPLES:
            stats[name] = float(np.percentile(values, q))
    return stats


def added(kantor_s: list[float], baseline_s: list[float], seed: int = 0) -> dict:
    """Kantor minus the baseline for the median and p99 (ms), each with a 95% bootstrap
    interval (both samples resampled independently)."""
    a, b = np.asarray(kantor_s) * 1000, np.asarray(baseline_s) * 1000
    rng = np.random.default_rng(seed)
    result = {}
    for name, q in (("p50_ms", 50), ("p99_ms", 99)):
        if min(a.size, b.size) * (1 - q / 100) < TAIL_SAMPLES:
            continue
        estimate = float(np.percentile(a, q) - np.percentile(b, q))
        differences = np.empty(BOOTSTRAP_RESAMPLES)
        for i in range(BOOTSTRAP_RESAMPLES):
            differences[i] = (np.percentile(rng.choice(a, a.size), q)
                              - np.percentile(rng.choice(b, b.size), q))
        low, high = np.percentile(differences, [2.5, 97.5])
        result[name] = {"estimate": estimate, "ci95": [float(low), float(high)]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=3000, help="note-ons per condition")
    parser.add_argument("--gap", type=float, default=0.03, help="seconds between notes")
    parser.add_argument("--periods", type=int, nargs="+", default=[64, 128, 1024])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    process_priority = raise_priority()  # as the live process runs; the DAW does not
    results: dict = {"notes": args.notes, "gap_s": args.gap, "sample_rate": 48000,
                     "machine": {"cpu": platform.processor() or platform.machine(),
                                 "cores": os.cpu_count()},
                     "process_priority": process_priority,
                     "method": "conditions one after the other at each period, in one run; "
                               "processing = MIDI arrival (rtmidi callback) -> answers sent, "
                               "in process; round trip = DAW note-on sent -> its echo back; "
                               f"added = Kantor minus pass-through, {BOOTSTRAP_RESAMPLES} "
                               "bootstrap resamples for the 95% intervals; a percentile is "
                               f"quoted only with >= {TAIL_SAMPLES} samples beyond it",
                     "periods": {}}
    raw: dict = {}
    for period in args.periods:
        server = start_jack(period)
        try:
            runs = {name: measure(factory(), args.notes, args.gap, f"c{index}p{period}")
                    for index, (name, factory) in enumerate(CONDITIONS.items())}
        finally:
            stderr = server.stop()
        entry = {"period_frames": period, "period_ms": period / 48.0,
                 "jackd_xrun_reports": stderr.lower().count("xrun")}
        for name, run in runs.items():
            entry[name] = {"note_on": describe(run["note_on_s"]),
                           "note_off": describe(run["note_off_s"]),
                           "round_trip": describe(run["round_trip_s"]),
                           **{k: run[k] for k in ("answered", "sent", "dropped", "xruns",
                                                  "scheduling", "speculation")}}
        base = runs["passthrough"]
        entry["added_over_passthrough"] = {
            name: {"note_on": added(run["note_on_s"], base["note_on_s"]),
                   "round_trip": added(run["round_trip_s"], base["round_trip_s"])}
            for name, run in runs.items() if name != "passthrough"}
        results["periods"][str(period)] = entry
        raw[str(period)] = runs
        for name, numbers in entry["added_over_passthrough"].items():
            print(f"period {period}, {name}: note-on added "
                  + ", ".join(f"{key[:-3]} {value['estimate']:.3f} ms {value['ci95']}"
                              for key, value in numbers["note_on"].items())
                  + f"; max {entry[name]['note_on']['max_ms']:.2f} ms; "
                  f"xruns {entry[name]['xruns']}", flush=True)
        misses = ((runs["kantor_answered_ahead"].get("speculation") or {})
                  .get("recent_misses") or [])
        for miss in misses:  # what the table lacked (the status keeps the latest misses)
            print(f"  missed: {miss}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, raw, out / "live_latency.png")
    (out / "live_latency.json").write_text(json.dumps(results, indent=2) + "\n")


def plot(results: dict, raw: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    periods = list(results["periods"])
    fig, axes = plt.subplots(2, len(periods), figsize=(5.5 * len(periods), 8), squeeze=False)
    colours = {"passthrough": "tab:grey", "kantor_on_arrival": "tab:orange",
               "kantor_answered_ahead": "tab:blue"}
    for col, period in enumerate(periods):
        ax = axes[0][col]
        for name, run in raw[period].items():
            values = np.sort(np.asarray(run["note_on_s"]) * 1000)
            if values.size:
                tail = 1 - np.arange(values.size) / values.size
                ax.loglog(values, tail, label=name, color=colours[name])
        ax.set_title(f"note-on processing, JACK period {period} frames")
        ax.set_xlabel("ms (arrival -> answers sent)")
        ax.set_ylabel("share of notes slower")
        ax.legend(fontsize=8)
        ax = axes[1][col]
        numbers = results["periods"][period]["added_over_passthrough"]
        for i, (name, stats) in enumerate(numbers.items()):
            for j, key in enumerate(("p50_ms", "p99_ms")):
                if key not in stats["note_on"]:
                    continue
                value = stats["note_on"][key]
                low, high = value["ci95"]
                ax.errorbar(j + 0.15 * (2 * i - 1), value["estimate"],
                            yerr=[[value["estimate"] - low], [high - value["estimate"]]],
                            fmt="o", capsize=4, color=colours[name],
                            label=name if j == 0 else None)
        ax.axhline(0.3, color="red", linestyle=":", label="target p99 0.3 ms")
        ax.set_xticks([0, 1], ["added p50", "added p99"])
        ax.set_ylabel("ms over pass-through (95% CI)")
        ax.set_title(f"note-on added latency, period {period}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
