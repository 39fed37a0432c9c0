"""The live harmoniser judged like the offline one: the held-out test sopranos played in
real time into its JACK MIDI port by a DAW process (key by CC 25/26, metre and pickup
by CC 30/31, the sustain pedal held on fermatas), its answers recorded from its output
port and read back onto the 16th grid, then the style evaluation against Bach's
settings of the same melodies.

    python benchmarks/live_style.py [--step-ms 60] [--assets DIR] [--split test]

Event mode (no MIDI clock): every melody note is a step and the lower voices answer it.
Writes live_style_<split>.json and .png (the style report of
``kantor eval harmonizer --style``) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import time
from pathlib import Path

import numpy as np
import rtmidi

from kantor.bridges.midi import LiveMidiService, MidiPorts, start_private_jack
from kantor.engine.chorale.encoding import HOLD_PITCH, META_FIELDS, REST_PITCH, STEPS_PER_QUARTER
from kantor.engine.chorale.keys import key_of_setting
from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings
from kantor.engine.chorale.live_settings import LIVE_PARAMETERS
from kantor.engine.models import ASSETS
from kantor.export.chorale.corpus import Chorale, load_corpus
from kantor.export.chorale.live_eval import metre_of
from kantor.export.chorale.rewards import rule_rates
from kantor.export.chorale.style import (
    HEADLINE,
    compare,
    fit_progression_model,
    settings_for,
    write_report,
)

SILENCE_S = 0.6  # between chorales


def tempo_controller(bpm: float) -> int:
    """The CC 28 value nearest ``bpm`` (the controller sweeps the tempo's range)."""
    tempo = LIVE_PARAMETERS["tempo"]
    return int(min(max(round((bpm - tempo.low) / (tempo.high - tempo.low) * 127), 1), 127))


def melody_events(chorale: Chorale, step_s: float) -> list[tuple[float, list[int]]]:
    """(seconds from the chorale's start, message) for its soprano: the key, the tempo,
    the metre and the pickup first, the pedal down over each fermata note, each note held
    until the next (legato)."""
    key = key_of_setting(chorale.raw)
    beats, pickup = metre_of(chorale)
    events = [(0.0, [0xB0, 25, int(chorale.key_sharps) % 12]),
              (0.0, [0xB0, 26, 127 if key.minor else 0]),
              (0.0, [0xB0, 28, tempo_controller(60.0 / (4 * step_s))]),
              (0.0, [0xB0, 30, beats]),
              (0.0, [0xB0, 31, round(pickup * STEPS_PER_QUARTER)])]
    soprano = chorale.raw[0]
    fermata = chorale.meta[:, 2].astype(bool)
    sounding = None
    pedal = False
    for step, pitch in enumerate(soprano.tolist()):
        if pitch == HOLD_PITCH:
            continue
        at = step * step_s
        if sounding is not None:
            events.append((at - 0.002, [0x80, sounding, 0]))
            sounding = None
        if fermata[step] != pedal:
            pedal = bool(fermata[step])
            events.append((at - 0.001, [0xB0, 64, 127 if pedal else 0]))
        if pitch != REST_PITCH:
            events.append((at, [0x90, pitch, 90]))
            sounding = pitch
    end = len(soprano) * step_s
    if sounding is not None:
        events.append((end, [0x80, sounding, 0]))
    events.append((end + 0.001, [0xB0, 64, 0]))
    return events


def daw(chorales: list[tuple[str, list]], kantor_in: str, kantor_out: str, results) -> None:
    """The DAW, in its own process: play each chorale's events on time and record every
    answer with its time from that chorale's start."""
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="stylearranger")
    out.open_virtual_port("out")
    inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="stylearranger-in")
    inp.open_virtual_port("in")
    recorded: list[tuple[float, list[int]]] = []
    inp.set_callback(lambda event, data=None: recorded.append((time.perf_counter(),
                                                               event[0])))
    subprocess.run(["jack_connect", "stylearranger:out", kantor_in], check=True)
    subprocess.run(["jack_connect", kantor_out, "stylearranger-in:in"], check=True)
    time.sleep(0.3)
    takes = {}
    for name, events in chorales:
        out.send_message([0xFA])  # transport start and stop: a fresh piece, no history
        out.send_message([0xFC])
        time.sleep(SILENCE_S)
        recorded.clear()
        start = time.perf_counter()
        for at, message in events:
            time.sleep(max(0.0, start + at - time.perf_counter()))
            out.send_message(message)
        time.sleep(SILENCE_S)
        takes[name] = [(t - start, m) for t, m in list(recorded)]
    inp.cancel_callback()  # never close an input under a live callback
    for port in (out, inp):
        port.close_port()
        port.delete()
    results.put(takes)


