"""Would ranking the sampler's chains by a Bach-or-not critic make settings more Bach-like?

Every chain of the default sampler (8 instead of 4) is kept for each melody. A critic
(export/chorale/critic.py: a logistic regression on the style features) is fitted on the
*training* chorales only, Bach's settings against the default pick among the first 4
chains. On the validation chorales the picks are compared: the default (fewest rule
breaks, then the likeliest), the first chain with the fewest breaks (a draw), and the
critic's favourite among the first 4 and among all 8 chains, each scored by the style
evaluation (its own discriminator, refitted on validation settings, leave one melody out).
The test chorales are not touched.

    python benchmarks/harmonizer_chain_ranking.py            # ~20 min on 2 cores, cached

Writes benchmarks/results/harmonizer_chain_ranking_valid.json and .png.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.engine.chorale.keys import key_of_setting
from kantor.engine.chorale.melody import harmonize_melody
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.critic import StyleCritic
from kantor.export.chorale.style import (
    Setting,
    compare,
    describe,
    fit_progression_model,
    melody_of,
    style_gaps,
)

CACHE = Path(".cache/style/rank")
CHAINS = 8
SHOWN = ("alto_eighth", "tenor_eighth", "alto_suspensions_per_beat",
         "tenor_suspensions_per_beat", "seventh_chords", "third_inversion",
         "fermata_fifth_down", "leading_tone_in_minor")


def all_chains(split: str, chorales, seeds: list[int]) -> dict:
    """(melody, seed) -> (every chain's raw setting, each chain's (breaks, likelihood))."""
    path = CACHE / f"{split}_{CHAINS}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    sampler = ChoraleSampler.load()
    out = {}
    for chorale in tqdm(chorales, desc=f"{split} chains"):
        for seed in seeds:
            result = harmonize_melody(sampler, melody_of(chorale),
                                      settings=GibbsSettings(chains=CHAINS, seed=seed))
            out[(chorale.name, seed)] = (result.candidates, result.chain_scores,
                                         result.seconds)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def likeliest(scores, n: int) -> int:
    """The default pick among the first ``n`` chains."""
    return min(range(n), key=lambda k: (scores[k][0], -scores[k][1]))


def critics_pick(scores, liked: list[float], n: int) -> int:
    """Among the first ``n`` chains with the fewest rule breaks, the critic's favourite."""
    fewest = min(scores[k][0] for k in range(n))
    return max((k for k in range(n) if scores[k][0] == fewest), key=lambda k: liked[k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="validation seeds")
    parser.add_argument("--strength", type=float, nargs="*", default=[0.01, 0.1, 1.0],
                        help="the critic's inverse L2 penalties to try")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    corpus = load_corpus()
    training, chorales = corpus.split("train"), corpus.split("valid")
    bigram = fit_progression_model(training)
    train = all_chains("train", training, [0])
    valid = all_chains("valid", chorales, list(range(args.seeds)))
    takes = {c.name: train[(c.name, 0)][0][likeliest(train[(c.name, 0)][1], 4)]
             for c in training}
    lines = []
    for strength in args.strength:
        critic = StyleCritic.fit(training, takes, bigram, strength=strength)
        rows, systems = [], ("default (likeliest of 4)", "first of 4", "critic's of 4",
                             f"critic's of {CHAINS}")
        for chorale in chorales:
            key = key_of_setting(chorale.raw)
            rows.append(describe(Setting(chorale.name, "bach", 0, chorale.raw), chorale,
                                 key, bigram))
            for seed in range(args.seeds):
                candidates, scores, _ = valid[(chorale.name, seed)]
                liked = [critic.score(c, chorale) for c in candidates]
                picks = (likeliest(scores, 4), min(range(4), key=lambda k: (scores[k][0], k)),
                         critics_pick(scores, liked, 4), critics_pick(scores, liked, CHAINS))
                for system, k in zip(systems, picks, strict=True):
                    rows.append(describe(Setting(chorale.name, system, seed, candidates[k]),
                                         chorale, key, bigram))
        report = compare(rows, chorales, list(systems))
        for system in systems:
            if "critic" not in system and lines and any(
                    line["pick"] == system for line in lines):
                continue  # the same picks under every critic
            result = report["systems"][system]
            gaps = style_gaps(report, system)
            lines.append({
                "pick": system, "critic_strength": strength if "critic" in system else None,
                "discriminator": result["discriminator"]["balanced_accuracy"],
                "ci95": result["discriminator"]["ci95"],
                "final_chord_as_bach": result["final_chord"]["share"],
                "progression_vs_bach_nats": result["progression_vs_bach"]["nats_per_chord"],
                "style_gap_rms": float(np.sqrt(np.mean([g * g for g in gaps.values()]))),
                "features": {k: report["features"][system][k] for k in SHOWN}})
            print(f"{system:26s} C={strength:<5} disc {lines[-1]['discriminator']:.3f} "
                  f"final {lines[-1]['final_chord_as_bach']:.3f} "
                  f"prog {lines[-1]['progression_vs_bach_nats']:.3f} "
                  f"gaps {lines[-1]['style_gap_rms']:.3f}")
    seconds = [v[2] for v in valid.values()]
    result = {"split": "valid", "melodies": len(chorales), "seeds": args.seeds,
              "chains": CHAINS, "seconds_per_setting_8_chains": float(np.mean(seconds)),
              "bach": {k: report["features"]["bach"][k] for k in SHOWN}, "lines": lines,
              "note": "critic fitted on the training chorales only (Bach against the default "
                      "pick); every discriminator here is refitted on validation settings"}
    out = Path(args.out)
    path = out / "harmonizer_chain_ranking_valid.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = result["lines"]
    names = [line["pick"] + (f" (C={line['critic_strength']})" if line["critic_strength"]
                             else "") for line in lines]
    accuracy = np.array([line["discriminator"] for line in lines]) * 100
    errors = np.array([[a - line["ci95"][0] * 100, line["ci95"][1] * 100 - a]
                       for a, line in zip(accuracy, lines, strict=True)]).T
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2), sharey=True)
    axes[0].barh(names, accuracy, xerr=errors, color="tab:gray")
    axes[0].axvline(70, color="tab:red", linestyle=":", label="target")
    axes[0].set_xlabel("validation discriminator balanced accuracy (%)")
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    axes[1].barh(names, [line["style_gap_rms"] for line in lines], color="tab:blue")
    axes[1].set_xlabel("style gap rms (lower: closer to Bach)")
    fig.suptitle(f"Chains ranked by a critic, validation chorales, {result['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
