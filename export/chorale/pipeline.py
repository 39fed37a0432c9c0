"""One command from corpus to shipped files: train, export, measure, write the cards."""

from __future__ import annotations

import dataclasses
import logging
import platform
from pathlib import Path

import torch

from kantor.engine.chorale.encoding import VOICES
from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.engine.chorale.melody import harmonize_melody
from kantor.engine.chorale.rules import rates
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.evaluate import model_nll, yardstick
from kantor.export.chorale.style import card_headline, evaluate_style, melody_of
from kantor.export.chorale.to_onnx import export_voices, write_card
from kantor.export.chorale.train import PRESETS, TrainConfig, train

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
    vocab_sizes = [v.size for v in corpus.vocabularies]
    paths, parity = export_voices(list(model.voices), vocab_sizes, out_dir, "chorale")
    training = _training_record(preset, config, history)
    def card(v: int, metrics: dict) -> None:
        write_card(paths[v], model.voices[v], corpus, metrics, training, task=OFFLINE_TASK
                   .format(voice=VOICES[v]), shape={"context": config.net.context})

    for v in range(len(paths)):  # provisional cards so the runtime can load the files
        card(v, {})
    sampler = ChoraleSampler.load(out_dir)
    test = corpus.split("test") or corpus.split("valid") or corpus.split("train")[:2]
    nll = model_nll(sampler, test)
    settings = GibbsSettings()
    voice_leading = yardstick(sampler, test[:eval_limit], settings, with_baseline=False)
    style = offline_style(sampler, corpus, test, settings, eval_limit)
    summary = {name: {k: round(r, 5) for k, r in rates(y["counts"]).items()}
               for name, y in voice_leading.items()}
    for v in range(len(paths)):
        voice = sampler.vocabularies[v].voice
        metrics = {
            "split": "test" if corpus.split("test") else "fallback",
            "test_tokens": nll["tokens_per_voice"],
            "nll_per_token_nats": round(nll[voice]["nll_per_token"], 5),
            "accuracy": round(nll[voice]["accuracy"], 5),
            "onnx_parity_max_abs_logit_error": parity[v],
            "harmonisations_of_test_sopranos": {
                "chorales": len(test[:eval_limit]), "settings": "engine defaults",
                "rates": summary,
                "soprano_reproduced": voice_leading["kantor"]["soprano_reproduced"]},
            "style_against_bach": style,
        }
        card(v, metrics)
    return paths


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
    from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER
    from kantor.engine.chorale.live import LiveHarmonizer
    from kantor.export.chorale.live_eval import live_nll, live_yardstick

    config = _config(preset, threads)
    corpus = load_corpus(limit=config.corpus_limit)
    model, history = train(config, run_dir, corpus)
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
    harmonizer = LiveHarmonizer.load(out_dir)
    harmonizer.prepare()
    test = corpus.split("test") or corpus.split("valid") or corpus.split("train")[:2]
    lookaheads = [k for k in LIVE_LOOKAHEADS if k <= config.net.lookahead]
    nll = {k: live_nll(harmonizer, test, k) for k in lookaheads}
    yardstick_rates = {name: {r: round(v, 5) for r, v in result["rates"].items()}
                       for name, result in live_yardstick(harmonizer, test[:eval_limit],
                                                          tuple(lookaheads)).items()}
    style = live_style(harmonizer, corpus, test, eval_limit)
    for i, net in enumerate(nets):
        voice = VOICES[net.voice]
        card(i, {
            "split": "test" if corpus.split("test") else "fallback",
            "nll_per_token_nats_by_lookahead": {k: round(nll[k][voice]["nll_per_token"], 5)
                                                for k in lookaheads},
            "accuracy_by_lookahead": {k: round(nll[k][voice]["accuracy"], 5)
                                      for k in lookaheads},
            "onnx_parity_max_abs_logit_error": parity[i],
            "live_harmonisations_of_test_sopranos": {
                "chorales": len(test[:eval_limit]), "settings": "engine defaults",
                "note": "clock_melody_D_steps_early: melody sent D steps ahead under MIDI "
                        "clock (the networks see D-1 steps past the decided one)",
                "rates": yardstick_rates},
            "style_against_bach_event_mode": style,
        })
    return paths


def live_style(harmonizer, corpus, chorales: list, eval_limit: int | None) -> dict:
    """The style evaluation's headline for the live cards: each held-out soprano played
    into the harmoniser as MIDI in event mode (no clock), key by CC, answers on the grid."""
    from kantor.export.chorale.live_eval import play_event_mode

    def live(chorale, seed: int):
        raw = play_event_mode(harmonizer, chorale)
        raw[0] = chorale.raw[0]  # the melody as played; only the answers are judged
        return raw

    report, _ = evaluate_style(corpus, {"kantor": live}, seeds=(0,), limit=eval_limit,
                               chorales=chorales)
    return card_headline(report, "kantor")


def _training_record(preset: str, config, history: dict) -> dict:
    return {"preset": preset, "config": config.to_json(),
            "best_epoch": history["best_epoch"], "best_valid_nll": history["best_valid_nll"],
            "training_seconds": round(sum(e["seconds"] for e in history["epochs"]), 1),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": config.threads, "torch": torch.__version__,
            "command": f"kantor train {'live-' if 'live' in preset else ''}harmonizer"
                       f" --preset {preset.replace('live-', '').replace('live', 'default')}"}
