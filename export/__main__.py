"""Train a model and export it to ONNX: ``python -m kantor.export train WHAT [options]``;
the offline evaluations ``kantor eval`` runs live here too.

The same command ``kantor train`` runs. Under torchrun every process runs it and the
training is shared (export/trainer.py); rank 0 exports and writes the cards::

    torchrun --nproc-per-node 2 -m kantor.export train harmonizer --preset tiny
    kantor train harmonizer --nproc 2          # the same, torchrun started for you

Several nodes: torchrun's own ``--nnodes``, ``--node-rank`` and ``--rdzv-endpoint``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class TrainingError(ValueError):
    """A training request that cannot run; the message says why."""


@dataclass(frozen=True)
class Trainable:
    """One model ``kantor train`` can make."""

    module: str  # where its train-and-export function lives
    function: str
    run_dir: str  # default folder for checkpoints
    out: str  # default folder for the ONNX files and cards
    presets: tuple[str, ...]
    help: str


TRAINABLE: dict[str, Trainable] = {
    "harmonizer": Trainable("kantor.export.chorale.pipeline", "train_and_export",
                            ".cache/runs/chorale", ".cache/models/chorale",
                            ("default", "long", "tiny", "visible"),
                            "the four DeepBach voice networks (offline harmoniser)"),
    "live-harmonizer": Trainable("kantor.export.chorale.pipeline", "train_and_export_live",
                                 ".cache/runs/chorale-live", ".cache/models/chorale-live",
                                 ("default", "tiny"), "the live alto, tenor and bass networks"),
    "live-tutor": Trainable("kantor.export.chorale.tutor_pipeline", "tune_and_export",
                            ".cache/runs/chorale-live-tutor", ".cache/models/chorale-live-tuned",
                            ("default", "loose", "tight", "style", "tiny"),
                            "the shipped live networks tuned by RL with "
                            "KL control to them (Sequence Tutor)"),
    "voice-prosody": Trainable("kantor.export.speech.voice_pipeline", "train_and_export_voice",
                               ".cache/runs/voice-prosody", ".cache/models/voice",
                               ("default", "tiny"), "durations and F0 of the voice"),
    "voice-acoustic": Trainable("kantor.export.speech.voice_pipeline",
                                "train_and_export_voice", ".cache/runs/voice-acoustic",
                                ".cache/models/voice", ("default", "tiny"),
                                "the voice's spectral frames"),
    "voice-vocoder": Trainable("kantor.export.speech.neural_vocoder",
                               "train_and_export_vocoder", ".cache/runs/voice-vocoder",
                               ".cache/models/voice", ("default", "tiny"),
                               "the neural vocoder's frame network"),
    "voice-aligner": Trainable("kantor.export.speech.segmentation", "train_and_export",
                               ".cache/runs/voice-aligner", ".cache/models/voice",
                               ("default", "tiny"), "the phone segmentation model"),
    "g2p": Trainable("kantor.export.speech.g2p", "train_and_export", ".cache/runs/g2p",
                     ".cache/models/g2p", ("default", "tiny"), "letters to phones (CMUdict)"),
}


def _function(trainable: Trainable) -> Callable:
    import importlib

    try:
        return getattr(importlib.import_module(trainable.module), trainable.function)
    except ImportError as error:
        raise TrainingError(f"training needs the train extra (pip install 'kantor[train]'): "
                            f"{error}") from None


def _preset(what: str, preset: str) -> str:
    """The preset's name in its module (the voice models and the live one name theirs)."""
    if what == "live-harmonizer":
        return {"default": "live", "tiny": "live-tiny"}[preset]
    if what in ("voice-prosody", "voice-acoustic", "voice-vocoder"):
        kind = what.removeprefix("voice-")
        return kind if preset == "default" else f"{kind}-{preset}"
    return preset


def train(what: str, preset: str = "default", run_dir: str | None = None,
          out: str | None = None, eval_limit: int | None = None,
          threads: int | None = None) -> list[str]:
    """Train ``what`` (a key of TRAINABLE) and export it; lines saying what was written
    (none on torchrun's processes other than rank 0)."""
    trainable = TRAINABLE[what]
    if preset not in trainable.presets:
        raise TrainingError(f"{what} takes the presets {', '.join(trainable.presets)}, not "
                            f"'{preset}'")
    run = _function(trainable)
    run_path, out_path = Path(run_dir or trainable.run_dir), Path(out or trainable.out)
    name = _preset(what, preset)
    if what in ("harmonizer", "live-harmonizer", "live-tutor"):
        paths = run(name, run_path, out_path, eval_limit=eval_limit, threads=threads)
        return [f"wrote {p} (+ card {p.with_suffix('.json').name})" for p in paths]
    if what == "g2p":
        paths = run(name, run_path, out_path, eval_limit=eval_limit)
        return [f"wrote {p} (+ card {p.with_suffix('.json').name})" for p in paths]
    try:  # the speech corpus not rendered or analysed yet
        card = (run(name, run_path, out_path, test_limit=eval_limit)
                if what == "voice-aligner" else run(name, run_path, out_path))
    except ValueError as error:
        raise TrainingError(str(error)) from None
    if card is None:  # not rank 0
        return []
    return [f"wrote {out_path / card['name']}.onnx: {json.dumps(card['metrics'])}"]


