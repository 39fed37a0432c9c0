"""Where Kantor's distance from Bach comes from, one change at a time: the style
evaluation (``kantor eval harmonizer --style``) of each variant of model and sampler on
the same held-out melodies, plus how melodies from outside the repertoire end.

    python benchmarks/harmonizer_style.py --split valid   # choose settings here
    python benchmarks/harmonizer_style.py --split test    # report here

The models compared: ``--old`` the key-blind model as shipped before this work
(``git:4d6dac7`` takes it from that commit into .cache/models/), ``--keyed`` the model
told key, mode and distances (``kantor train harmonizer --preset visible``), ``--new``
the shipped one (``--preset default``: the same, trained orderless).

Each variant is a model folder and sampler settings. Settings are compared on the
validation chorales, by a discriminator fitted there and by :func:`style_gaps` (feature
distances); the test chorales' discriminator reports and nothing is chosen by it. Settings of
every variant are cached under .cache/style/ by variant, split and model hash, so adding
a variant reruns only that one. Writes harmonizer_style_ablation_<split>.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pickle
import time
from pathlib import Path

import numpy as np

from kantor.engine.chorale import gibbs, keys, melody, rules
from kantor.engine.chorale.encoding import sounding_pitches
from kantor.engine.chorale.gibbs import FREE_TEXTURE, ChoraleSampler, GibbsSettings
from kantor.engine.chorale.keys import key_of_setting
from kantor.engine.chorale.melody import harmonize_melody
from kantor.engine.chorale.rules import DEFAULT_RULE_WEIGHTS
from kantor.engine.models import ASSETS
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.outside_repertoire import TUNES
from kantor.export.chorale.style import (
    Setting,
    compare,
    describe,
    fit_progression_model,
    melody_of,
    settings_for,
    style_gaps,
)

CACHE = Path(".cache/style")
NOTE = ("style_gap_rms: root mean square of the headline features' distance from Bach in "
        "units of their binomial spread (lower is closer). Settings are chosen on the "
        "validation split, by its own discriminator (fitted on validation settings only) and "
        "style_gap_rms; the test split's discriminator, which reports, never chooses.")
SHOWN = ("alto_eighth", "tenor_eighth", "alto_repeated", "alto_suspensions_per_beat",
         "complete_triads", "seventh_chords", "sevenths_resolved", "leading_tone_in_minor",
         "fermata_fifth_down", "fermata_on_other", "parallel_fifths", "parallel_octaves",
         "spacing")
NO_RULES_BEYOND_VOICE_LEADING = {"unresolved_seventh": 0.0, "final_chord": 0.0}



@dataclasses.dataclass(frozen=True)
class Variant:
    """A model folder and sampler settings; ``note`` says what the line changes."""

    name: str
    assets: str
    settings: GibbsSettings
    note: str


# The sampler and rules before this work (on the models of either version).
OLD_SAMPLER = GibbsSettings(temperature_end=0.2, offbeat_temperature_end=None, stride=0,
                            rule_hardening=1.0, errors="strict",
                            rule_weights={"unresolved_seventh": 0.0, "final_chord": 0.0,
                                          "seventh_unprepared_exit": 0.0, "cadence_chord": 0.0,
                                          "cadence_approach": 0.0})


# The sampler of the first round of style work, the defaults (T 0.5 on the beat; every
# voice-leading rule charged, crossings and spacing counted as errors choosing a chain).
FIRST_ROUND = GibbsSettings()


def variants(old: str, keyed: str, new: str, longer: str) -> list[Variant]:
    """The lines of the analysis: Kantor as it was, then one change at a time, to the
    defaults now. ``old``: the key-blind model; ``keyed``: the model told key, mode and
    the distances to the next fermata and the end; ``new``: that model trained orderless;
    ``longer``: the same trained twice as long (the shipped one)."""
    d = FIRST_ROUND
    new_rules = dataclasses.replace(OLD_SAMPLER, rule_weights=None)
    return [
        Variant("before: old model, old sampler", old, OLD_SAMPLER,
                "key-blind model; random share redrawn, T 1.0->0.2, voice-leading charges"),
        Variant("old model, T 1.0 throughout", old,
                dataclasses.replace(OLD_SAMPLER, temperature_end=1.0),
                "no annealing towards a low temperature (mode-seeking)"),
        Variant("old model, rules off", old, dataclasses.replace(OLD_SAMPLER, rule_weight=0.0),
                "no rule charges at all"),
        Variant("old model, + new rules", old, new_rules,
                "sevenths resolve, final chord, cadences at fermatas"),
        Variant("keyed model, old sampler", keyed, OLD_SAMPLER,
                "the networks told key, mode and the distances to the next fermata and end"),
        Variant("keyed model, + new rules", keyed, new_rules, "both"),
        Variant("keyed model, new rules, steps a beat apart", keyed,
                dataclasses.replace(new_rules, stride=4), "spaced Gibbs updates"),
        Variant("keyed model, new sampler", keyed, d,
                "+ T 0.5 on the beat, 1.0 off it; charges harden 4 -> 16 nats"),
        Variant("after: orderless model, defaults", new, d,
                "the keyed model trained with masked neighbours in half its windows"),
        Variant("orderless model, free texture, T 0.7", new, dataclasses.replace(
            d, errors="parallels", temperature_end=0.7, rule_weights=FREE_TEXTURE),
                "crossings, spacing, overlaps, hidden fifths left to the networks; chords "
                "settle at T 0.7 (best on the validation split; not kept: worse here)"),
        Variant("orderless model, redrawn notes hidden", new,
                dataclasses.replace(d, hide_redrawn="always"),
                "notes redrawn together do not see each other's old notes"),
        Variant("orderless model, T 1.0, rules off", new,
                dataclasses.replace(d, temperature_end=1.0, offbeat_temperature_end=None,
                                    rule_weight=0.0),
                "the networks' own belief, no rules: what the model alone makes"),
        Variant("orderless model trained 80 epochs (shipped), defaults", longer, d,
                "the same networks trained twice as long (validation NLL 0.240 -> 0.222); "
                "chosen on the validation chorales (discriminator 89.1% -> 83.9%)"),
    ]


def sweep(new: str) -> list[Variant]:
    """Sampler settings for the orderless 40-epoch model (shipped when the sweep was run),
    compared on the validation split: the
    discriminator there (never the test split's) and :func:`style_gaps` (headline features
    and the progression likelihood). Each line changes the first round's settings."""
    d = FIRST_ROUND
    return [
        Variant("T 0.5 on the beat, 1.0 off it (defaults)", new, d,
                "the first round's defaults"),
        Variant("T 0.35 on the beat, 1.0 off it", new,
                dataclasses.replace(d, temperature_end=0.35), "lower on the beat"),
        Variant("T 0.7 on the beat, 1.0 off it", new,
                dataclasses.replace(d, temperature_end=0.7), "higher on the beat"),
        Variant("T 0.5 everywhere", new, dataclasses.replace(d, offbeat_temperature_end=None),
                "one temperature"),
        Variant("T 1.0 everywhere", new,
                dataclasses.replace(d, temperature_end=1.0, offbeat_temperature_end=None),
                "the networks' own belief everywhere"),
        Variant("constant charges", new, dataclasses.replace(d, rule_hardening=1.0),
                "4 nats per break throughout"),
        Variant("no cadence rules", new, dataclasses.replace(d, rule_weights={
            "cadence_chord": 0.0, "cadence_approach": 0.0}), "no cadence charges"),
        Variant("full charges for crossings, spacing, overlaps, hidden fifths", new,
                dataclasses.replace(d, rule_weights={"crossing": 1.0, "spacing": 1.0,
                                                     "overlap": 1.0, "hidden": 1.0}),
                "every voice-leading rule charged alike"),
        Variant("redrawn notes hidden", new, dataclasses.replace(d, hide_redrawn="always"),
                "notes redrawn together do not see each other's old notes"),
        Variant("redrawn notes hidden off the beat", new,
                dataclasses.replace(d, hide_redrawn="offbeat"), "only the figuration"),
        Variant("first chain, not the likeliest", new, dataclasses.replace(d, select="first"),
                "among the chains with fewest errors, a draw rather than the mode"),
        Variant("crossings and spacing not errors", new,
                dataclasses.replace(d, errors="parallels"),
                "chains are compared by parallels, range and sevenths only"),
        Variant("free texture", new, dataclasses.replace(
            d, select="first", errors="parallels",
            rule_weights={"crossing": 0.0, "spacing": 0.0, "overlap": 0.0, "hidden": 0.0}),
                "crossings, spacing, overlaps and hidden fifths left to the networks"),
        Variant("free texture, T 0.7 on the beat", new, dataclasses.replace(
            d, select="first", errors="parallels", temperature_end=0.7,
            rule_weights={"crossing": 0.0, "spacing": 0.0, "overlap": 0.0, "hidden": 0.0}),
                "and chords a little less settled"),
        Variant("free texture, T 0.7, likeliest chain", new, dataclasses.replace(
            d, errors="parallels", temperature_end=0.7, rule_weights=FREE_TEXTURE),
                "the mode among the chains again"),
        Variant("free texture, T 0.7, 80 sweeps", new, dataclasses.replace(
            d, select="first", errors="parallels", temperature_end=0.7, iterations=80,
            rule_weights=FREE_TEXTURE), "twice the sweeps"),
        Variant("free texture, T 0.7, sevenths charged half", new, dataclasses.replace(
            d, select="first", errors="parallels", temperature_end=0.7,
            rule_weights={**FREE_TEXTURE, "unresolved_seventh": 0.5}),
                "an unresolved seventh costs half as much"),
        Variant("free texture, T 0.85 on the beat", new, dataclasses.replace(
            d, select="first", errors="parallels", temperature_end=0.85,
            rule_weights=FREE_TEXTURE), "chords nearer the networks' own belief"),
        Variant("free texture, T 0.7, rhythm at T 1", new, dataclasses.replace(
            d, errors="parallels", temperature_end=0.7, rhythm_temperature=1.0,
            rule_weights=FREE_TEXTURE),
                "hold, rest or strike at the networks' belief; the pitch settles"),
        Variant("free texture, T 0.5, rhythm at T 1", new, dataclasses.replace(
            d, errors="parallels", rhythm_temperature=1.0, rule_weights=FREE_TEXTURE),
                "the same with the pitch settling lower"),
        Variant("free texture, T 0.5 everywhere, rhythm at T 1", new, dataclasses.replace(
            d, errors="parallels", rhythm_temperature=1.0, offbeat_temperature_end=None,
            rule_weights=FREE_TEXTURE), "every pitch settles at 0.5, rhythm free"),
        Variant("free texture, T 0.5, rhythm at T 1, sevenths formed freely", new,
                dataclasses.replace(d, errors="parallels", rhythm_temperature=1.0,
                                    rule_weights={**FREE_TEXTURE,
                                                  "seventh_unprepared_exit": 0.0}),
                "a seventh is charged only if its voice then fails to step down"),
        Variant("free texture, T 0.7, sevenths formed freely", new, dataclasses.replace(
            d, errors="parallels", temperature_end=0.7,
            rule_weights={**FREE_TEXTURE, "seventh_unprepared_exit": 0.0}),
                "the same at T 0.7, one temperature for the token"),
        Variant("free texture but hidden fifths, T 0.7", new, dataclasses.replace(
            d, errors="parallels", temperature_end=0.7,
            rule_weights={"crossing": 0.0, "spacing": 0.0, "overlap": 0.0}),
                "hidden fifths and octaves still charged a quarter"),
        Variant("free texture but hidden fifths, T 0.7, sevenths x1.5", new,
                dataclasses.replace(d, errors="parallels", temperature_end=0.7,
                                    rule_weights={"crossing": 0.0, "spacing": 0.0,
                                                  "overlap": 0.0, "unresolved_seventh": 1.5}),
                "and an unresolved seventh charged half as much again"),
    ]


