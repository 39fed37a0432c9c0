"""Temperature scaling of the chorale voice networks (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017).

For each voice network one scalar T is fitted on the validation chorales so that
softmax(logits / T) has the lowest negative log-likelihood of Bach's own tokens there;
the held-out test chorales then report NLL and expected calibration error (ECE, 15
equal-width confidence bins) before and after. Offline networks see every other voice
(their own masked at the step); live networks decide in event mode (no lookahead), with
the live masks of engine/chorale/contract.py. The Sequence Tutor's tuned live networks are
reported too: they were tuned playing at their prior's temperatures and keep them (a T
refitted to Bach's chorales would undo part of the tuning), so their cards carry the test
NLL and ECE at that temperature, with the refitted T beside it.

    python -m kantor.export.chorale.calibration [--assets DIR] [--write-cards]

writes benchmarks/results/calibration.json and calibration.png (reliability diagrams);
``--write-cards`` records each T in its model's card, where the engine reads it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.engine.chorale.contract import live_hidden_by_decision, live_inputs, log_softmax
from kantor.engine.chorale.encoding import (
    LIVE_DECISION_ORDER,
    VOICES,
    pad_for_windows,
    raw_to_tokens,
)
from kantor.engine.models import ASSETS

BINS = 15
T_RANGE = (0.05, 20.0)


@dataclass
class Scored:
    """Logits ``float64 [N, vocab]`` of one network and the tokens Bach wrote ``[N]``."""

    logits: np.ndarray
    targets: np.ndarray


def nll(scored: Scored, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats/token) of the targets at ``temperature``."""
    logp = log_softmax(scored.logits / temperature)
    return float(-logp[np.arange(scored.targets.size), scored.targets].mean())


def fit_temperature(scored: Scored, low: float = T_RANGE[0], high: float = T_RANGE[1],
                    iterations: int = 60) -> float:
    """The T in [low, high] with the lowest NLL: golden-section search over log T (the NLL
    is convex in 1/T, so unimodal in log T)."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(scored, np.exp(c)), nll(scored, np.exp(d))
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(scored, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(scored, np.exp(d))
    return float(np.exp((a + b) / 2))


def reliability(scored: Scored, temperature: float = 1.0, bins: int = BINS) -> dict:
    """Expected calibration error of the top choice and the diagram's bins: per bin of
    confidence, how often the top token was Bach's, its mean confidence and its count."""
    probs = np.exp(log_softmax(scored.logits / temperature))
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == scored.targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for k in range(bins):
        inside = which == k
        count = int(inside.sum())
        accuracy = float(correct[inside].mean()) if count else None
        mean_confidence = float(confidence[inside].mean()) if count else None
        if count:
            ece += count / confidence.size * abs(accuracy - mean_confidence)
        table.append({"low": float(edges[k]), "high": float(edges[k + 1]), "count": count,
                      "accuracy": accuracy, "confidence": mean_confidence})
    return {"ece": float(ece), "accuracy": float(correct.mean()), "bins": table}


def offline_scores(sampler, chorales, batch: int = 2048, calibrated: bool = False
                   ) -> list[Scored]:
    """Per voice (S, A, T, B) the logits of every step of ``chorales`` (the networks' own,
    or divided by the cards' temperatures), each network seeing the other voices."""
    logits = [[] for _ in range(4)]
    targets = [[] for _ in range(4)]
    c = sampler.context
    for chorale in chorales:
        tokens = raw_to_tokens(chorale.raw, sampler.vocabularies)
        padded, padded_meta = pad_for_windows(tokens, chorale.meta, c)
        n = tokens.shape[1]
        for v in range(4):
            for i in range(0, n, batch):
                positions = np.arange(i, min(i + batch, n))
                windows, meta = sampler.windows(padded[None], padded_meta,
                                                np.zeros(positions.size, dtype=np.int64),
                                                positions, v)
                scored = (sampler.logits if calibrated else sampler.raw_logits)(
                    v, windows, meta)
                logits[v].append(scored.astype(np.float64))
                targets[v].append(tokens[v, positions])
    return [Scored(np.concatenate(logits[v]), np.concatenate(targets[v])) for v in range(4)]


