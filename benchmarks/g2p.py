"""The G2P's speed and accuracy: the shipped int8 graphs (1.2.0), the float graphs they were
quantized from (1.1.0, revision ``FLOAT_REVISION``) and the full-prefix decoder those
replaced (1.0.0), all measured in the same run on the same machine.

Speed, on ``--threads`` ONNX Runtime threads (default 1, what the engine uses):
  - batched: words/s for held-out words decoded with beam 3 in batches of 256 sorted by
    length (as ``kantor.export.speech.g2p.predict_all`` does), median of ``--repeats``;
  - one word: ms to pronounce one unknown word alone (greedy and beam 3), median and 90th
    percentile over ``--single`` words: what an unknown first word adds to the first audio.
The baseline is ``engine/speech/g2p.py`` and the ``engine/assets/g2p-*`` files of git
revision ``--baseline`` (the 1.0.0 model, which recomputed the whole prefix each step),
loaded side by side with the current engine; runs alternate between the systems so that a
busy machine slows them alike, and the targets are the ratios. Both decode the same words
and the run counts where their pronunciations differ.

Accuracy (current engine, beam 3, scored as the model card says: a word is right if it
equals any listed pronunciation):
  - the team's split: the test and valid words of the card's hash rule;
  - CMUdict's g014b2b test split (Phonetisaurus / g2p-seq2seq; cmudict 0.7a, no stress),
    restricted to the words this model did not train on. "with stress" scores against the
    cmudict package's pronunciations (with stress digits) of those words; "without stress"
    scores the prediction with its stress digits removed against g014b2b's own listing.
    ``--g014b2b FILE`` reads the full g014b2b.test; by default the benchmark reads the
    held-out lines already cut from it (benchmarks/data/g014b2b/, see its README).

    python benchmarks/g2p.py [--threads 1] [--repeats 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kantor.engine.speech.g2p import G2P
from kantor.engine.speech.phones import split_stress
from kantor.export.speech.g2p import (
    Lexicon,
    load_lexicon,
    predict_all,
    score,
    split_lexicon,
    split_of,
)

ROOT = Path(__file__).resolve().parents[1]
# The last commit of the 1.0.0 model and its full-prefix decoding.
BASELINE = "1ade498ebfc172dfa3fef8f1c15f211113314fdc"
# The last commit of the 1.1.0 model (cached step, float weights) before int8 weights.
FLOAT_REVISION = "9014c3e"
HELD_OUT_G014B2B = ROOT / "benchmarks" / "data" / "g014b2b" / "g014b2b-held-out.tsv"
BATCH = 256


def git_bytes(revision: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
                          check=True, capture_output=True).stdout


def load_baseline(revision: str, folder: Path, threads: int, beams: tuple[int, ...]):
    """The G2P class of ``revision`` with that revision's model files (copied to
    ``folder``), one per beam width."""
    for name in ("g2p-encoder", "g2p-decoder"):
        for suffix in (".onnx", ".json"):
            (folder / f"{name}{suffix}").write_bytes(
                git_bytes(revision, f"engine/assets/{name}{suffix}"))
    source = folder / "g2p_baseline.py"
    source.write_bytes(git_bytes(revision, "engine/speech/g2p.py"))
    spec = importlib.util.spec_from_file_location("g2p_baseline", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return {beam: module.G2P.load(folder, threads=threads, beam=beam) for beam in beams}


def load_float(revision: str, folder: Path, threads: int, beams: tuple[int, ...]):
    """Today's G2P class with the model files of ``revision`` (copied to ``folder``)."""
    for name in ("g2p-encoder", "g2p-decoder"):
        for suffix in (".onnx", ".json"):
            (folder / f"{name}{suffix}").write_bytes(
                git_bytes(revision, f"engine/assets/{name}{suffix}"))
    return {beam: G2P.load(folder, threads=threads, beam=beam) for beam in beams}


def words_per_second(g2p, words: list[str]) -> tuple[float, dict[str, list[str]]]:
    started = time.perf_counter()
    predictions = predict_all(g2p, words, batch_size=BATCH)
    return len(words) / (time.perf_counter() - started), predictions


