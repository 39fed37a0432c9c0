"""``kantor train live-tutor``: tune the shipped live networks (Sequence Tutor), export
them as ``chorale-live-tuned-<voice>.onnx`` with cards, and measure a row of the table
(export/chorale/tutor.py has the method).

A row, for the prior or a tuned set, on held-out test sopranos played into the live
harmoniser as MIDI in event mode (key by CC, the pedal on fermatas, engine defaults):
each rule's breaks per chord beside Bach's on the same melodies, Bach's log-likelihood
under the networks (teacher-forced, lookahead 0), the KL of the played policy to the
prior's at the states it visits, and the style evaluation (the discriminator, final
chords, sevenths resolved).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
from pathlib import Path

import numpy as np
import torch

from kantor.engine.chorale.encoding import LIVE_DECISION_ORDER, VOICES
from kantor.engine.chorale.live import (
    LIVE_MODEL_STEM,
    LIVE_TUNED_STEM,
    LiveHarmonizer,
    LiveSettings,
)
from kantor.engine.models import ASSETS, sha256_of
from kantor.export.chorale.corpus import Chorale, ChoraleCorpus
from kantor.export.chorale.rewards import rule_rates
from kantor.export.chorale.tutor import (
    TUTOR_PRESETS,
    RecordingHarmonizer,
    TutorConfig,
    chorale_context,
    rollout_report,
    train,
    voice_nets_from_onnx,
)

TUNED_TASK = ("live voice network tuned by reinforcement learning with KL control to the "
              "prior (Sequence Tutor): the {voice}'s token at the current step, as the "
              "prior's card says")


def tune_and_export(preset: str, run_dir: Path, out_dir: Path, eval_limit: int | None = None,
                    threads: int | None = None, assets: Path | None = None) -> list[Path]:
    """Tune the live networks in ``assets`` with preset ``preset``, export them to
    ``out_dir`` and write cards with the table's row for the prior and for the tuned
    networks."""
    from kantor.export.chorale.corpus import load_corpus
    from kantor.export.chorale.to_onnx import export_voices

    config = dataclasses.replace(TUTOR_PRESETS[preset])
    if threads is not None:
        config.threads = threads
    assets = Path(assets or ASSETS)
    nets, record, prior = train(config, run_dir, assets)
    vocab_sizes = [v.size for v in prior.vocabularies]
    paths, parity = export_voices([nets[v] for v in LIVE_DECISION_ORDER], vocab_sizes,
                                  out_dir, LIVE_TUNED_STEM.format(voice="").rstrip("-"))
    training = {"method": "policy gradient (REINFORCE, leave-one-out baseline over takes "
                          "of a melody) with beta x KL to the prior's engine policy",
                "preset": preset, "config": config.to_json(),
                "best_epoch": record["best_epoch"], "best_valid_objective": record["best"],
                "training_seconds": round(record["seconds"], 1),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "torch": torch.__version__,
                "command": f"kantor train live-tutor --preset {preset}"}
    for path in paths:
        write_tuned_card(path, assets, training, {})
    corpus = load_corpus(limit=config.corpus_limit)
    test = (corpus.split("test") or corpus.split("valid"))[:eval_limit]
    before = table_row(LiveHarmonizer.load(assets, LiveSettings(tuned=False)), corpus, test,
                       config)
    tuned = _load_tuned(assets, out_dir)
    after = table_row(tuned, corpus, test, config)
    for i, path in enumerate(paths):
        write_tuned_card(path, assets, training, {
            "sequence_tutor_table": {"prior": before, "tuned": after},
            "onnx_parity_max_abs_logit_error": parity[i]})
    return paths


def _load_tuned(assets: Path, tuned_dir: Path) -> LiveHarmonizer:
    """A harmoniser playing the tuned networks in ``tuned_dir`` over the prior in
    ``assets``."""
    from kantor.engine.models import load_model

    prior = LiveHarmonizer.load(assets, LiveSettings(tuned=False))
    tuned = {v: load_model(tuned_dir / f"{LIVE_TUNED_STEM.format(voice=VOICES[v])}.onnx")
             for v in LIVE_DECISION_ORDER}
    return LiveHarmonizer(prior.models, LiveSettings(tuned=True), tuned)


def write_tuned_card(path: Path, assets: Path, training: dict, metrics: dict) -> dict:
    """The tuned network's card: its prior's (shape, vocabulary, data, calibration: the
    policy was tuned through the prior's temperature scaling) with this training and
    these metrics."""
    voice = path.stem.rsplit("-", 1)[1]
    prior_card = json.loads((assets / f"{LIVE_MODEL_STEM.format(voice=voice)}.json").read_text())
    card = {**prior_card, "name": path.stem, "task": TUNED_TASK.format(voice=voice),
            "created": dt.date.today().isoformat(), "prior": prior_card["name"],
            "prior_sha256": prior_card["sha256"], "training": training, "metrics": metrics,
            "sha256": sha256_of(path)}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def table_row(harmonizer: LiveHarmonizer, corpus: ChoraleCorpus, chorales: list[Chorale],
              config: TutorConfig) -> dict:
    """One row of the Sequence Tutor table for the networks ``harmonizer`` plays."""
    from kantor.export.chorale.live_eval import live_nll, play_event_mode
    from kantor.export.chorale.pipeline import live_style

    harmonizer.prepare()
    played = {}
    for c in chorales:
        raw = play_event_mode(harmonizer, c)
        raw[0] = c.raw[0]
        played[c.name] = raw
    harmonizer.reset()
    rates = rule_rates([(played[c.name], *chorale_context(c)) for c in chorales])
    bach_rates = rule_rates([(c.raw, *chorale_context(c)) for c in chorales])
    nll = live_nll(harmonizer, chorales, 0)
    style = live_style(harmonizer, corpus, chorales, None)
    return {"networks": harmonizer.playing, "melodies": len(chorales),
            "rule_breaks_per_chord": {k: round(v, 5) for k, v in rates.items()},
            "bach_rule_breaks_per_chord": {k: round(v, 5) for k, v in bach_rates.items()},
            "bach_nll_nats_per_token": round(float(np.mean(
                [v["nll_per_token"] for v in nll.values()])), 5),
            "kl_to_prior_nats_per_decision": round(kl_to_prior(harmonizer, chorales, config),
                                                   5),
            "style": style}


def kl_to_prior(harmonizer: LiveHarmonizer, chorales: list[Chorale], config: TutorConfig
                ) -> float:
    """Mean KL (nats per voice decision) of the engine policy ``harmonizer`` plays to the
    prior's, at the states its own takes of ``chorales`` visit (0 for the prior)."""
    if harmonizer.playing == "prior":
        return 0.0
    played = voice_nets_from_onnx(harmonizer)
    prior_harmonizer = LiveHarmonizer(harmonizer.prior_models)
    prior = voice_nets_from_onnx(prior_harmonizer)
    player = RecordingHarmonizer(prior_harmonizer, played, LiveSettings())
    player.prepare()
    report = rollout_report(player, prior, chorales, config, player._calibration)
    return report["kl_per_decision"]
