"""Score the harmoniser on the held-out test chorales, through the shipped runtime.

* model: negative log-likelihood per token (nats) and accuracy, per voice, of Bach's
  own notes under the ONNX voice networks (every step, original key);
* yardstick: the voice-leading report (:mod:`kantor.engine.chorale.rules`) of the
  harmonisations Kantor makes from each test soprano, side by side with Bach's own
  settings of the same chorales and with the rule-based baseline.

``kantor eval harmonizer -o results.json`` runs it.
"""

from __future__ import annotations

import collections
import time
from dataclasses import asdict

import numpy as np
from tqdm import tqdm

from kantor.engine.chorale.contract import log_softmax
from kantor.engine.chorale.encoding import VOICES
from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.engine.chorale.melody import harmonize_melody
from kantor.engine.chorale.rules import rates, voice_leading_report
from kantor.export.chorale.baseline import harmonize_by_rules
from kantor.export.chorale.corpus import Chorale, ChoraleCorpus
from kantor.export.chorale.style import melody_of


def model_nll(sampler: ChoraleSampler, chorales: list[Chorale], batch: int = 2048) -> dict:
    """Per-voice mean NLL (nats/token) and accuracy of the given chorales' own tokens, from
    the logits the sampler samples from (calibrated)."""
    from kantor.export.chorale.calibration import offline_scores

    scores = offline_scores(sampler, chorales, batch, calibrated=True)
    count = int(scores[0].targets.size)
    report = {}
    for voice, scored in zip(VOICES, scores, strict=True):
        logp = log_softmax(scored.logits)
        rows = np.arange(count)
        report[voice] = {
            "nll_per_token": float(-logp[rows, scored.targets].sum() / count),
            "accuracy": float((scored.logits.argmax(1) == scored.targets).sum() / count)}
    return report | {"tokens_per_voice": count}


def _summarise(counts: collections.Counter) -> dict:
    return {"counts": dict(counts), "rates": rates(counts)}


def yardstick(sampler: ChoraleSampler, chorales: list[Chorale], settings: GibbsSettings,
              with_baseline: bool = True, progress: bool = True) -> dict:
    """Voice-leading report of Kantor's, Bach's and the baseline's harmonisations."""
    totals = {"kantor": collections.Counter(), "bach": collections.Counter()}
    if with_baseline:
        totals["rule_baseline"] = collections.Counter()
    soprano_exact = 0
    seconds = []
    for chorale in tqdm(chorales, desc="harmonising test sopranos", disable=not progress):
        # As a user's melody: key read from it, cadences at its fermatas, final chord.
        result = harmonize_melody(sampler, melody_of(chorale), settings=settings)
        seconds.append(result.seconds)
        soprano_exact += bool(np.array_equal(result.raw[0], chorale.raw[0]))
        totals["kantor"].update(voice_leading_report(result.raw, chorale.meta))
        totals["bach"].update(voice_leading_report(chorale.raw, chorale.meta))
        if with_baseline:
            baseline = harmonize_by_rules(chorale.raw[0], chorale.meta)
            totals["rule_baseline"].update(voice_leading_report(baseline, chorale.meta))
    report = {name: _summarise(c) for name, c in totals.items()}
    report["kantor"]["soprano_reproduced"] = f"{soprano_exact}/{len(chorales)}"
    report["kantor"]["seconds_per_chorale"] = {"mean": float(np.mean(seconds)),
                                               "max": float(np.max(seconds))}
    return report


def evaluate(sampler: ChoraleSampler, corpus: ChoraleCorpus, settings: GibbsSettings,
             split: str = "test", limit: int | None = None, with_baseline: bool = True) -> dict:
    """The whole evaluation as one JSON-ready dict."""
    chorales = corpus.split(split)[:limit]
    started = time.perf_counter()
    settings_json = asdict(settings)
    return {
        "split": split,
        "chorales": [c.name for c in chorales],
        "settings": settings_json,
        "model": model_nll(sampler, chorales),
        "yardstick": yardstick(sampler, chorales, settings, with_baseline),
        "seconds": time.perf_counter() - started,
    }