def one_word_ms(g2p, words: list[str]) -> list[float]:
    """Milliseconds to pronounce each word alone."""
    times = []
    for word in words:
        started = time.perf_counter()
        g2p.predict_batch([word])
        times.append(1000 * (time.perf_counter() - started))
    return times


def summary(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 3),
            "p90": round(float(np.percentile(values, 90)), 3), "n": len(values)}


def speed(threads: int, repeats: int, batched: list[str], single: list[str],
          baseline: str) -> dict:
    """Old and new decoders, alternating, on ``threads`` threads."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "float").mkdir()
        systems = {
            "full_prefix_1.0.0": load_baseline(baseline, Path(scratch), threads, (1, 3)),
            "cached_step_float_1.1.0": load_float(FLOAT_REVISION, Path(scratch) / "float",
                                                  threads, (1, 3)),
            "cached_step": {beam: G2P.load(threads=threads, beam=beam) for beam in (1, 3)},
        }
        rates: dict[str, list[float]] = {name: [] for name in systems}
        single_ms: dict[str, dict[int, list[float]]] = {
            name: {1: [], 3: []} for name in systems}
        predictions: dict[str, dict[str, list[str]]] = {}
        for g2ps in systems.values():  # sessions warm, first-call costs paid
            for g2p in g2ps.values():
                g2p.predict_batch(["warm", "up"])
        for _ in range(repeats):
            for name, g2ps in systems.items():
                rate, predictions[name] = words_per_second(g2ps[3], batched)
                rates[name].append(rate)
                for beam in (1, 3):
                    single_ms[name][beam] += one_word_ms(g2ps[beam], single)
    old, _, new = systems
    differing = sorted(w for w in batched if predictions[old][w] != predictions[new][w])
    result = {name: {"batched_beam3_words_per_s": round(float(np.median(rates[name])), 1),
                     "batched_runs_words_per_s": [round(r, 1) for r in rates[name]],
                     "one_word_greedy_ms": summary(single_ms[name][1]),
                     "one_word_beam3_ms": summary(single_ms[name][3])}
              for name in systems}
    result["speedup"] = {
        "batched_beam3": round(result[new]["batched_beam3_words_per_s"]
                               / result[old]["batched_beam3_words_per_s"], 2),
        "one_word_greedy": round(result[old]["one_word_greedy_ms"]["median"]
                                 / result[new]["one_word_greedy_ms"]["median"], 2),
        "one_word_beam3": round(result[old]["one_word_beam3_ms"]["median"]
                                / result[new]["one_word_beam3_ms"]["median"], 2)}
    result["speedup_int8_over_float"] = round(
        result[new]["batched_beam3_words_per_s"]
        / result["cached_step_float_1.1.0"]["batched_beam3_words_per_s"], 2)
    result["pronunciations_differing_old_vs_new"] = {"words": len(batched),
                                                     "differing": differing}
    return result


def read_g014b2b(path: Path) -> dict[str, list[tuple[str, ...]]]:
    """word (lower case) -> its pronunciations (no stress), from WORD<TAB>PHONES lines."""
    entries: dict[str, list[tuple[str, ...]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        word, phones = line.split("\t")
        entries.setdefault(word.lower(), []).append(tuple(phones.split()))
    return entries


def held_out_g014b2b(entries: dict[str, list[tuple[str, ...]]], lexicon: Lexicon
                     ) -> dict[str, list[tuple[str, ...]]]:
    """The g014b2b words this model did not train on: not in the cmudict package, or put
    in its test or valid split by the hash rule."""
    return {w: p for w, p in entries.items() if w not in lexicon or split_of(w) != "train"}


def unstressed(phones) -> tuple[str, ...]:
    return tuple(split_stress(p)[0] for p in phones)


def accuracy(lexicon: Lexicon, g014b2b: dict[str, list[tuple[str, ...]]]) -> dict:
    g2p = G2P.load(threads=2)
    parts = split_lexicon(lexicon)
    result: dict = {}
    for split in ("test", "valid"):
        result[f"team_{split}"] = score(predict_all(g2p, list(parts[split])), parts[split])
    predictions = predict_all(g2p, list(g014b2b))
    stressed_refs = {w: lexicon[w] for w in g014b2b if w in lexicon}
    plain_predictions = {w: list(unstressed(p)) for w, p in predictions.items()}
    result["g014b2b_held_out"] = {
        "words": len(g014b2b),
        "of_which_in_team_test_split": sum(split_of(w) == "test" for w in g014b2b),
        "of_which_in_team_valid_split": sum(split_of(w) == "valid" for w in g014b2b),
        "of_which_not_in_cmudict_package": sum(w not in lexicon for w in g014b2b),
        "with_stress": score({w: predictions[w] for w in stressed_refs}, stressed_refs),
        "without_stress": score(plain_predictions, g014b2b),
        "without_stress_test_split_only": score(
            {w: p for w, p in plain_predictions.items() if split_of(w) == "test"},
            {w: p for w, p in g014b2b.items() if split_of(w) == "test"}),
    }
    return result


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speeds = results["speed"]
    names = ["full_prefix_1.0.0", "cached_step_float_1.1.0", "cached_step"]
    labels = ["1.0.0 (full prefix)", "1.1.0 (cached step)", "1.2.0 (int8)"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    rates = [speeds[n]["batched_beam3_words_per_s"] for n in names]
    colours = ["#999", "#7b9", "#2a7"]
    axes[0].bar(labels, rates, color=colours)
    axes[0].axhline(600, color="k", ls="--", lw=1, label="target 600 words/s")
    axes[0].set_ylabel("words/s")
    axes[0].set_title(f"batched, beam 3, {results['threads']} thread(s)")
    axes[0].legend(fontsize=8)
    for ax, key, title in ((axes[1], "one_word_greedy_ms", "one word, greedy"),
                           (axes[2], "one_word_beam3_ms", "one word, beam 3")):
        medians = [speeds[n][key]["median"] for n in names]
        p90 = [speeds[n][key]["p90"] for n in names]
        ax.bar(labels, medians, color=colours, label="median")
        ax.scatter(labels, p90, color="k", marker="_", s=400, label="90th percentile")
        ax.axhline(5, color="k", ls="--", lw=1, label="target 5 ms")
        ax.set_ylabel("ms")
        ax.set_title(title)
        ax.legend(fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("G2P decoding speed (same run, same machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batched", type=int, default=512, help="held-out words, batched")
    parser.add_argument("--single", type=int, default=100, help="words timed one by one")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old G2P")
    parser.add_argument("--g014b2b", type=Path, help="the full g014b2b.test file")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    lexicon = load_lexicon()
    test = sorted(split_lexicon(lexicon)["test"])
    rng = np.random.default_rng(0)
    batched = [test[i] for i in sorted(rng.choice(len(test), args.batched, replace=False))]
    single = [test[i] for i in sorted(rng.choice(len(test), args.single, replace=False))]
    results = {"machine": platform.processor() or platform.machine(),
               "threads": args.threads, "batch_size": BATCH, "baseline_revision": args.baseline,
               "words": "held-out (team test split) words, a fixed random sample (seed 0)"}
    load_before = os.getloadavg()[0]
    results["speed"] = speed(args.threads, args.repeats, batched, single, args.baseline)
    # other work on the machine slows both decoders alike; the ratios hold, the absolute
    # figures are those of a machine this busy
    results["load_average_1min"] = {"before": round(load_before, 2),
                                    "after": round(os.getloadavg()[0], 2),
                                    "cpus": os.cpu_count()}
    if not args.no_accuracy:
        source = args.g014b2b or HELD_OUT_G014B2B
        g014b2b = held_out_g014b2b(read_g014b2b(source), lexicon)
        results["accuracy"] = accuracy(lexicon, g014b2b)
        results["accuracy"]["g014b2b_source"] = str(source.relative_to(ROOT)
                                                    if source.is_relative_to(ROOT) else source)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.threads == 1 else f"_{args.threads}_threads"
    (args.out / f"g2p{suffix}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / f"g2p{suffix}.png")
    print(json.dumps({k: v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