def variant_key(variant: Variant, split: str, seeds: tuple[int, ...]) -> str:
    card_hashes = [json.loads((Path(variant.assets) / f"chorale-{v}.json").read_text())["sha256"]
                   for v in ("soprano", "alto", "tenor", "bass")]
    # The engine's chorale code decides what the same weights and settings make.
    code = [hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()
            for module in (gibbs, rules, melody, keys)]
    text = json.dumps([dataclasses.asdict(variant.settings), card_hashes, split, seeds,
                       DEFAULT_RULE_WEIGHTS, code], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_folder(spec: str) -> str:
    """A model folder, or ``git:COMMIT``: the chorale models shipped at that commit,
    copied out of the repository once into .cache/models/git-COMMIT."""
    if not spec.startswith("git:"):
        return spec
    import subprocess

    commit = spec[4:]
    folder = Path(f".cache/models/git-{commit}")
    if not (folder / "chorale-bass.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for voice in ("soprano", "alto", "tenor", "bass"):
            for suffix in ("onnx", "json"):
                data = subprocess.run(["git", "show", f"{commit}:engine/assets/chorale-{voice}."
                                       f"{suffix}"], check=True, capture_output=True).stdout
                (folder / f"chorale-{voice}.{suffix}").write_bytes(data)
    return str(folder)


def run_variant(variant: Variant, chorales, bigram, seeds) -> tuple[list[Setting], dict]:
    sampler = ChoraleSampler.load(Path(variant.assets))
    seconds: list[float] = []

    def harmonise(chorale, seed: int) -> np.ndarray:
        result = harmonize_melody(sampler, melody_of(chorale),
                                  settings=dataclasses.replace(variant.settings, seed=seed))
        seconds.append(result.seconds)
        return result.raw

    rows = settings_for(chorales, {variant.name: harmonise}, seeds, bigram)
    endings = outside_endings(sampler, variant.settings, seeds)
    return rows, {"seconds_per_setting": float(np.mean(seconds)), "outside": endings}


def outside_endings(sampler: ChoraleSampler, settings: GibbsSettings, seeds) -> dict:
    """How many settings of the tunes from outside the repertoire end on a root-position
    chord on the tune's tonic (or modal final)."""
    hits, total, misses = 0, 0, []
    for tune in TUNES:
        for seed in seeds:
            raw = harmonize_melody(sampler, tune.melody(),
                                   settings=dataclasses.replace(settings, seed=seed)).raw
            last = sounding_pitches(raw)[:, -1]
            tonic = tune.tonic().tonic
            ok = bool(last[3] >= 0 and last[3] % 12 == tonic)
            hits += ok
            total += 1
            if not ok:
                misses.append(f"{tune.name} (seed {seed}): bass {int(last[3])}")
    return {"end_on_tonic": hits, "settings": total, "share": hits / total, "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--old", default="git:4d6dac7",
                        help="the model before this work (key-blind)")
    parser.add_argument("--keyed", default=".cache/models/chorale-v2",
                        help="the model told key, mode and distances, trained as before")
    parser.add_argument("--new", default="git:d0632ce",
                        help="the orderless model trained 40 epochs (shipped until 2026-12-07)")
    parser.add_argument("--longer", default=str(ASSETS),
                        help="the orderless model trained 80 epochs (the shipped one)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="names of variants to (re)run")
    parser.add_argument("--sweep", action="store_true",
                        help="the sampler settings sweep (new model) instead of the analysis")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    corpus = load_corpus()
    chorales = corpus.split(args.split)
    seeds = tuple(range(args.seeds))
    bigram = fit_progression_model(corpus.split("train"))
    bach = settings_for(chorales, {}, seeds, bigram, progress=False)
    lines = []
    chosen = (sweep(model_folder(args.new)) if args.sweep else
              variants(model_folder(args.old), args.keyed, model_folder(args.new),
                       args.longer))
    out = Path(args.out)
    kind = "sweep" if args.sweep else "ablation"
    path = out / f"harmonizer_style_{kind}_{args.split}.json"
    # A line whose model is not on this machine (a model trained only for the analysis)
    # keeps its figures from the previous run, which says so.
    earlier = ({line["variant"]: line for line in json.loads(path.read_text())["lines"]}
               if path.exists() else {})
    for variant in chosen:
        if not (Path(variant.assets) / "chorale-alto.json").exists():
            if variant.name in earlier:
                print(f"{variant.name}: no model in {variant.assets}; figures of the "
                      "previous run kept")
                lines.append({**earlier[variant.name], "figures_from": "an earlier run "
                              "(its model is not on this machine)"})
            else:
                print(f"skipping {variant.name}: no model in {variant.assets}")
            continue
        cache = CACHE / f"{variant_key(variant, args.split, seeds)}.pkl"
        if cache.exists() and not (args.only and variant.name in args.only):
            rows, extra = pickle.loads(cache.read_bytes())
            by_name = {c.name: c for c in chorales}
            for row in rows:  # features as the analysis reads them today
                chorale = by_name[row.chorale]
                describe(row, chorale, key_of_setting(chorale.raw), bigram)
        elif args.only and variant.name not in args.only:
            continue
        else:
            started = time.perf_counter()
            rows, extra = run_variant(variant, chorales, bigram, seeds)
            rows = [r for r in rows if r.source != "bach"]
            CACHE.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps((rows, extra)))
            print(f"{variant.name}: {time.perf_counter() - started:.0f} s")
        report = compare(bach + rows, chorales, [variant.name])
        system = report["systems"][variant.name]
        features = report["features"][variant.name]
        gaps = style_gaps(report, variant.name)
        lines.append({
            "variant": variant.name, "change": variant.note, "assets": variant.assets,
            "settings": dataclasses.asdict(variant.settings),
            "discriminator": {k: system["discriminator"][k]
                              for k in ("balanced_accuracy", "ci95", "leans_on")},
            "final_chord_as_bach": system["final_chord"],
            "progression_vs_bach_nats": system["progression_vs_bach"],
            "features": {k: features.get(k) for k in SHOWN},
            "style_gap_rms": float(np.sqrt(np.mean([g * g for g in gaps.values()]))),
            **extra,
        })
        bach_features = report["features"]["bach"]
    result = {"split": args.split, "chorales": len(chorales), "seeds": list(seeds),
              "bach": {k: bach_features.get(k) for k in SHOWN}, "lines": lines,
              "note": NOTE}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot(result, path.with_suffix(".png"))
    print(table(result))


def table(result: dict) -> str:
    rows = [f"{'variant':42s} {'disc':>6s} {'CI95':>13s} {'final':>6s} {'gap':>5s} "
            f"{'A 8th':>6s} {'T 8th':>6s} {'7th ok':>6s} {'V-I':>5s} {'out':>5s} {'s':>5s}"]
    for line in result["lines"]:
        f = line["features"]
        d = line["discriminator"]
        rows.append(
            f"{line['variant']:42s} {d['balanced_accuracy']:6.1%} "
            f"{d['ci95'][0]:5.1%}-{d['ci95'][1]:5.1%} {line['final_chord_as_bach']['share']:6.1%} "
            f"{line['style_gap_rms']:5.2f} {f['alto_eighth']:6.3f} {f['tenor_eighth']:6.3f} "
            f"{f['sevenths_resolved']:6.1%} {f['fermata_fifth_down']:5.2f} "
            f"{line['outside']['share']:5.0%} {line['seconds_per_setting']:5.2f}")
    b = result["bach"]
    rows.append(f"{'Bach':42s} {'':6s} {'':13s} {'':6s} {'':5s} {b['alto_eighth']:6.3f} "
                f"{b['tenor_eighth']:6.3f} {b['sevenths_resolved']:6.1%} "
                f"{b['fermata_fifth_down']:5.2f}")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = result["lines"]
    names = [line["variant"] for line in lines]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(names) + 2), sharey=True)
    accuracy = [line["discriminator"]["balanced_accuracy"] * 100 for line in lines]
    errors = np.array([[a - line["discriminator"]["ci95"][0] * 100,
                        line["discriminator"]["ci95"][1] * 100 - a]
                       for a, line in zip(accuracy, lines, strict=True)]).T
    axes[0].barh(names, accuracy, xerr=errors, color="tab:gray")
    axes[0].axvline(50, color="k", linestyle="--", label="chance")
    axes[0].axvline(70, color="tab:red", linestyle=":", label="target")
    axes[0].set_xlabel("discriminator balanced accuracy (%)")
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    final = [line["final_chord_as_bach"]["share"] * 100 for line in lines]
    outside = [line["outside"]["share"] * 100 for line in lines]
    y = np.arange(len(names))
    axes[1].barh(y - 0.2, final, 0.4, label="final chord = Bach's (root, bass)")
    axes[1].barh(y + 0.2, outside, 0.4, label="outside tunes end on the tonic")
    axes[1].axvline(90, color="tab:red", linestyle=":")
    axes[1].set_xlabel("%")
    axes[1].legend(fontsize=8)
    for name, colour in (("alto_eighth", "tab:blue"), ("tenor_eighth", "tab:orange"),
                         ("sevenths_resolved", "tab:green")):
        axes[2].plot([line["features"][name] for line in lines], y, "o", color=colour,
                     label=name)
        axes[2].axvline(result["bach"][name], color=colour, linestyle="--")
    axes[2].set_xlabel("share (dashed: Bach)")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Kantor vs Bach, {result['split']} chorales, {len(result['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
