"""Kantor's speech next to Festival (HTS SLT, the teacher), flite and espeak-ng.

All systems read the same held-out test sentences of the speech corpus (split "test" of
``.cache/speech/festival/sentences.tsv``) and are measured in one run:

* real-time factor: wall seconds / audio seconds, one core (CPU 0), after a warm-up call.
  External engines: one process per sentence, start-up included, and also warm: every
  sentence in one process (start-up paid once), with their bare start-up time. Kantor:
  text in -> all audio out through ``Voice.stream``, one ONNX Runtime thread;
* time to first audio for a short (3-word), a 10-word and a long (24-word) sentence,
  median over ``--repeats``: Kantor's first streamed chunk; for the others, which do not
  stream, the time their command takes to write the complete file;
* intelligibility: WER of pocketsphinx (en-US, default config) against the normalised
  text, summed over sentences; the teacher's corpus WAVs are scored too, for reference;
* DNSMOS P.835 SIG/BAK/OVRL means (speechmos's model, 16 kHz).

Writes tts.json, tts_transcripts.json and tts.png under ``--out``.

    python benchmarks/tts.py [--sentences 100] [--repeats 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import soundfile as sf
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: harness/
from harness.tts_metrics import Dnsmos, Recogniser, corpus_wer, normalise_words, to_asr_rate
from harness.tts_systems import (
    EngineError,
    ExternalEngine,
    KantorVoice,
    Rendering,
    external_engines,
    scratch_folder,
)
from kantor.export.speech.festival import DEFAULT_DIR, read_corpus_index

TTFA_TEXTS = {
    "short": "Good morning, everyone.",
    "medium": "The clock on the wall struck nine as we left.",
    "long": "When the rain finally stopped in the late afternoon, the children ran out into "
            "the garden to look for snails under the wet leaves.",
}
WARMUP_TEXT = "This sentence only warms the engine up."
TEACHER = "festival corpus"  # the Festival WAVs Kantor's voice was trained on
KANTOR_WORLD = "kantor (world vocoder)"  # the same voice on the WORLD-style vocoder
# The neural vocoder's issue: the whole pipeline within 0.02 of real time on one thread,
# first audio within 20 ms, WER within 1.1x the teacher's and DNSMOS overall at its level.
TARGETS = {"rtf": 0.02, "ttfa_ms": 20.0, "wer_vs_teacher": 1.1, "dnsmos_ovrl_vs_teacher": 0.0}


def test_sentences(folder: Path, count: int) -> list[tuple[str, str]]:
    """The first ``count`` held-out ``(id, text)`` pairs whose Festival render is complete."""
    rows = [(ident, text) for ident, split, text in read_corpus_index(folder) if split == "test"]
    if len(rows) < count:
        raise SystemExit(f"only {len(rows)} rendered test sentences in {folder}, {count} asked "
                         "(render the corpus: python -m kantor.export.speech.festival)")
    return rows[:count]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "mean": float(np.mean(values))}


def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "core_used": "CPU 0 (taskset / affinity)",
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "platform": platform.platform()}


def time_to_first_audio(engine, repeats: int) -> dict[str, float]:
    """Median milliseconds to first audio per sentence length."""
    return {length: float(np.median([engine.render(text).first_audio_s * 1000
                                     for _ in range(repeats)]))
            for length, text in TTFA_TEXTS.items()}


def run(sentences: int, repeats: int, corpus: Path, workdir: Path) -> tuple[dict, dict]:
    """Measure every system (the external engines write under ``workdir``); returns
    (results, transcripts)."""
    rows = test_sentences(corpus, sentences)
    texts = [text for _, text in rows]
    engines = external_engines(workdir)
    notes = {}
    try:  # the default voice (the neural vocoder) and the same voice on the WORLD-style one
        engines[:0] = [KantorVoice(), KantorVoice(vocoder="world", name=KANTOR_WORLD)]
    except EngineError as error:
        notes["kantor"] = str(error)
        print(f"note: {error}; measuring the baselines alone")

    systems: dict[str, dict] = {}
    audio16k: dict[str, list[np.ndarray]] = {}
    for engine in engines:
        engine.render(WARMUP_TEXT)
    renders: dict[str, list[Rendering]] = {engine.name: [] for engine in engines}
    # sentence by sentence, engines interleaved, so a drift in background load hits all
    for text in tqdm(texts, desc="render", unit="sentence"):
        for engine in engines:
            renders[engine.name].append(engine.render(text))
    for engine in tqdm(engines, desc="first audio", unit="engine"):
        done = renders[engine.name]
        systems[engine.name] = {
            "version": engine.version(),
            "sentences": len(done),
            "audio_s": float(sum(r.duration_s for r in done)),
            "rtf": {**summary([r.rtf for r in done]),
                    "total": float(sum(r.wall_s for r in done) / sum(r.duration_s for r in done))},
            "ttfa_ms": time_to_first_audio(engine, repeats),
            "ttfa_is": ("first streamed chunk" if engine.name.startswith("kantor")
                        else "complete file written (no streaming), process start-up included"),
            "rtf_is": ("in process, text in -> all audio out, 1 thread"
                       if engine.name.startswith("kantor")
                       else "one process per sentence, start-up included"),
        }
        audio16k[engine.name] = [to_asr_rate(r.audio, r.rate) for r in done]
    for engine in engines:
        if engine.name == "flite":
            systems["flite"]["voice"] = engine.voice
        if engine.name == "espeak-ng":
            systems["espeak-ng"]["voice"] = engine.voice
        if engine.name.startswith("kantor"):
            systems[engine.name]["threads"] = engine.threads or "OMP_NUM_THREADS=1"
        if isinstance(engine, ExternalEngine):  # warm: every sentence in one process
            wall, seconds = engine.render_batch(texts)
            startup = engine.startup_s()
            systems[engine.name]["startup_s"] = startup
            systems[engine.name]["rtf_batch"] = {
                "total": wall / seconds, "total_without_startup": (wall - startup) / seconds,
                "audio_s": seconds, "is": "all sentences in one process, start-up paid once"}
    teacher = [sf.read(corpus / f"{ident}.wav", dtype="float32") for ident, _ in rows]
    audio16k[TEACHER] = [to_asr_rate(a, rate) for a, rate in teacher]
    systems.setdefault(TEACHER, {"sentences": len(teacher), "version": f"{corpus}/*.wav"})

    recogniser, dnsmos = Recogniser(), Dnsmos()
    transcripts: dict[str, list[dict]] = {}
    for name, clips in tqdm(audio16k.items(), desc="ASR + DNSMOS", unit="system"):
        hypotheses = [recogniser.transcribe(clip, 16000) for clip in clips]
        scores = [dnsmos.score(clip, 16000) for clip in clips]
        systems[name]["wer"] = corpus_wer(texts, hypotheses)
        systems[name]["dnsmos"] = {key: float(np.mean([getattr(s, key) for s in scores]))
                                   for key in ("sig", "bak", "ovrl")}
        transcripts[name] = [{"id": ident, "reference": " ".join(normalise_words(text)),
                              "hypothesis": hyp}
                             for (ident, text), hyp in zip(rows, hypotheses, strict=True)]
    if "kantor" not in systems:
        systems["kantor"] = {"available": False, "note": notes.get("kantor", "")}
    teacher_scores = systems[TEACHER]
    results = {
        "benchmark": "tts",
        "corpus": str(corpus),
        "sentence_ids": [ident for ident, _ in rows],
        "ttfa_texts": TTFA_TEXTS,
        "ttfa_repeats": repeats,
        "asr": "pocketsphinx en-US default config, 16 kHz 16-bit mono (soxr resampling)",
        "wer_is": "summed word edit distance / summed reference words; lower-case, "
                  "punctuation stripped, numbers as written",
        "dnsmos_is": "speechmos DNSMOS P.835 sig_bak_ovr.onnx, non-personalised, 16 kHz",
        "machine": machine_info(),
        "targets": {"rtf": TARGETS["rtf"], "ttfa_ms": TARGETS["ttfa_ms"],
                    "wer": TARGETS["wer_vs_teacher"] * teacher_scores["wer"],
                    "dnsmos_ovrl": teacher_scores["dnsmos"]["ovrl"]
                    + TARGETS["dnsmos_ovrl_vs_teacher"],
                    "rule": "RTF <= 0.02, TTFA <= 20 ms, WER <= 1.1 x teacher (its corpus "
                            "WAVs), DNSMOS OVRL >= teacher"},
        "systems": systems,
    }
    return results, transcripts


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = results["systems"]
    timed = [name for name in systems if "rtf" in systems[name]]
    scored = [name for name in systems if "wer" in systems[name]]
    targets = results["targets"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))

    ax = axes[0, 0]
    labels, values = [], []
    for name in timed:
        labels.append(name)
        values.append(systems[name]["rtf"]["median"])
        if "rtf_batch" in systems[name]:
            labels.append(f"{name}\n(batch)")
            values.append(systems[name]["rtf_batch"]["total"])
    ax.bar_label(ax.bar(labels, values, color="tab:blue"), fmt="%.4f", fontsize=8)
    ax.set_yscale("log")
    ax.axhline(targets["rtf"], color="tab:red", linestyle="--", label=f"target {targets['rtf']:g}")
    ax.set_title("Real-time factor, median (one core; log)")
    ax.legend()

    ax = axes[0, 1]
    width = 0.8 / len(TTFA_TEXTS)
    for k, length in enumerate(TTFA_TEXTS):
        ax.bar(np.arange(len(timed)) + (k - 1) * width,
               [systems[n]["ttfa_ms"][length] for n in timed], width, label=length)
    ax.set_xticks(np.arange(len(timed)), timed)
    ax.set_yscale("log")
    ax.axhline(targets["ttfa_ms"], color="tab:red", linestyle="--", label="target 20 ms")
    ax.set_title("Time to first audio, ms (baselines: whole file; log)")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ax.bar_label(ax.bar(scored, [systems[n]["wer"] for n in scored], color="tab:green"),
                 fmt="%.3f", fontsize=8)
    ax.axhline(targets["wer"], color="tab:red", linestyle="--",
               label=f"target {TARGETS['wer_vs_teacher']:g} x teacher")
    ax.set_title("pocketsphinx WER (lower is better)")
    ax.legend()

    ax = axes[1, 1]
    ax.bar_label(ax.bar(scored, [systems[n]["dnsmos"]["ovrl"] for n in scored],
                        color="tab:purple"), fmt="%.2f", fontsize=8)
    ax.axhline(targets["dnsmos_ovrl"], color="tab:red", linestyle="--",
               label="target: the teacher's")
    ax.set_ylim(1, 5)
    ax.set_title("DNSMOS OVRL (higher is better)")
    ax.legend()
    for ax in axes.flat:
        ax.tick_params(axis="x", labelsize=8)
    n = len(results["sentence_ids"])
    missing = "" if "rtf" in systems.get("kantor", {}) else " - Kantor not available yet"
    fig.suptitle(f"TTS on {n} held-out sentences ({results['machine']['cpu']}, one core)"
                 f"{missing}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20, help="time-to-first-audio repeats")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.sentences < 1 or args.repeats < 1:
        parser.error("--sentences and --repeats must be positive")
    with scratch_folder() as workdir:
        results, transcripts = run(args.sentences, args.repeats, args.corpus, Path(workdir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tts.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "tts_transcripts.json").write_text(json.dumps(transcripts, indent=1) + "\n")
    plot(results, args.out / "tts.png")
    for name, system in results["systems"].items():
        print(name, json.dumps({k: v for k, v in system.items()
                                if k in ("rtf", "rtf_batch", "ttfa_ms", "wer", "dnsmos", "note")}))


if __name__ == "__main__":
    main()
