"""Text normalisation measured on a public test suite written by others: NVIDIA NeMo's
English text-normalisation test cases, per semiotic class, and the time to read 1 MB.

Systems, all on the same cases in the same run:
  - ``kantor``: this checkout's ``kantor.engine.speech.text.normalize`` (with the CMU
    dictionary deciding whether capitals are a word or letters, as the front end does);
  - ``kantor_before``: ``engine/speech/text.py`` of git revision ``--baseline``;
  - ``nemo`` (with ``--nemo-python``): nemo_text_processing's WFST grammars, run by
    benchmarks/text_normalization_nemo.py in a Python environment that has them.

Cases: every ``test_cases_*.txt`` of ``--cases-dir`` (default: the copy in
benchmarks/data/nemo-text-normalization, Apache-2.0; see its README); the file name is the
class. ``test_cases_normalize_with_audio.txt`` lists several acceptable readings per input;
there, matching any one of them counts.

Matching rule: NeMo writes what is said as text for another program to read aloud (it
keeps case, punctuation and markup); Kantor writes the spoken words. A case passes when
the two agree as speech, compared after this, applied to both sides alike:
  1. Unicode NFKC, accents folded to ASCII (é -> e: the front end says no accents),
     curly quotes to straight ones, lower case;
  2. markup tags (``<noise/>``, ``<pitch=-.3>``) removed: they are instructions for a
     synthesiser, not words;
  3. everything but letters, digits and in-word apostrophes is a word break
     (punctuation is pauses, not words);
  4. runs of single letters join ("P M" = "PM", "U S A" = "USA": spelled the same), and
     NeMo's capitals may be read as letters ("PM EST" = "P M E S T");
  5. British "and" is accepted: "and" between two number words, or between an amount's
     currency and its cents, is dropped ("one hundred and twenty three" = "one hundred
     twenty three", "one dollar and one cent" = "one dollar one cent");
  6. a dash that NeMo leaves between two number words ("two - five") is read either as
     "to" or as a pause: both are accepted.
The output of every failed case is listed in the JSON, so the rule can be checked by eye.

Other public suites (``--nemo-data``: the ``data/`` folder of NeMo-text-processing, CC BY
4.0, not copied here; read when present): ``GoogleTN.json`` (7,551 sentences of Sproat &
Jaitly's Google text-normalisation test data), ``LibriTTS.json`` (7,677 sentences of
LibriTTS book text with their normalised reading) and ``EngConf.txt`` (ambiguous tokens in
context, each with the readings marked right). Scored with the same rule, Kantor before
and after only; no target is set on them.

Speed: seconds to normalise 1 MB of text, twice: the cases' inputs joined into sentences
and repeated to 1 MB (dense with numbers and symbols), and 1 MB of English prose (Debian's
``fortunes``, braces removed). NeMo normalises a sample of each sentence by sentence (its
grammars are slow on long inputs); its time per MB is extrapolated from the sample and
says so.

    python benchmarks/text_normalization.py [--nemo-python /path/to/env/bin/python]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kantor.engine.speech.lexicon import Lexicon
from kantor.engine.speech.text import normalize

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "benchmarks" / "data" / "nemo-text-normalization"
# The last commit before the normaliser was extended against these classes.
BASELINE = "4d6dac73101632a277e5c47772d6198b1ee09925"
FORTUNES = Path("/usr/share/games/fortunes")
MEGABYTE = 1_000_000
NEMO_SAMPLE = 20_000  # characters of each text NeMo normalises


@dataclass(frozen=True)
class Case:
    """One test case: its class (file), the written input and the acceptable readings."""

    cls: str
    written: str
    spoken: tuple[str, ...]


def load_cases(folder: Path) -> list[Case]:
    """Every case of every ``test_cases_*.txt`` in ``folder`` (NeMo's own parsing)."""
    cases = []
    for path in sorted(folder.glob("test_cases_*.txt")):
        cls = path.stem.removeprefix("test_cases_")
        lines = path.read_text(encoding="utf-8").splitlines()
        if cls == "normalize_with_audio":
            written, options = None, []
            for line in lines:
                if line.startswith("~"):
                    if written is not None:
                        cases.append(Case(cls, written, tuple(options)))
                    written, options = line.strip().replace("~", ""), []
                else:
                    options.append(line.strip())
            if written is not None:
                cases.append(Case(cls, written, tuple(options)))
            continue
        for line in lines:
            written, *spoken = line.split("~")
            cases.append(Case(cls, written, tuple(spoken)))
    return cases


# ------------------------------------------------------------------------- matching

_NUMBER_WORDS = frozenset((  # noqa: SIM905 (37 quoted words read worse)
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty "
    "seventy eighty ninety hundred thousand million billion trillion quadrillion "
    "quintillion").split())
_CURRENCY_WORDS = frozenset(("dollar", "dollars", "pound", "pounds", "euro", "euros", "yen",
                             "won", "rupee", "rupees", "yuan"))
_CAPITALS = re.compile(r"\b[A-Z]{2,6}\b")
_QUOTES = str.maketrans({"‘": "'", "’": "'", "`": "'", "´": "'", "“": '"', "”": '"'})
_MARKUP = re.compile(r"<[A-Za-z/][^<>]*>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_NUMBER_ALTERNATIVES = "|".join(sorted(_NUMBER_WORDS))
_NUMBER_DASH = re.compile(
    rf"\b({_NUMBER_ALTERNATIVES})\s*[-–]\s*(?=(?:{_NUMBER_ALTERNATIVES})\b)")


def fold(text: str) -> str:
    """Steps 1-2 of the matching rule."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return _MARKUP.sub(" ", text.lower())


def spoken_words(text: str) -> tuple[str, ...]:
    """Steps 1-5 of the matching rule: the words a reading says, comparable."""
    words = _WORD.findall(fold(text))
    joined: list[str] = []
    spelled = False  # the last joined word is a run of single letters
    for word in words:  # 4: single letters in a row are one spelled word
        if len(word) == 1 and word.isalpha() and spelled:
            joined[-1] += word
        else:
            joined.append(word)
            spelled = len(word) == 1 and word.isalpha()
    kept = [w for i, w in enumerate(joined)  # 5: British "and" between number words
            if not (w == "and" and 0 < i < len(joined) - 1
                    and (joined[i - 1] in _NUMBER_WORDS or joined[i - 1] in _CURRENCY_WORDS)
                    and joined[i + 1] in _NUMBER_WORDS)]
    return tuple(kept)


def readings(expected: str) -> set[tuple[str, ...]]:
    """The comparable forms of one expected reading: as written, with its capitals
    spelled (step 4), and each with a dash between number words read as "to" (step 6)."""
    forms = set()
    for text in (expected, _CAPITALS.sub(lambda m: " ".join(m.group()), expected)):
        folded = fold(text)
        forms.add(spoken_words(folded))
        if _NUMBER_DASH.search(folded):
            forms.add(spoken_words(_NUMBER_DASH.sub(r"\1 to ", folded)))
    return forms


def passes(case: Case, output: str) -> bool:
    said = spoken_words(output)
    return any(said in readings(option) for option in case.spoken)


# ------------------------------------------------------------------------- systems

def kantor_reader(module) -> Callable[[str], str]:
    """``text -> the words said``, with the front end's dictionary for capitals."""
    lexicon = Lexicon(fallback=None)

    def read(text: str) -> str:
        try:
            phrases = module.normalize(text, lexicon.reads_as_word)
        except ValueError as error:  # TextError: the case is not read at all
            return f"<error: {error}>"
        return " ".join(w for phrase in phrases for w in phrase.words)

    return read


def baseline_module(revision: str, folder: Path):
    """``engine/speech/text.py`` as it was at ``revision`` (it imports only the standard
    library), loaded under another name beside the current one."""
    source = folder / "text_baseline.py"
    source.write_bytes(subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:engine/speech/text.py"],
        check=True, capture_output=True).stdout)
    spec = importlib.util.spec_from_file_location("text_baseline", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def score(cases: list[Case], outputs: list[str]) -> dict:
    """Pass counts per class and overall, and the failures."""
    classes: dict[str, dict] = {}
    failures = []
    for case, output in zip(cases, outputs, strict=True):
        entry = classes.setdefault(case.cls, {"cases": 0, "passed": 0})
        entry["cases"] += 1
        if passes(case, output):
            entry["passed"] += 1
        else:
            failures.append({"class": case.cls, "written": case.written,
                             "expected": list(case.spoken), "got": output})
    for entry in classes.values():
        entry["share"] = round(entry["passed"] / entry["cases"], 4)
    total = sum(e["cases"] for e in classes.values())
    passed = sum(e["passed"] for e in classes.values())
    return {"cases": total, "passed": passed, "share": round(passed / total, 4),
            "lowest_class": min(classes, key=lambda c: classes[c]["share"]),
            "classes": dict(sorted(classes.items())), "failures": failures}


# ------------------------------------------------------------------------- speed

def load_extra_suites(folder: Path) -> dict[str, list[Case]]:
    """The other public suites in ``folder`` (see the module docstring), by name."""
    suites: dict[str, list[Case]] = {}
    for name, file in (("google_tn", "GoogleTN.json"), ("libritts", "LibriTTS.json")):
        path = folder / file
        if path.exists():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
            suites[name] = [Case(name, r["text"], (r["gt_normalized"],)) for r in rows]
    path = folder / "EngConf.txt"
    if path.exists():
        cases, written, right = [], None, []
        for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
            if line.startswith("#"):
                continue
            if not line.strip():
                if written is not None and right:
                    cases.append(Case("engconf", written, tuple(right)))
                written, right = None, []
            elif line.endswith("~~RAW"):
                written = line[:-len("~~RAW")]
            elif line.endswith("~~1"):
                right.append(line[:-len("~~1")])
        suites["engconf"] = cases
    return suites


def megabyte_texts(cases: list[Case]) -> dict[str, str]:
    """About 1 MB of each kind of text (see the module docstring)."""
    dense = " ".join(c.written.strip().rstrip(".") + "." for c in cases if c.written.strip())
    texts = {"cases_repeated": (dense + "\n") * (MEGABYTE // (len(dense) + 1) + 1)}
    if FORTUNES.is_dir():
        prose = []
        for path in sorted(FORTUNES.iterdir()):
            if path.suffix or not path.is_file():
                continue
            prose += [t.strip() for t in path.read_text(errors="replace").split("\n%\n")]
        # braces mark inline phonemes for Kantor (an unmatched one is an error): the
        # few in the fortunes' code snippets are dropped
        text = "\n\n".join(t for t in prose if t).replace("{", "").replace("}", "")
        texts["fortunes_prose"] = (text + "\n\n") * (MEGABYTE // (len(text) + 2) + 1)
    return {name: text[:MEGABYTE] for name, text in texts.items()}


def seconds_to_read(read: Callable[[str], str], text: str) -> float:
    started = time.perf_counter()
    read(text)
    return time.perf_counter() - started


def run_nemo(python: str, cases: list[Case], texts: dict[str, str], cache_dir: Path) -> dict:
    """NeMo's outputs and timings through benchmarks/text_normalization_nemo.py."""
    request = {"cases": [c.written for c in cases],
               "texts": {name: text[:NEMO_SAMPLE] for name, text in texts.items()}}
    done = subprocess.run(
        [python, str(ROOT / "benchmarks" / "text_normalization_nemo.py"),
         "--cache-dir", str(cache_dir)], input=json.dumps(request), capture_output=True,
        text=True, check=True)
    return json.loads(done.stdout)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = [s for s in ("kantor_before", "kantor", "nemo") if s in results["accuracy"]]
    classes = list(results["accuracy"]["kantor"]["classes"])
    fig, ax = plt.subplots(figsize=(13, 4.5))
    width = 0.8 / len(systems)
    colours = {"kantor_before": "#999", "kantor": "#2a7", "nemo": "#76b900"}
    for k, system in enumerate(systems):
        shares = [100 * results["accuracy"][system]["classes"][c]["share"] for c in classes]
        total = 100 * results["accuracy"][system]["share"]
        ax.bar(np.arange(len(classes)) + k * width, shares, width, color=colours[system],
               label=f"{system} ({total:.1f}% of all)")
    ax.axhline(60, color="k", ls=":", lw=1, label="no class below 60%")
    ax.axhline(85, color="k", ls="--", lw=1, label="85% of all cases")
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{c}\n({results['accuracy']['kantor']['classes'][c]['cases']})"
                        for c in classes], rotation=60, fontsize=7)
    ax.set_ylabel("% of cases read right")
    ax.set_title("NeMo's English text-normalisation test cases, per class (cases)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases-dir", type=Path, default=CASES_DIR)
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare")
    parser.add_argument("--nemo-python", help="a Python with nemo_text_processing")
    parser.add_argument("--nemo-cache", type=Path, default=ROOT / ".cache" / "nemo-tn")
    parser.add_argument("--nemo-data", type=Path,
                        default=ROOT / ".cache" / "nemo-text-processing-data",
                        help="NeMo-text-processing's data/ folder (other suites)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the cases' emoji and foreign letters, counted
    cases = load_cases(args.cases_dir)
    texts = megabyte_texts(cases)
    results: dict = {"cases_dir": str(args.cases_dir.relative_to(ROOT)
                                      if args.cases_dir.is_relative_to(ROOT)
                                      else args.cases_dir),
                     "baseline_revision": args.baseline,
                     "matching_rule": __doc__.split("Matching rule: ")[1].split("\n\n")[0],
                     "accuracy": {}, "seconds_per_megabyte": {}}
    with tempfile.TemporaryDirectory() as scratch:
        readers = {"kantor_before": kantor_reader(baseline_module(args.baseline,
                                                                  Path(scratch))),
                   "kantor": kantor_reader(sys.modules[normalize.__module__])}
        suites = load_extra_suites(args.nemo_data) if args.nemo_data.is_dir() else {}
        results["other_suites"] = {suite: {} for suite in suites}
        for name, read in readers.items():
            results["accuracy"][name] = score(cases, [read(c.written) for c in cases])
            for suite, suite_cases in suites.items():
                scored = score(suite_cases, [read(c.written) for c in suite_cases])
                results["other_suites"][suite][name] = {
                    k: scored[k] for k in ("cases", "passed", "share")}
            results["seconds_per_megabyte"][name] = {
                text_name: round(seconds_to_read(read, text), 3)
                for text_name, text in texts.items()}
    if args.nemo_python:
        nemo = run_nemo(args.nemo_python, cases, texts, args.nemo_cache)
        results["accuracy"]["nemo"] = score(cases, nemo["outputs"])
        results["accuracy"]["nemo"]["version"] = nemo["version"]
        results["seconds_per_megabyte"]["nemo"] = {
            name: round(t["seconds"] * MEGABYTE / t["characters"], 1)
            for name, t in nemo["texts"].items()}
        results["seconds_per_megabyte"]["nemo_note"] = (
            f"extrapolated from the first {NEMO_SAMPLE} characters of each text, "
            "normalised sentence by sentence")
        results["nemo_case_ms"] = {
            "median": round(1000 * sorted(nemo["case_seconds"])[len(cases) // 2], 2),
            "max": round(1000 * max(nemo["case_seconds"]), 2)}
        results["nemo_setup_seconds"] = round(nemo["setup_seconds"], 1)
    results["texts_characters"] = {name: len(text) for name, text in texts.items()}
    results["load_average_1min"] = {"after": round(os.getloadavg()[0], 2),
                                    "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "text_normalization.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / "text_normalization.png")
    for name, result in results["accuracy"].items():
        print(f"{name}: {result['passed']}/{result['cases']} = {100 * result['share']:.1f}%"
              f"; lowest class {result['lowest_class']} "
              f"{100 * result['classes'][result['lowest_class']]['share']:.0f}%")
    print("seconds per MB:", json.dumps(results["seconds_per_megabyte"]))
    for suite, systems in results["other_suites"].items():
        print(suite, {name: f"{100 * r['share']:.1f}% of {r['cases']}"
                      for name, r in systems.items()})


if __name__ == "__main__":
    sys.exit(main())
