"""One command from corpus to shipped files: train, export, measure, write the cards."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import torch

from kantor.engine.chorale.encoding import VOICES
from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.engine.chorale.rules import rates
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.evaluate import model_nll, yardstick
from kantor.export.chorale.to_onnx import export_voices, write_card
from kantor.export.chorale.train import PRESETS, train

log = logging.getLogger(__name__)

OFFLINE_TASK = ("DeepBach voice network: the {voice}'s token at a step given the other voices "
                "and the window around it")


def train_and_export(preset: str, run_dir: Path, out_dir: Path,
                     eval_limit: int | None = None) -> list[Path]:
    """Train the ``preset`` configuration, export it to ``out_dir`` and write cards with
    held-out metrics measured through ONNX Runtime. Returns the ONNX paths."""
    config = PRESETS[preset]
    corpus = load_corpus(limit=config.corpus_limit)
    started = time.perf_counter()
    model, history = train(config, run_dir, corpus)
    train_seconds = time.perf_counter() - started
    vocab_sizes = [v.size for v in corpus.vocabularies]
    paths, parity = export_voices(list(model.voices), vocab_sizes, out_dir, "chorale")
    training = {"preset": preset, "config": config.to_json(),
                "best_epoch": history["best_epoch"],
                "best_valid_nll": history["best_valid_nll"],
                "seconds_this_session": round(train_seconds, 1),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "threads": config.threads, "torch": torch.__version__,
                "command": f"kantor train harmonizer --preset {preset}"}
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
        }
        card(v, metrics)
    return paths
