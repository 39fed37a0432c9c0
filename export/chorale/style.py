"""Does Kantor sound like Bach? Its settings and Bach's of the same held-out melodies,
compared feature by feature and by a discriminator under grouped cross-validation.

``kantor eval harmonizer --style`` runs it. The discriminator is a plain logistic
regression on every feature of :mod:`kantor.export.chorale.analysis`, cross-validated
leave-one-melody-out (a melody's settings, Bach's and Kantor's, are never on both sides);
its balanced accuracy is 50% when it cannot tell them apart. It is the *reporting*
classifier: nothing in Kantor is trained or selected against it. Settings are chosen on
the validation chorales (by a discriminator fitted on them and :func:`style_gaps`) and
reported on the test chorales.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kantor.engine.chorale.encoding import sounding_pitches
from kantor.engine.chorale.keys import Key, key_of_setting
from kantor.engine.chorale.melody import Melody
from kantor.export.chorale.analysis import (
    ChordBigram,
    chord_at,
    chord_symbols,
    setting_features,
)
from kantor.export.chorale.corpus import Chorale, ChoraleCorpus

# Features the report and the plot lead with (the list of what gives Kantor away).
HEADLINE = ("alto_quarter", "alto_eighth", "tenor_eighth", "bass_eighth", "alto_repeated",
            "tenor_repeated", "alto_suspensions_per_beat", "tenor_suspensions_per_beat",
            "complete_triads", "seventh_chords", "sevenths_resolved", "leading_tone_in_minor",
            "fermata_fifth_down", "fermata_on_other", "final_on_tonic",
            "final_root_position", "parallel_fifths", "parallel_octaves", "spacing",
            "out_of_range")
BOOTSTRAP = 2000


def melody_of(chorale: Chorale) -> Melody:
    """The soprano of a corpus chorale as a user's melody (metre, pickup, key signature
    and fermatas as the score gives them)."""
    downbeats = np.flatnonzero(chorale.meta[:, 1])
    steps_per_bar = int(np.diff(downbeats[:2])[0]) if downbeats.size > 1 else 16
    first = int(downbeats[0]) if downbeats.size else 0
    return Melody(soprano=chorale.raw[0].copy(), steps_per_bar=steps_per_bar,
                  bar_offset_steps=(steps_per_bar - first) % steps_per_bar,
                  key_sharps=int(chorale.key_sharps),
                  fermatas=chorale.meta[:, 2].astype(bool), title=chorale.name)


@dataclass
class Setting:
    """One four-part setting of a held-out melody: Bach's or a harmoniser's."""

    chorale: str
    source: str  # "bach" or the system's name
    seed: int
    raw: np.ndarray
    features: dict[str, tuple[float, float]] = field(default_factory=dict)


def fit_progression_model(chorales: list[Chorale]) -> ChordBigram:
    """Bach's chord bigram from his own (training) settings, each in its own key."""
    return ChordBigram().fit([chord_symbols(c.raw, c.meta, key_of_setting(c.raw))
                              for c in chorales])


def describe(setting: Setting, chorale: Chorale, key: Key, bigram: ChordBigram) -> Setting:
    """Fill in a setting's features, the progression's log-likelihood among them."""
    features = setting_features(setting.raw, chorale.meta, key)
    features["progression_logp_per_chord"] = bigram.score(
        chord_symbols(setting.raw, chorale.meta, key))
    setting.features = features
    return setting


Harmoniser = Callable[[Chorale, int], np.ndarray]  # (chorale, seed) -> raw [4, T]


def settings_for(chorales: list[Chorale], harmonisers: dict[str, Harmoniser],
                 seeds: tuple[int, ...], bigram: ChordBigram, progress: bool = True
                 ) -> list[Setting]:
    """Bach's setting of each chorale and each harmoniser's settings (one per seed)."""
    rows = []
    jobs = len(chorales) * (1 + len(harmonisers) * len(seeds))
    bar = tqdm(total=jobs, desc="settings", unit="setting", disable=not progress)
    for chorale in chorales:
        key = key_of_setting(chorale.raw)
        rows.append(describe(Setting(chorale.name, "bach", 0, chorale.raw), chorale, key,
                             bigram))
        bar.update()
        for name, harmonise in harmonisers.items():
            for seed in seeds:
                raw = harmonise(chorale, seed)
                rows.append(describe(Setting(chorale.name, name, seed, raw), chorale, key,
                                     bigram))
                bar.update()
    bar.close()
    return rows


def pooled(rows: list[Setting], names: list[str]) -> dict[str, float | None]:
    """Each feature pooled over settings: total count / total denominator."""
    out = {}
    for name in names:
        count = sum(r.features[name][0] for r in rows)
        denominator = sum(r.features[name][1] for r in rows)
        out[name] = count / denominator if denominator else None
    return out