def evaluate_harmonizer(settings, split: str = "test", limit: int | None = None,
                        style: bool = False, seeds: int = 3, assets: str | None = None,
                        output: str | None = None) -> list[str]:
    """`kantor eval harmonizer`: the voice-leading yardstick of the offline harmoniser
    (``settings``: its GibbsSettings) on a held-out split, or with ``style`` Kantor's
    settings against Bach's, feature by feature and by a discriminator (JSON + plot).
    Returns the lines to print."""
    from kantor.engine.chorale.gibbs import ChoraleSampler
    from kantor.engine.models import ASSETS
    from kantor.export.chorale.corpus import load_corpus

    sampler = ChoraleSampler.load(Path(assets) if assets else ASSETS)
    if not style:
        from kantor.export.chorale.evaluate import evaluate

        report = evaluate(sampler, load_corpus(), settings, split=split, limit=limit)
        lines = []
        if output:
            Path(output).write_text(json.dumps(report, indent=2) + "\n")
            lines.append(f"wrote {output}")
        summary = {name: {k: round(v * 100, 2) for k, v in y["rates"].items()}
                   for name, y in report["yardstick"].items()}
        return [*lines, json.dumps({"model": report["model"], "rates_percent": summary},
                                   indent=2)]
    from kantor.engine.chorale.melody import harmonize_melody
    from kantor.export.chorale.style import HEADLINE, evaluate_style, melody_of, write_report

    seconds: list[float] = []

    def kantor(chorale, seed: int):
        settings.seed = seed
        result = harmonize_melody(sampler, melody_of(chorale), settings=settings)
        seconds.append(result.seconds)
        return result.raw

    report, _ = evaluate_style(load_corpus(), {"kantor": kantor}, split=split,
                               seeds=tuple(range(seeds)), limit=limit)
    report["sampler"] = {k: v for k, v in vars(settings).items() if k != "seed"}
    report["seconds_per_setting"] = {"mean": sum(seconds) / len(seconds), "max": max(seconds)}
    path = Path(output or f"benchmarks/results/harmonizer_style_{split}.json")
    write_report(report, path)
    system = report["systems"]["kantor"]
    disc, final, gap = (system["discriminator"], system["final_chord"],
                        system["progression_vs_bach"])
    bach, mine = report["features"]["bach"], report["features"]["kantor"]
    return [
        f"discriminator balanced accuracy {disc['balanced_accuracy']:.1%} "
        f"(95% CI {disc['ci95'][0]:.1%}-{disc['ci95'][1]:.1%}; 50% = cannot tell)"
        if disc.get("balanced_accuracy") is not None else
        f"discriminator: {disc.get('note', 'none')}",
        f"final chord with Bach's root and bass: {final['same_root_and_bass']}/"
        f"{final['settings']}",
        f"chord progressions under Bach's bigram: {gap['nats_per_chord']:+.2f} nats/chord "
        f"against Bach's own (95% CI {gap['ci95'][0]:+.2f} to {gap['ci95'][1]:+.2f})",
        f"{'feature':32s} {'Bach':>7s} {'Kantor':>7s}",
        *(f"{name:32s} {bach[name]:7.3f} {mine[name]:7.3f}" for name in HEADLINE
          if bach.get(name) is not None and mine.get(name) is not None),
        f"wrote {path} and {path.with_suffix('.png')}"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``train`` (shared with ``kantor train``)."""
    parser.add_argument("what", choices=list(TRAINABLE),
                        help="; ".join(f"{k}: {v.help}" for k, v in TRAINABLE.items()))
    parser.add_argument("--preset", default="default",
                        choices=sorted({p for t in TRAINABLE.values() for p in t.presets}),
                        help="tiny: seconds, for tests; long (harmonizer only): the default "
                             "trained 80 epochs instead of 40 (the shipped models); visible "
                             "(harmonizer only): trained without orderless masking")
    parser.add_argument("--run-dir", help="checkpoints; a run resumes from here (default "
                                          ".cache/runs/WHAT)")
    parser.add_argument("--out", help="where the ONNX models and cards go (default "
                                      ".cache/models/...)")
    parser.add_argument("--eval-limit", type=int,
                        help="score only the first N test items for the card")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per process for the chorale models (default 2; a "
                             "run may resume with another)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kantor.export",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_arguments(commands.add_parser("train", help="train a model and export it to ONNX"))
    args = parser.parse_args(argv)
    try:
        for line in train(args.what, args.preset, args.run_dir, args.out, args.eval_limit,
                          args.threads):
            print(line)
    except TrainingError as error:
        print(f"python -m kantor.export: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