def grid_of(take: list[tuple[float, list[int]]], chorale: Chorale, step_s: float,
            channels: tuple[int, ...]) -> np.ndarray:
    """The recorded answers on the chorale's grid (soprano: Bach's melody)."""
    n = chorale.raw.shape[1]
    raw = np.full((4, n), REST_PITCH, dtype=np.int16)
    raw[0] = chorale.raw[0]
    voice_of = {c: v for v, c in enumerate(channels)}
    for voice in (1, 2, 3):
        notes = []  # (onset step, end step, pitch)
        for at, message in take:
            if len(message) != 3 or voice_of.get(message[0] & 0x0F) != voice:
                continue
            step = min(max(round(at / step_s), 0), n)
            if message[0] & 0xF0 == 0x90 and message[2] > 0 and step < n:
                notes.append([step, n, message[1]])
            elif notes and notes[-1][2] == message[1] and notes[-1][1] == n:
                notes[-1][1] = step  # released (the last release may fall at the end)
        for i, (start, end, pitch) in enumerate(notes):
            if i + 1 < len(notes):
                end = min(end, notes[i + 1][0])
            if end <= start:
                continue
            raw[voice, start] = pitch
            raw[voice, start + 1:end] = HOLD_PITCH
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--step-ms", type=float, default=60.0,
                        help="a 16th in milliseconds (60 ms: a quarter at 250 bpm)")
    parser.add_argument("--assets", default=str(ASSETS))
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--name", default="live", help="the system's name in the report")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    step_s = args.step_ms / 1000
    corpus = load_corpus()
    chorales = corpus.split(args.split)[:args.limit]
    jack = start_private_jack(name="kantor-style", period=256)
    try:
        settings = LiveSettings()
        if args.temperature is not None:
            settings.temperature = args.temperature
        harmonizer = LiveHarmonizer.load(Path(args.assets), settings)
        ports = MidiPorts("jack", client_name="kstyle")
        service = LiveMidiService(harmonizer, ports)
        service.start()
        try:
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            chorales_events = [(c.name, melody_events(c, step_s)) for c in chorales]
            player = context.Process(target=daw, args=(
                chorales_events, ports.names.input, ports.names.output, results))
            player.start()
            takes = results.get()
            player.join()
            status = service.status()
        finally:
            service.stop()
            ports.close()
    finally:
        jack.stop()
    recorded = {c.name: grid_of(takes[c.name], c, step_s, settings.channels) for c in chorales}
    bigram = fit_progression_model(corpus.split("train"))
    rows = settings_for(chorales, {args.name: lambda c, seed: recorded[c.name]}, (0,), bigram)
    report = compare(rows, chorales, [args.name])
    # each rule's breaks per sonority (export/chorale/rewards.py), Bach's and the
    # live harmoniser's on the same melodies: the prior's row of Sequence Tutor's table
    fermata = META_FIELDS.index("fermata")
    contexts = {c.name: (c.meta[:, fermata] > 0, key_of_setting(c.raw).tonic)
                for c in chorales}
    report["rule_rates"] = {
        who: rule_rates([(raw_of(c), *contexts[c.name]) for c in chorales])
        for who, raw_of in (("bach", lambda c: c.raw), (args.name, lambda c: recorded[c.name]))}
    report |= {"split": args.split, "step_ms": args.step_ms, "mode": "event (no clock)",
               "assets": args.assets, "temperature": settings.temperature,
               # notes sent against note-ons seen by the MIDI callback and processed
               "notes_sent": sum(1 for _, events in chorales_events for _, m in events
                                 if m[0] & 0xF0 == 0x90 and m[2] > 0),
               "service": {k: status.get(k) for k in ("dropped", "note_ons_arrived",
                                                      "notes_in", "notes_out",
                                                      "speculation") if k in status}}
    out = Path(args.out) / f"live_style_{args.split}.json"
    write_report(report, out)
    system = report["systems"][args.name]
    print(json.dumps({k: system[k] for k in ("final_chord", "progression_vs_bach")},
                     default=float))
    event = (status.get("speculation") or {}).get("event") or {}
    if event.get("hit_rate") is not None:
        print(f"answered ahead: {event['hits']} of {event['hits'] + event['misses']} chords "
              f"({event['hit_rate']:.1%})")
    disc = system["discriminator"]
    print(f"discriminator {disc['balanced_accuracy']:.1%} {disc['ci95']}"
          if disc.get("balanced_accuracy") is not None
          else f"discriminator: {disc.get('note', 'none')}")
    for name in HEADLINE:
        b, k = report["features"]["bach"].get(name), report["features"][args.name].get(name)
        if b is not None and k is not None:
            print(f"{name:32s} {b:7.3f} {k:7.3f}")
    print("rule breaks per sonority (Bach, live):")
    for name, rate in report["rule_rates"]["bach"].items():
        print(f"  {name:28s} {rate:7.4f} {report['rule_rates'][args.name][name]:7.4f}")


if __name__ == "__main__":
    main()
