"""The live harmoniser without MIDI clock (event mode): does each melody note land on its
own 16th of the beat, and what does that do to the music?

The 32 held-out test sopranos are played into the harmoniser in process as MIDI, legato
at 120 bpm, key by CC (export/chorale/live_eval.play_event_mode). Two players: one who
sets the tempo (CC 28, as a DAW user would) and one who leaves the harmoniser to follow
it. For each, and for the prior and the tuned networks:

* timing: the share of gaps between melody notes counted as the steps they are written
  as (gaps over two quarter notes are counted as two by design), and the share of notes
  decided on their own 16th within the beat (relative to the first note);
* the music: each rule's breaks per chord beside Bach's on the same melodies, and the
  style evaluation's headline (a discriminator that nothing here is chosen against).

The rows measured before the tempo was kept (the same table row, in each tuned card's
``sequence_tutor_table``) are carried beside them, marked with their source.

The player who sets the tempo also plays with ``move_under`` (the lower voices decided at
each 16th under a held melody note, the alto and tenor drawn at MOTION_TEMPERATURE, the
chord kept through a legato gap), which needs the tempo set. Every melody is played in
``TAKES`` takes, each from its own seed (a single take's final chord is one coin toss).
``--split valid`` measures the validation chorales, where the setting's default was
chosen by the style gaps.

    python benchmarks/live_event_mode.py [--out benchmarks/results] [--limit N]
                                         [--split valid] [--takes 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kantor.engine.chorale.encoding import HOLD_PITCH, REST_PITCH
from kantor.engine.chorale.live import (
    MOTION_TEMPERATURE,
    MOTION_VOICES,
    TIMED_STEPS_MAX,
    LiveHarmonizer,
    LiveSettings,
)
from kantor.engine.models import ASSETS
from kantor.export.chorale.corpus import Chorale, load_corpus
from kantor.export.chorale.live_eval import play_event_mode
from kantor.export.chorale.rewards import rule_rates
from kantor.export.chorale.style import card_headline, evaluate_style, style_gaps
from kantor.export.chorale.tutor import chorale_context

TAKES = (0, 1, 2)  # seeds: takes of each melody (one take's final chord is one coin)
STYLE_KEYS = ("discriminator_balanced_accuracy", "discriminator_ci95",
              "final_chord_root_and_bass_as_bach", "sevenths_resolved", "alto_eighth",
              "tenor_eighth")


class StepRecorder(LiveHarmonizer):
    """The live harmoniser, noting the step of each decision."""

    decided: list[int]

    def _decide(self, out, redo, mode=None):
        if mode != "timed":  # the melody's own notes, not the 16ths decided under them
            self.decided.append(int(self.step))
        super()._decide(out, redo, mode)


def timing(steps: list[int], chorale: Chorale) -> tuple[int, int, int, int]:
    """(gaps counted as written, gaps, notes on their own 16th of the beat, notes)."""
    soprano = chorale.raw[0]
    onsets = np.flatnonzero((soprano != HOLD_PITCH) & (soprano != REST_PITCH))
    decided = np.array(steps[:onsets.size])
    written = np.minimum(np.diff(onsets), 8)  # the longest gap counted is two quarters
    phase_ok = (decided - decided[0] + onsets[0]) % 4 == onsets % 4
    return (int((np.diff(decided) == written).sum()), written.size, int(phase_ok.sum()),
            onsets.size)


def row(tuned: bool, tell_tempo: bool, move_under: bool, corpus, chorales: list[Chorale],
        takes: tuple[int, ...] = TAKES) -> dict:
    """One player and one set of networks over ``chorales``, a take of each per seed in
    ``takes`` (each its own random stream, so a take does not depend on the ones before)."""
    harmonizer = StepRecorder.load(ASSETS, LiveSettings(tuned=tuned, move_under=move_under))
    harmonizer.decided = []
    harmonizer.prepare()
    started = time.perf_counter()
    counts = np.zeros(4, dtype=np.int64)
    played = []

    def take(chorale: Chorale, seed: int) -> np.ndarray:
        nonlocal counts
        harmonizer.reseed(seed)
        harmonizer.decided = []
        raw = play_event_mode(harmonizer, chorale, tell_tempo=tell_tempo)
        counts += timing(harmonizer.decided, chorale)
        raw[0] = chorale.raw[0]  # the melody as played; only the answers are judged
        played.append((raw.copy(), *chorale_context(chorale)))
        return raw

    report, _ = evaluate_style(corpus, {"kantor": take}, seeds=takes, chorales=chorales,
                               progress=False)
    style, gaps = card_headline(report, "kantor"), style_gaps(report, "kantor")
    return {"networks": harmonizer.playing, "tempo": "set by the player" if tell_tempo
            else "followed", "move_under": move_under, "takes_per_melody": len(takes),
            "gaps_counted_as_written": round(counts[0] / counts[1], 4),
            "notes_on_their_16th": round(counts[2] / counts[3], 4),
            "rule_breaks_per_chord": {k: round(v, 5) for k, v in rule_rates(played).items()},
            "style": {k: style[k] for k in STYLE_KEYS},
            # distance from Bach on the headline features, the one the settings are
            # chosen by on the validation split (export/chorale/style.style_gaps)
            "style_gaps": {k: round(v, 3) for k, v in gaps.items()},
            "style_gaps_sum_of_squares": round(sum(g * g for g in gaps.values()), 3),
            "seconds": round(time.perf_counter() - started, 1)}


def before_rows() -> dict:
    """The same rows measured before the tempo was kept, from the tuned cards."""
    card = json.loads((ASSETS / "chorale-live-tuned-alto.json").read_text())
    table = card["metrics"]["sequence_tutor_table"]
    return {name: {"networks": name, "tempo": "median of the latest 8 gaps (before)",
                   "source": "engine/assets/chorale-live-tuned-alto.json "
                             "metrics.sequence_tutor_table",
                   "rule_breaks_per_chord": entry["rule_breaks_per_chord"],
                   "style": {k: entry["style"][k] for k in STYLE_KEYS}}
            for name, entry in table.items()}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = list(rows)
    measures = [("discriminator", lambda r: r["style"]["discriminator_balanced_accuracy"]),
                ("final chord\nas Bach", lambda r: r["style"]
                 ["final_chord_root_and_bass_as_bach"]),
                ("sevenths\nresolved", lambda r: r["style"]["sevenths_resolved"]["kantor"]),
                ("notes on\ntheir 16th", lambda r: r.get("notes_on_their_16th", np.nan)),
                ("repeated inner\nnotes / chord", lambda r: r["rule_breaks_per_chord"]
                 ["repeated_notes"]),
                ("alto eighth-\nnote share", lambda r: r["style"]["alto_eighth"]["kantor"]),
                ("tenor eighth-\nnote share", lambda r: r["style"]["tenor_eighth"]["kantor"])]
    fig, ax = plt.subplots(figsize=(15, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [f(rows[name]) for _, f in measures]  # None: too few melodies to say
        ax.bar(np.arange(len(measures)) + i * width,
               [np.nan if v is None else v for v in values], width, label=name)
    bach = report["bach"]
    ax.scatter([2 + 0.4, 4 + 0.4, 5 + 0.4, 6 + 0.4],
               [bach["sevenths_resolved"], bach["rule_breaks_per_chord"]["repeated_notes"],
                bach["alto_eighth"], bach["tenor_eighth"]],
               marker="_", s=900, color="black", label="Bach", zorder=3)
    ax.set_xticks(np.arange(len(measures)) + 0.4 - width / 2, [m for m, _ in measures])
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"event mode, {report['melodies']} {report['split']} sopranos at 120 bpm "
                 "(discriminator: lower is closer to Bach)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--limit", type=int, help="the first N chorales only")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    parser.add_argument("--takes", type=int, default=len(TAKES),
                        help=f"takes of each melody, seeds 0.. (default {len(TAKES)})")
    args = parser.parse_args()
    corpus = load_corpus()
    takes = tuple(range(args.takes))
    chorales = corpus.split(args.split)[:args.limit]
    before = before_rows()
    report: dict = {"split": args.split, "melodies": len(chorales), "tempo_bpm": 120,
                    "move_under": {"motion_temperature": MOTION_TEMPERATURE,
                                   "motion_voices": sorted(MOTION_VOICES),
                                   "timed_steps_max": TIMED_STEPS_MAX},
                    "rows": {}}
    for tuned in (False, True):
        name = "tuned" if tuned else "prior"
        if args.limit is None and args.split == "test":
            report["rows"][f"{name}, before"] = before[name]
        # (moving under needs the tempo set: on a followed one it is the melody's own)
        for tell, move in ((True, False), (False, False), (True, True)):
            entry = row(tuned, tell, move, corpus, chorales, takes)
            label = (f"{name}, tempo {'set' if tell else 'followed'}"
                     f"{', moving under' if move else ''}")
            report["rows"][label] = entry
            print(label, json.dumps(entry["rule_breaks_per_chord"]),
                  json.dumps(entry["style"]), flush=True)
    style = entry["style"]  # Bach's own figures ride along with every row's
    bach = rule_rates([(chorale.raw, *chorale_context(chorale)) for chorale in chorales])
    report["bach"] = {"rule_breaks_per_chord": {k: round(v, 5) for k, v in bach.items()},
                      "sevenths_resolved": style["sevenths_resolved"]["bach"],
                      "alto_eighth": style["alto_eighth"]["bach"],
                      "tenor_eighth": style["tenor_eighth"]["bach"]}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "live_event_mode" + ("" if args.split == "test" else f"_{args.split}")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out / f"{stem}.png")


if __name__ == "__main__":
    main()
