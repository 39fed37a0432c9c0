"""Kantor's Numba vocoder against WORLD's C++ synthesis (pyworld), side by side.

For held-out corpus sentences (Festival HTS SLT audio): analyse into the feature contract,
then resynthesise with
  - kantor: engine/speech/vocoder.py from the contract's features (what the voice uses);
  - world-contract: pyworld.synthesize from the same features decoded back to WORLD's
    spectral envelope and aperiodicity (same information, WORLD's synthesis);
  - world-full: pyworld.synthesize from WORLD's own full-resolution analysis (an upper
    bound: no compression into 40 cepstra and 5 bands).
Quality: mel-cepstral distortion of the resynthesis (re-analysed) to the original, and
pocketsphinx word error rate (the original audio's WER alongside). Speed: synthesis time
per second of audio on one thread, and the ratio Kantor / WORLD.

    python benchmarks/vocoder.py [--sentences 100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: harness/
from harness.tts_metrics import Recogniser, corpus_wer
from kantor.engine.speech.features import (
    ANALYSIS_FFT,
    F0_FLOOR,
    FRAME_SECONDS,
    HOP,
    SAMPLE_RATE,
    analyze,
    aperiodicity_from_bap,
    envelope_from_mcep,
    mel_cepstral_distortion,
    resample,
)
from kantor.engine.speech.vocoder import Vocoder
from kantor.export.speech.festival import DEFAULT_DIR, read_corpus_index

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pyworld


def world_full(audio: np.ndarray) -> tuple:
    f0, times = pyworld.dio(audio, SAMPLE_RATE, f0_floor=F0_FLOOR, f0_ceil=400.0,
                            frame_period=FRAME_SECONDS * 1000)
    f0 = pyworld.stonemask(audio, f0, times, SAMPLE_RATE)
    sp = pyworld.cheaptrick(audio, f0, times, SAMPLE_RATE, f0_floor=F0_FLOOR,
                            fft_size=ANALYSIS_FFT)
    ap = pyworld.d4c(audio, f0, times, SAMPLE_RATE, fft_size=ANALYSIS_FFT)
    return f0, sp, ap


def timed(function, *args):
    began = time.perf_counter()
    out = function(*args)
    return out, time.perf_counter() - began


def run(count: int, corpus: Path) -> dict:
    rows = [r for r in read_corpus_index(corpus) if r[1] == "test"][:count]
    vocoder = Vocoder()
    recogniser = Recogniser()
    systems = ("original", "kantor", "world-contract", "world-full")
    texts: list[str] = []
    heard: dict[str, list[str]] = {s: [] for s in systems}
    mcd: dict[str, list[float]] = {s: [] for s in systems[1:]}
    seconds: dict[str, float] = {s: 0.0 for s in systems[1:]}
    audio_seconds = 0.0
    for ident, _, text in rows:
        audio, rate = sf.read(corpus / f"{ident}.wav")
        audio = resample(audio, rate)
        frames = analyze(audio, SAMPLE_RATE)
        f0 = frames.f0.astype(np.float64)
        sp = envelope_from_mcep(frames.mcep, ANALYSIS_FFT)
        ap = aperiodicity_from_bap(frames.bap, ANALYSIS_FFT)
        full = world_full(audio)
        outputs = {}
        # Kantor's output lags the analysis by one frame (HOP samples): trimmed for scoring
        out, took = timed(vocoder.synthesize, frames)
        outputs["kantor"], seconds["kantor"] = out[HOP:], seconds["kantor"] + took
        out, took = timed(pyworld.synthesize, f0, sp, ap, SAMPLE_RATE, FRAME_SECONDS * 1000)
        outputs["world-contract"] = out
        seconds["world-contract"] += took
        out, took = timed(pyworld.synthesize, *full, SAMPLE_RATE, FRAME_SECONDS * 1000)
        outputs["world-full"] = out
        seconds["world-full"] += took
        audio_seconds += len(audio) / SAMPLE_RATE
        texts.append(text)
        heard["original"].append(recogniser.transcribe(audio, SAMPLE_RATE))
        for name, out in outputs.items():
            again = analyze(np.asarray(out, np.float64), SAMPLE_RATE)
            mcd[name].append(mel_cepstral_distortion(frames.mcep, again.mcep))
            heard[name].append(recogniser.transcribe(np.asarray(out, np.float32),
                                                     SAMPLE_RATE))
    results = {
        "sentences": len(rows),
        "audio_seconds": audio_seconds,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "python": platform.python_version()},
        "wer": {s: corpus_wer(texts, heard[s]) for s in systems},
        "mcd_db": {s: float(np.mean(v)) for s, v in mcd.items()},
        "synthesis_seconds_per_audio_second": {s: v / audio_seconds
                                               for s, v in seconds.items()},
    }
    speed = results["synthesis_seconds_per_audio_second"]
    results["speed_ratio_world_over_kantor"] = speed["world-contract"] / speed["kantor"]
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    names = list(results["mcd_db"])
    speed = results["synthesis_seconds_per_audio_second"]
    axes[0].bar(names, [speed[n] * 1000 for n in names], color="#4c72b0")
    axes[0].set_ylabel("ms of compute per s of audio")
    axes[0].set_title("synthesis speed (1 thread)")
    axes[1].bar(names, [results["mcd_db"][n] for n in names], color="#55a868")
    axes[1].set_ylabel("dB")
    axes[1].set_title("MCD to the original")
    wer_names = list(results["wer"])
    axes[2].bar(wer_names, [results["wer"][n] * 100 for n in wer_names], color="#c44e52")
    axes[2].set_ylabel("%")
    axes[2].set_title("pocketsphinx WER")
    for ax in axes:
        ax.tick_params(axis="x", rotation=25)
    fig.suptitle(f"Vocoder analysis-synthesis, {results['sentences']} held-out sentences")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    results = run(args.sentences, args.corpus)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocoder.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "vocoder.png")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