def feature_matrix(rows: list[Setting], names: list[str]) -> np.ndarray:
    """Per-setting ratios ``[settings, features]``, NaN where a denominator is zero."""
    matrix = np.full((len(rows), len(names)), np.nan)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            count, denominator = row.features[name]
            if denominator:
                matrix[i, j] = count / denominator
    return matrix


def discriminate(rows: list[Setting], system: str, seed: int = 0) -> dict:
    """Can a logistic regression tell ``system``'s settings from Bach's? Leave-one-melody-
    out balanced accuracy with a bootstrap 95% interval over melodies, and the features
    it leans on most (standardised coefficients of a fit on everything)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    chosen = [r for r in rows if r.source in ("bach", system)]
    melodies = sorted({r.chorale for r in chosen})
    if len(melodies) < 4:
        return {"system": system, "balanced_accuracy": None, "ci95": None,
                "melodies": len(melodies), "note": "too few melodies to cross-validate"}
    names = sorted(chosen[0].features)
    x = feature_matrix(chosen, names)
    y = np.array([r.source == system for r in chosen], dtype=int)
    groups = np.array([r.chorale for r in chosen])

    def model():
        return make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                             StandardScaler(),
                             LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000))

    predicted = np.zeros_like(y)
    for train, test in LeaveOneGroupOut().split(x, y, groups):
        predicted[test] = model().fit(x[train], y[train]).predict(x[test])
    accuracy = balanced_accuracy_score(y, predicted)
    rng = np.random.default_rng(seed)
    melodies = np.unique(groups)
    index_of = {m: np.flatnonzero(groups == m) for m in melodies}
    samples = []
    for _ in range(BOOTSTRAP):
        pick = np.concatenate([index_of[m] for m in rng.choice(melodies, melodies.size)])
        if len(set(y[pick])) == 2:
            samples.append(balanced_accuracy_score(y[pick], predicted[pick]))
    low, high = np.percentile(samples, [2.5, 97.5])
    fitted = model().fit(x, y)
    weights = fitted[-1].coef_[0]
    order = np.argsort(-np.abs(weights))[:12]
    return {"system": system, "balanced_accuracy": float(accuracy),
            "ci95": [float(low), float(high)],
            "bach_settings": int((y == 0).sum()), "system_settings": int((y == 1).sum()),
            "melodies": int(melodies.size), "features": len(names),
            "cross_validation": "leave one melody out (all its settings on one side)",
            "classifier": "standardised logistic regression, C=1, balanced class weights",
            "leans_on": {names[i]: round(float(weights[i]), 3) for i in order}}


def final_chord_agreement(rows: list[Setting], chorales: dict[str, Chorale], system: str
                          ) -> dict:
    """How often the system's final chord has Bach's root and bass (pitch classes)."""
    hits = total = 0
    for row in rows:
        if row.source != system:
            continue
        bach = sounding_pitches(chorales[row.chorale].raw)
        mine = sounding_pitches(row.raw)
        total += 1
        if (mine[:, -1] >= 0).all():
            same_root = chord_at(mine, mine.shape[1] - 1).root == chord_at(
                bach, bach.shape[1] - 1).root
            hits += int(same_root and mine[3, -1] % 12 == bach[3, -1] % 12)
    return {"same_root_and_bass": hits, "settings": total,
            "share": hits / total if total else None}


def progression_gap(rows: list[Setting], system: str) -> dict:
    """Mean log-likelihood per chord under Bach's bigram: system minus Bach on the same
    melodies, with a bootstrap 95% interval over melodies."""
    by_melody: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row.source in ("bach", system):
            total, chords = row.features["progression_logp_per_chord"]
            by_melody.setdefault(row.chorale, {}).setdefault(row.source, []).append(
                total / max(chords, 1))
    gaps = np.array([np.mean(v[system]) - v["bach"][0] for v in by_melody.values()
                     if system in v])
    rng = np.random.default_rng(0)
    means = [rng.choice(gaps, gaps.size).mean() for _ in range(BOOTSTRAP)]
    return {"nats_per_chord": float(gaps.mean()),
            "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]}


def compare(rows: list[Setting], chorales: list[Chorale], systems: list[str]) -> dict:
    """The report: pooled features per source, discriminator, final chords, progressions."""
    names = sorted(rows[0].features)
    by_name = {c.name: c for c in chorales}
    report = {"features": {source: pooled([r for r in rows if r.source == source], names)
                           for source in ["bach", *systems]},
              "systems": {}}
    for system in systems:
        report["systems"][system] = {
            "discriminator": discriminate(rows, system),
            "final_chord": final_chord_agreement(rows, by_name, system),
            "progression_vs_bach": progression_gap(rows, system),
        }
    return report


PROGRESSION_SCALE_NATS = 0.5  # a progression gap of 0.5 nats/chord weighs as one unit


def style_gaps(report: dict, system: str) -> dict[str, float]:
    """How far ``system`` is from Bach on the headline features, in units of each
    feature's binomial spread, and in its chord progressions' likelihood under Bach's
    bigram (per :data:`PROGRESSION_SCALE_NATS`), for choosing settings on the validation
    split; no classifier involved."""
    bach, mine = report["features"]["bach"], report["features"][system]
    gaps = {"progression": report["systems"][system]["progression_vs_bach"]["nats_per_chord"]
            / PROGRESSION_SCALE_NATS} if system in report.get("systems", {}) else {}
    for name in HEADLINE:
        if bach.get(name) is None or mine.get(name) is None:
            continue
        scale = max(math.sqrt(max(bach[name] * (1 - bach[name]), 1e-4)), 0.05)
        gaps[name] = (mine[name] - bach[name]) / scale
    return gaps


def settings_to_json(rows: list[Setting]) -> list[dict]:
    return [{"chorale": r.chorale, "source": r.source, "seed": r.seed,
             "final_chord": [int(p) for p in sounding_pitches(r.raw)[:, -1]]} for r in rows]


def write_report(report: dict, path: Path) -> None:
    """The JSON beside its plot (same stem, .png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    plot_report(report, path.with_suffix(".png"))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value)} is not JSON")