def live_scores(harmonizer, chorales) -> list[Scored]:
    """Per live voice (LIVE_DECISION_ORDER) the raw logits of every step in event mode
    (no melody ahead), with the voices decided before it at Bach's notes."""
    past, window = harmonizer.past, harmonizer.window
    context = max(past, window - past - 1)
    hidden = live_hidden_by_decision(window, past, 0)
    logits = [[] for _ in LIVE_DECISION_ORDER]
    targets = [[] for _ in LIVE_DECISION_ORDER]
    for chorale in chorales:
        tokens = raw_to_tokens(chorale.raw, harmonizer.vocabularies)
        padded, padded_meta = pad_for_windows(tokens, chorale.meta, context)
        n = tokens.shape[1]
        idx = np.arange(n)[:, None] + (context - past) + np.arange(window)[None, :]
        windows = padded[:, idx].transpose(1, 0, 2)
        meta = np.ascontiguousarray(padded_meta[idx][..., harmonizer.meta_columns])
        for i, voice in enumerate(LIVE_DECISION_ORDER):
            out = harmonizer.models[voice].run({"tokens": live_inputs(windows, hidden[i]),
                                                "meta": meta})[0]
            logits[i].append(out.astype(np.float64))
            targets[i].append(tokens[voice])
    return [Scored(np.concatenate(logits[i]), np.concatenate(targets[i]))
            for i in range(len(LIVE_DECISION_ORDER))]


def calibrate(valid: list[Scored], test: list[Scored], names: list[str]) -> dict:
    """T per network from ``valid``; NLL and ECE on ``test`` before and after."""
    report = {}
    for name, fit_on, held_out in zip(names, valid, test, strict=True):
        temperature = fit_temperature(fit_on)
        before, after = reliability(held_out), reliability(held_out, temperature)
        report[name] = {
            "temperature": round(temperature, 4),
            "valid_nll": {"before": nll(fit_on), "after": nll(fit_on, temperature)},
            "test_nll": {"before": nll(held_out), "after": nll(held_out, temperature)},
            "test_ece": {"before": before["ece"], "after": after["ece"]},
            "test_accuracy": before["accuracy"],
            "test_tokens": int(held_out.targets.size),
            "reliability_before": before["bins"], "reliability_after": after["bins"]}
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("offline", "live", "live_tuned") if g in report]
    panels = [(group, name) for group in groups for name in report[group]]
    fig, axes = plt.subplots(len(groups), 4, figsize=(14, 3.5 * len(groups)), squeeze=False)
    for ax, (group, name) in zip(axes.flat, panels, strict=False):
        entry = report[group][name]
        for key, colour in (("reliability_before", "tab:red"),
                            ("reliability_after", "tab:blue")):
            points = [(b["confidence"], b["accuracy"]) for b in entry[key] if b["count"]]
            label = (f"T 1 (ECE {entry['test_ece']['before']:.3f})" if key.endswith("before")
                     else f"T {entry['temperature']:.2f} (ECE {entry['test_ece']['after']:.3f})")
            ax.plot(*zip(*points, strict=True), marker="o", color=colour, label=label)
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.set_title(f"{group} {name}", fontsize=10)
        ax.set_xlabel("confidence of the top token")
        ax.set_ylabel("share that is Bach's")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Reliability on the held-out test chorales: before and after temperature "
                 "scaling (T fitted on the validation chorales)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_temperatures(report: dict, assets: Path) -> None:
    """Record each network's T in its card (``calibration``), where the engine reads it."""
    for group, stem in (("offline", "chorale-{voice}"), ("live", "chorale-live-{voice}")):
        for voice, entry in report[group].items():
            path = assets / f"{stem.format(voice=voice)}.json"
            card = json.loads(path.read_text())
            card["calibration"] = {
                "temperature": entry["temperature"], "fitted_on": "valid",
                "method": "temperature scaling (Guo et al. 2017): logits / T",
                "test_nll": entry["test_nll"], "test_ece_15_bins": entry["test_ece"]}
            path.write_text(json.dumps(card, indent=2) + "\n")
    for voice, entry in report.get("live_tuned", {}).items():
        path = assets / f"chorale-live-tuned-{voice}.json"
        card = json.loads(path.read_text())
        card["calibration"] = {
            "temperature": entry["playing"]["temperature"],
            "fitted_on": "the prior's validation fit, kept: the policy was tuned playing at it",
            "method": "temperature scaling (Guo et al. 2017): logits / T",
            "test_nll": entry["playing"]["test_nll"],
            "test_ece_15_bins": entry["playing"]["test_ece"],
            "refitted_on_valid": {"temperature": entry["temperature"],
                                  "test_nll": entry["test_nll"]["after"],
                                  "test_ece_15_bins": entry["test_ece"]["after"]}}
        path.write_text(json.dumps(card, indent=2) + "\n")


