"""Sequence Tutor's table for the live harmoniser: the prior and each tuned set, side by
side (in the spirit of Jaques et al. 2017, Table 1).

Each tuned set's cards (``kantor train live-tutor --preset P --out DIR``) carry two rows
measured on the held-out test sopranos played into the live harmoniser as MIDI in event
mode: the prior's and the tuned networks'. This collects them into one JSON and one
plot: each rule's breaks per chord beside Bach's on the same melodies, Bach's
log-likelihood under the networks, the KL to the prior, the style discriminator, final
chords and sevenths resolved.

    python benchmarks/sequence_tutor.py DIR [DIR ...] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def row(entry: dict) -> dict:
    """The table's figures of one card row."""
    style = entry["style"]
    return {"rule_breaks_per_chord": entry["rule_breaks_per_chord"],
            "bach_nll_nats_per_token": entry["bach_nll_nats_per_token"],
            "kl_to_prior_nats_per_decision": entry["kl_to_prior_nats_per_decision"],
            "discriminator_balanced_accuracy": style["discriminator_balanced_accuracy"],
            "discriminator_ci95": style["discriminator_ci95"],
            "final_chord_root_and_bass_as_bach": style["final_chord_root_and_bass_as_bach"],
            "sevenths_resolved": style["sevenths_resolved"]["kantor"],
            "alto_eighth": style["alto_eighth"]["kantor"],
            "tenor_eighth": style["tenor_eighth"]["kantor"]}


def collect(folders: list[Path]) -> dict:
    """The prior's row (from the first folder) and each folder's tuned row."""
    table: dict = {"rows": {}}
    for folder in folders:
        card = json.loads((folder / "chorale-live-tuned-alto.json").read_text())
        rows = card["metrics"]["sequence_tutor_table"]
        config = card["training"]["config"]
        if "prior" not in table["rows"]:
            prior = rows["prior"]
            table["rows"]["prior"] = row(prior)
            table["bach"] = {"rule_breaks_per_chord": prior["bach_rule_breaks_per_chord"],
                             **{k: prior["style"][k]["bach"] for k in
                                ("sevenths_resolved", "alto_eighth", "tenor_eighth")}}
            table["melodies"] = rows["prior"]["melodies"]
        name = f"tuned beta={config['beta']:g} ({card['training']['preset']})"
        table["rows"][name] = row(rows["tuned"]) | {
            "beta": config["beta"], "preset": card["training"]["preset"],
            "training_seconds": card["training"]["training_seconds"],
            "best_epoch": card["training"]["best_epoch"]}
    prior_nll = table["rows"]["prior"]["bach_nll_nats_per_token"]
    for entry in table["rows"].values():
        entry["bach_log_likelihood_lost"] = round(
            entry["bach_nll_nats_per_token"] / prior_nll - 1, 4)
    return table


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = list(table["bach"]["rule_breaks_per_chord"])
    names = list(table["rows"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / (len(names) + 1)
    x = np.arange(len(rules))
    left.bar(x, [table["bach"]["rule_breaks_per_chord"][r] for r in rules], width,
             label="Bach", color="black")
    for i, name in enumerate(names):
        left.bar(x + (i + 1) * width, [table["rows"][name]["rule_breaks_per_chord"][r]
                                       for r in rules], width, label=name)
    left.set_xticks(x + width * len(names) / 2, rules, rotation=40, ha="right")
    left.set_ylabel("breaks per chord")
    left.set_yscale("symlog", linthresh=0.01)
    left.legend(fontsize=8)
    left.set_title(f"rule breaks, {table['melodies']} test sopranos played live (event mode)")
    measures = ("discriminator_balanced_accuracy", "final_chord_root_and_bass_as_bach",
                "sevenths_resolved")
    for i, name in enumerate(names):
        right.bar(np.arange(len(measures)) + i * 0.8 / len(names),
                  [table["rows"][name][m] or 0 for m in measures], 0.8 / len(names),
                  label=name)
    right.set_xticks(np.arange(len(measures)) + 0.3,
                     ["discriminator", "final chord\nas Bach", "sevenths\nresolved"])
    right.set_ylim(0, 1)
    right.set_title("style (discriminator: lower is\ncloser to Bach)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="folders of tuned sets (kantor train live-tutor --out)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    table = collect(args.folders)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sequence_tutor.json").write_text(json.dumps(table, indent=2) + "\n")
    plot(table, args.out / "sequence_tutor.png")
    for name, entry in table["rows"].items():
        print(f"{name:32s} discriminator {entry['discriminator_balanced_accuracy']}, final "
              f"{entry['final_chord_root_and_bass_as_bach']}, sevenths "
              f"{entry['sevenths_resolved']}, Bach NLL {entry['bach_nll_nats_per_token']} "
              f"({entry['bach_log_likelihood_lost']:+.1%}), KL "
              f"{entry['kl_to_prior_nats_per_decision']}")


if __name__ == "__main__":
    main()