def plot_report(report: dict, path: Path) -> None:
    """Headline features per source beside Bach's, and each discriminator's accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(report["features"])
    names = [n for n in HEADLINE if report["features"]["bach"].get(n) is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.32 * len(names) + 2.5),
                                      gridspec_kw={"width_ratios": [3, 1.2]})
    height = 0.8 / len(sources)
    for i, source in enumerate(sources):
        values = [report["features"][source].get(n) or 0.0 for n in names]
        left.barh(np.arange(len(names)) + i * height, values, height, label=source)
    left.set_yticks(np.arange(len(names)) + 0.4 - height / 2, names, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("share (pooled over the held-out settings)")
    left.legend(fontsize=8, loc="lower right")
    # too few melodies (a --limit) leave a system without a discriminator: not drawn
    systems = [s for s in report["systems"]
               if report["systems"][s]["discriminator"].get("balanced_accuracy") is not None]
    accuracy = [report["systems"][s]["discriminator"]["balanced_accuracy"] * 100
                for s in systems]
    errors = np.array([[a - report["systems"][s]["discriminator"]["ci95"][0] * 100,
                        report["systems"][s]["discriminator"]["ci95"][1] * 100 - a]
                       for s, a in zip(systems, accuracy, strict=True)]).T
    right.barh(systems, accuracy, xerr=errors, color="tab:gray")
    right.axvline(50, color="k", linestyle="--", label="chance")
    right.axvline(70, color="tab:red", linestyle=":", label="target")
    right.set_xlim(0, 100)
    right.set_xlabel("discriminator balanced accuracy (%)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_style(corpus: ChoraleCorpus, harmonisers: dict[str, Harmoniser],
                   split: str = "test", seeds: tuple[int, ...] = (0, 1, 2),
                   limit: int | None = None, progress: bool = True,
                   chorales: list[Chorale] | None = None) -> tuple[dict, list]:
    """Settings of the ``split``'s melodies (or of ``chorales``) by each harmoniser,
    compared with Bach's."""
    chorales = (corpus.split(split) if chorales is None else chorales)[:limit]
    bigram = fit_progression_model(corpus.split("train"))
    rows = settings_for(chorales, harmonisers, seeds, bigram, progress)
    report = compare(rows, chorales, list(harmonisers))
    report |= {"split": split, "chorales": [c.name for c in chorales], "seeds": list(seeds),
               "keys": {c.name: str(key_of_setting(c.raw)) for c in chorales}}
    return report, rows


def card_headline(report: dict, system: str) -> dict:
    """The figures a model card carries: the discriminator, final chords, progressions
    and the features that told Kantor from Bach, each beside Bach's value."""
    result = report["systems"][system]
    bach, mine = report["features"]["bach"], report["features"][system]
    disc = result["discriminator"]

    def pair(name: str) -> dict:
        return {"kantor": _round(mine.get(name)), "bach": _round(bach.get(name))}

    return {
        "split": report.get("split"), "melodies": len(report.get("chorales", [])),
        "settings_per_melody": len(report.get("seeds", [0])),
        "discriminator_balanced_accuracy": _round(disc["balanced_accuracy"]),
        "discriminator_ci95": [_round(x) for x in disc["ci95"]] if disc["ci95"] else None,
        "final_chord_root_and_bass_as_bach": _round(result["final_chord"]["share"]),
        "progression_vs_bach_nats_per_chord": _round(
            result["progression_vs_bach"]["nats_per_chord"]),
        **{name: pair(name) for name in HEADLINE},
        "evaluation": "kantor eval harmonizer --style (export/chorale/style.py)",
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