def at_playing_temperature(report: dict, test: list[Scored], temperatures: list[float]
                           ) -> dict:
    """Add to each network of ``report`` its test NLL and ECE at the temperature it plays
    at (not refitted)."""
    for entry, held_out, temperature in zip(report.values(), test, temperatures, strict=True):
        entry["playing"] = {"temperature": temperature,
                            "test_nll": nll(held_out, temperature),
                            "test_ece": reliability(held_out, temperature)["ece"]}
    return report


def main(argv: list[str] | None = None) -> None:
    from kantor.engine.chorale.gibbs import ChoraleSampler
    from kantor.engine.chorale.live import LiveHarmonizer
    from kantor.export.chorale.corpus import load_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--write-cards", action="store_true",
                        help="record each temperature in its model's card")
    args = parser.parse_args(argv)
    corpus = load_corpus()
    valid, test = corpus.split("valid"), corpus.split("test")
    sampler = ChoraleSampler.load(args.assets)
    live = LiveHarmonizer.load(args.assets)
    live.prepare()
    live_names = [VOICES[v] for v in LIVE_DECISION_ORDER]
    report = {"method": "one temperature per voice network, fitted on the validation "
                        f"chorales ({len(valid)}) by NLL; NLL and ECE ({BINS} equal-width "
                        f"bins of top-token confidence) on the test chorales ({len(test)})",
              "offline": calibrate(offline_scores(sampler, valid),
                                   offline_scores(sampler, test), list(VOICES)),
              "live": calibrate(live_scores(live, valid), live_scores(live, test),
                                live_names)}
    if live.has_tuned:
        live.apply_parameter("tuned", True)
        tuned_test = live_scores(live, test)
        report["live_tuned"] = at_playing_temperature(
            calibrate(live_scores(live, valid), tuned_test, live_names), tuned_test,
            [live._calibration[v] for v in LIVE_DECISION_ORDER])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out / "calibration.png")
    for group in ("offline", "live", "live_tuned"):
        for name, entry in report.get(group, {}).items():
            print(f"{group:10s} {name:8s} T {entry['temperature']:.3f}  test NLL "
                  f"{entry['test_nll']['before']:.4f} -> {entry['test_nll']['after']:.4f}  "
                  f"ECE {entry['test_ece']['before']:.4f} -> {entry['test_ece']['after']:.4f}"
                  + (f"  at its playing T {entry['playing']['temperature']:.3f}: NLL "
                     f"{entry['playing']['test_nll']:.4f}, ECE "
                     f"{entry['playing']['test_ece']:.4f}" if "playing" in entry else ""))
    if args.write_cards:
        write_temperatures(report, args.assets)


if __name__ == "__main__":
    main()
