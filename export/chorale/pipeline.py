"""One command from corpus to shipped files: train, export, measure, write the cards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
from pathlib import Path

import torch

from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER, VOICES
from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.engine.chorale.melody import harmonize_melody
from kantor.engine.chorale.rules import rates
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.evaluate import model_nll, yardstick
from kantor.export.chorale.style import card_headline, evaluate_style, melody_of
from kantor.export.chorale.to_onnx import export_voices, write_card
from kantor.export.chorale.train import PRESETS, TrainConfig, train
from kantor.export.trainer import is_main_process

log = logging.getLogger(__name__)

OFFLINE_TASK = ("DeepBach voice network: the {voice}'s token at a step given the other voices "
                "and the window around it")


def _config(preset: str, threads: int | None) -> TrainConfig:
    config = PRESETS[preset]
    return dataclasses.replace(config, threads=threads) if threads else config


def train_and_export(preset: str, run_dir: Path, out_dir: Path,
                     eval_limit: int | None = None, threads: int | None = None) -> list[Path]:
    """Train the ``preset`` configuration, export it to ``out_dir`` and write cards with
    held-out metrics measured through ONNX Runtime. Returns the ONNX paths. ``threads``
    overrides the preset's CPU threads (one is steadier on a busy machine)."""
    config = _config(preset, threads)
    corpus = load_corpus(limit=config.corpus_limit)
    model, history = train(config, run_dir, corpus)
    if not is_main_process():  # torchrun's other processes trained; rank 0 exports
        return []
    vocab_sizes = [v.size for v in corpus.vocabularies]
    paths, parity = export_voices(list(model.voices), vocab_sizes, out_dir, "chorale")
    training = _training_record(preset, config, history)
    def card(v: int, metrics: dict) -> None:
        write_card(paths[v], model.voices[v], corpus, metrics, training, task=OFFLINE_TASK
                   .format(voice=VOICES[v]), shape={"context": config.net.context})

    for v in range(len(paths)):  # provisional cards so the runtime can load the files
        card(v, {})
    for v, metrics in enumerate(measure_offline(out_dir, corpus, eval_limit)):
        card(v, {**metrics, "onnx_parity_max_abs_logit_error": parity[v]})
    return paths


def measure_offline(model_dir: Path, corpus, eval_limit: int | None = None) -> list[dict]:
    """Held-out metrics of the four voice models in ``model_dir``, through ONNX Runtime
    and the engine's default sampler: per voice, NLL and accuracy of Bach's notes; for
    all, the voice-leading rates and the style evaluation of Kantor's settings."""
    sampler = ChoraleSampler.load(model_dir)
    test = corpus.split("test") or corpus.split("valid") or corpus.split("train")[:2]
    nll = model_nll(sampler, test)
    settings = GibbsSettings()
    voice_leading = yardstick(sampler, test[:eval_limit], settings, with_baseline=False)
    style = offline_style(sampler, corpus, test, settings, eval_limit)
    summary = {name: {k: round(r, 5) for k, r in rates(y["counts"]).items()}
               for name, y in voice_leading.items()}
    out = []
    for vocabulary in sampler.vocabularies:
        voice = vocabulary.voice
        out.append({
            "split": "test" if corpus.split("test") else "fallback",
            "test_tokens": nll["tokens_per_voice"],
            "nll_per_token_nats": round(nll[voice]["nll_per_token"], 5),
            "accuracy": round(nll[voice]["accuracy"], 5),
            "harmonisations_of_test_sopranos": {
                "chorales": len(test[:eval_limit]), "settings": "engine defaults",
                "sampler": {k: v for k, v in dataclasses.asdict(settings).items()
                            if k not in ("seed", "ranges")},
                "rates": summary,
                "soprano_reproduced": voice_leading["kantor"]["soprano_reproduced"]},
            "style_against_bach": style,
        })
    return out


def remeasure(model_dir: Path, live: bool = False) -> None:
    """Measure the models in ``model_dir`` again with today's engine (its sampler and
    rules change what the same weights make) and rewrite their cards' metrics; the
    weights, their hashes and the training record stay as they are."""
    import json

    corpus = load_corpus()
    stems = ([f"chorale-live-{VOICES[v]}" for v in LIVE_DECISION_ORDER] if live
             else [f"chorale-{v}" for v in VOICES])
    measured = measure_live(model_dir, corpus) if live else measure_offline(model_dir, corpus)
    for stem, metrics in zip(stems, measured, strict=True):
        path = model_dir / f"{stem}.json"
        card = json.loads(path.read_text())
        parity = card.get("metrics", {}).get("onnx_parity_max_abs_logit_error")
        card["metrics"] = {**metrics, "onnx_parity_max_abs_logit_error": parity,
                           "measured": dt.date.today().isoformat()}
        path.write_text(json.dumps(card, indent=2) + "\n")


def offline_style(sampler: ChoraleSampler, corpus, chorales: list, settings: GibbsSettings,
                  eval_limit: int | None) -> dict:
    """The style evaluation's headline for the card: Kantor's settings of the held-out
    melodies (3 seeds; 1 when ``eval_limit`` makes it a quick check) against Bach's."""
    def kantor(chorale, seed: int):
        return harmonize_melody(sampler, melody_of(chorale),
                                settings=dataclasses.replace(settings, seed=seed)).raw

    seeds = (0, 1, 2) if eval_limit is None else (0,)
    report, _ = evaluate_style(corpus, {"kantor": kantor}, seeds=seeds, limit=eval_limit,
                               chorales=chorales)
    return card_headline(report, "kantor")


