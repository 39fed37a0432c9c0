"""Where the voice loses intelligibility: pocketsphinx WER of each stage on held-out sentences.

Stages, each replacing one more teacher part by Kantor's (same sentences, same recogniser):
  original            Festival's audio;
  vocoder             Kantor's vocoder on the teacher's analysed features;
  acoustic            + the acoustic model, given the teacher's durations and F0;
  acoustic+f0         + the predicted F0 (teacher durations);
  all predicted       + the predicted durations (Festival's phones);
  kantor              + Kantor's own text front end (what `kantor say` does).

    python benchmarks/voice_ablation.py [--sentences 100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tts_metrics import Recogniser, corpus_wer

from kantor.engine.speech.features import HOP, SAMPLE_RATE, Frames
from kantor.engine.speech.prosody import f0_track, round_durations
from kantor.engine.speech.voice import Voice
from kantor.export.speech.dataset import load_examples
from kantor.export.speech.festival import DEFAULT_DIR

STAGES = ("original", "vocoder", "acoustic", "acoustic+f0", "all predicted", "kantor")


def run(count: int) -> dict:
    voice = Voice.load()
    models, vocoder = voice.models, voice.vocoder
    recogniser = Recogniser()
    examples = load_examples("test", limit=count)
    heard: dict[str, list[str]] = {s: [] for s in STAGES}

    def say(frames: Frames) -> str:
        return recogniser.transcribe(vocoder.synthesize(frames)[HOP:], SAMPLE_RATE)

    for e in examples:
        audio, rate = sf.read(DEFAULT_DIR / f"{e.ident}.wav", dtype="float32")
        heard["original"].append(recogniser.transcribe(audio, rate))
        heard["vocoder"].append(say(e.frames))
        encodings = models.encode(e.ids, e.feats)
        total = int(e.durations.sum())
        heard["acoustic"].append(say(models.acoustic_window(encodings, e.durations,
                                                            e.frames.f0, 0, total)))
        prosody = models.prosody(e.ids, e.feats)
        f0 = f0_track(e.durations, prosody.log_f0, prosody.voiced)
        heard["acoustic+f0"].append(say(models.acoustic_window(encodings, e.durations, f0, 0,
                                                               total)))
        durations = round_durations(prosody.frames)
        f0 = f0_track(durations, prosody.log_f0, prosody.voiced)
        heard["all predicted"].append(say(models.acoustic_window(
            encodings, durations, f0, 0, int(durations.sum()))))
        heard["kantor"].append(recogniser.transcribe(voice.synthesize(e.text), SAMPLE_RATE))
    texts = [e.text for e in examples]
    words = sum(len(t.split()) for t in texts)
    return {"sentences": len(examples), "reference_words": words,
            "wer": {s: corpus_wer(texts, heard[s]) for s in STAGES}}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    values = [results["wer"][s] * 100 for s in STAGES]
    ax.bar(STAGES, values, color=["#777777"] + ["#4c72b0"] * (len(STAGES) - 1))
    for x, v in enumerate(values):
        ax.text(x, v + 0.3, f"{v:.1f}", ha="center", fontsize=8)
    ax.axhline(results["wer"]["original"] * 120, color="red", ls="--",
               label="1.2 x original (target)")
    ax.set_ylabel("pocketsphinx WER, %")
    ax.set_title(f"Voice ablation, {results['sentences']} held-out sentences")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    results = run(args.sentences)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "voice_ablation.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "voice_ablation.png")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
