"""What the sampler's settings buy: voice-leading rates and time per chorale as the
iteration count, the number of chains and the rule steering change, one at a time from
the defaults, on held-out chorales (Bach's own settings of them in the same table).

    python benchmarks/harmonizer_sweep.py [--split test] [--out benchmarks/results]

Writes harmonizer_sweep_<split>.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.evaluate import yardstick

SHOWN = ("parallel_fifths", "parallel_octaves", "spacing", "crossing", "complete_chords")


def variants() -> list[tuple[str, GibbsSettings]]:
    default = GibbsSettings()
    out = [("default", default)]
    for iterations in (5, 10, 20, 80):
        out.append((f"iterations={iterations}", dataclasses.replace(default,
                                                                     iterations=iterations)))
    out.append(("chains=1", dataclasses.replace(default, chains=1)))
    out.append(("rules off", dataclasses.replace(default, rule_weight=0.0)))
    out.append(("rule weight 1", dataclasses.replace(default, rule_weight=1.0)))
    out.append(("final temperature 1.0", dataclasses.replace(default, temperature_end=1.0)))
    out.append(("DeepBach-like (T=1, no rules, 1 chain)", dataclasses.replace(
        default, rule_weight=0.0, chains=1, temperature_end=1.0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=["test", "valid"])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    sampler = ChoraleSampler.load()
    chorales = load_corpus().split(args.split)[:args.limit]
    rows = {}
    for name, settings in variants():
        report = yardstick(sampler, chorales, settings, with_baseline=False, progress=False)
        rows[name] = {"rates": report["kantor"]["rates"],
                      "seconds_per_chorale": report["kantor"]["seconds_per_chorale"]["mean"],
                      "soprano_reproduced": report["kantor"]["soprano_reproduced"]}
        rows.setdefault("bach", {"rates": report["bach"]["rates"]})
        rates = rows[name]["rates"]
        print(f"{name:40s} " + " ".join(f"{k[:14]}={rates[k] * 100:5.2f}%" for k in SHOWN)
              + f"  {rows[name]['seconds_per_chorale']:.2f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"split": args.split, "chorales": len(chorales), "rows": rows}
    (out / f"harmonizer_sweep_{args.split}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out / f"harmonizer_sweep_{args.split}.png")


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in rows if n != "bach"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    par = [(rows[n]["rates"]["parallel_fifths"] + rows[n]["rates"]["parallel_octaves"]) * 100
           for n in names]
    comp = [rows[n]["rates"]["complete_chords"] * 100 for n in names]
    bach = rows["bach"]["rates"]
    axes[0].barh(names, par)
    axes[0].axvline((bach["parallel_fifths"] + bach["parallel_octaves"]) * 100, color="k",
                    linestyle="--", label="Bach")
    axes[0].set_xlabel("parallel fifths + octaves per chord change (%)")
    axes[0].legend()
    axes[1].barh(names, comp)
    axes[1].axvline(bach["complete_chords"] * 100, color="k", linestyle="--", label="Bach")
    axes[1].set_xlabel("complete chords on beats (%)")
    axes[1].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