LIVE_TASK = ("live voice network: the {voice}'s token at the current step from the past of "
             "all voices, the soprano up to a lookahead and the voices decided before it")
LIVE_LOOKAHEADS = (0, 1, 2, 4, 8)


def train_and_export_live(preset: str, run_dir: Path, out_dir: Path,
                          eval_limit: int | None = None, threads: int | None = None
                          ) -> list[Path]:
    """Train the live preset, export ``chorale-live-<voice>.onnx`` for the alto, tenor and
    bass, and write cards with held-out NLL per lookahead and the live yardstick."""
    config = _config(preset, threads)
    corpus = load_corpus(limit=config.corpus_limit)
    model, history = train(config, run_dir, corpus)
    if not is_main_process():
        return []
    vocab_sizes = [v.size for v in corpus.vocabularies]
    nets = [model.voice_net(v) for v in LIVE_DECISION_ORDER]
    paths, parity = export_voices(nets, vocab_sizes, out_dir, "chorale-live")
    training = _training_record(preset, config, history)
    shape = {"past": config.net.past, "lookahead_max": config.net.lookahead,
             "decision_order": [VOICES[v] for v in LIVE_DECISION_ORDER]}

    def card(i: int, metrics: dict) -> None:
        write_card(paths[i], nets[i], corpus, metrics, training,
                   task=LIVE_TASK.format(voice=VOICES[nets[i].voice]), shape=shape)

    for i in range(len(paths)):
        card(i, {})
    for i, metrics in enumerate(measure_live(out_dir, corpus, eval_limit)):
        card(i, {**metrics, "onnx_parity_max_abs_logit_error": parity[i]})
    return paths


def measure_live(model_dir: Path, corpus, eval_limit: int | None = None) -> list[dict]:
    """Held-out metrics of the live models in ``model_dir`` (in ``LIVE_DECISION_ORDER``):
    NLL per lookahead, the voice-leading rates of test sopranos played as MIDI, and the
    style evaluation of event mode."""
    from kantor.engine.chorale.live import LiveHarmonizer, LiveSettings
    from kantor.export.chorale.live_eval import live_nll, live_yardstick

    harmonizer = LiveHarmonizer.load(model_dir, LiveSettings(tuned=False))  # the prior's cards
    harmonizer.prepare()
    test = corpus.split("test") or corpus.split("valid") or corpus.split("train")[:2]
    lookaheads = [k for k in LIVE_LOOKAHEADS if k <= harmonizer.max_lookahead]
    nll = {k: live_nll(harmonizer, test, k) for k in lookaheads}
    yardstick_rates = {name: {r: round(v, 5) for r, v in result["rates"].items()}
                       for name, result in live_yardstick(harmonizer, test[:eval_limit],
                                                          tuple(lookaheads)).items()}
    style = live_style(harmonizer, corpus, test, eval_limit)
    out = []
    for v in LIVE_DECISION_ORDER:
        voice = VOICES[v]
        out.append({
            "split": "test" if corpus.split("test") else "fallback",
            "nll_per_token_nats_by_lookahead": {k: round(nll[k][voice]["nll_per_token"], 5)
                                                for k in lookaheads},
            "accuracy_by_lookahead": {k: round(nll[k][voice]["accuracy"], 5)
                                      for k in lookaheads},
            "live_harmonisations_of_test_sopranos": {
                "chorales": len(test[:eval_limit]), "settings": "engine defaults",
                "note": "clock_melody_D_steps_early: melody sent D steps ahead under MIDI "
                        "clock (the networks see D-1 steps past the decided one)",
                "rates": yardstick_rates},
            "style_against_bach_event_mode": style,
        })
    return out


def live_style(harmonizer, corpus, chorales: list, eval_limit: int | None,
               tell_tempo: bool = True) -> dict:
    """The style evaluation's headline for the live cards: each held-out soprano played
    into the harmoniser as MIDI in event mode (no clock), key by CC, the tempo by CC (or,
    without ``tell_tempo``, left to the harmoniser to follow), answers on the grid."""
    from kantor.export.chorale.live_eval import play_event_mode

    def live(chorale, seed: int):
        raw = play_event_mode(harmonizer, chorale, tell_tempo=tell_tempo)
        raw[0] = chorale.raw[0]  # the melody as played; only the answers are judged
        return raw

    report, _ = evaluate_style(corpus, {"kantor": live}, seeds=(0,), limit=eval_limit,
                               chorales=chorales)
    return card_headline(report, "kantor")


def _training_record(preset: str, config, history: dict) -> dict:
    return {"preset": preset, "config": config.to_json(),
            "best_epoch": history["best_epoch"], "best_valid_nll": history["best"],
            "processes": history.get("processes", 1),
            "training_seconds": round(sum(e["seconds"] for e in history["epochs"]), 1),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": config.threads, "torch": torch.__version__,
            "command": f"kantor train {'live-' if 'live' in preset else ''}harmonizer"
                       f" --preset {preset.replace('live-', '').replace('live', 'default')}"}


if __name__ == "__main__":  # python -m kantor.export.chorale.pipeline remeasure DIR [--live]
    import argparse

    parser = argparse.ArgumentParser(description=remeasure.__doc__.splitlines()[0])
    parser.add_argument("command", choices=["remeasure"])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--live", action="store_true", help="the live models")
    args = parser.parse_args()
    remeasure(args.model_dir, live=args.live)
