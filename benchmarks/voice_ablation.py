"""Where the voice loses intelligibility: pocketsphinx WER of each stage on held-out sentences.

Stages, each replacing one more teacher part by Kantor's (same sentences, same recogniser):
  original            Festival's audio;
  vocoder             Kantor's vocoder on the teacher's analysed features;
  acoustic            + the acoustic model, given the teacher's durations and F0;
  acoustic+f0         + the predicted F0 (teacher durations);
  all predicted       + the predicted durations (Festival's phones);
  kantor              + Kantor's own text front end (what `kantor say` does).

Every stage after the original runs once per vocoder: the WORLD-style one
(engine/speech/vocoder.py) and the neural one (engine/speech/neural_vocoder.py), in the
same run, on the same sentences and recogniser.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: harness/
from harness.tts_metrics import Recogniser, corpus_wer
from kantor.engine.speech.features import HOP, SAMPLE_RATE
from kantor.engine.speech.prosody import f0_track, round_durations
from kantor.engine.speech.voice import Voice
from kantor.export.speech.dataset import load_examples
from kantor.export.speech.festival import DEFAULT_DIR

STAGES = ("original", "vocoder", "acoustic", "acoustic+f0", "all predicted", "kantor")
VOCODERS = ("world", "neural")


def run(count: int) -> dict:
    voices = {kind: Voice.load(vocoder=kind) for kind in VOCODERS}
    models = voices["world"].models
    recogniser = Recogniser()
    examples = load_examples("test", limit=count)
    heard: dict[str, list[str]] = {"original": []}
    heard |= {f"{s} ({kind})": [] for kind in VOCODERS for s in STAGES[1:]}

    for e in examples:
        audio, rate = sf.read(DEFAULT_DIR / f"{e.ident}.wav", dtype="float32")
        heard["original"].append(recogniser.transcribe(audio, rate))
        encodings = models.encode(e.ids, e.feats)
        total = int(e.durations.sum())
        prosody = models.prosody(e.ids, e.feats)
        durations = round_durations(prosody.frames)
        frames = {
            "vocoder": e.frames,
            "acoustic": models.acoustic_window(encodings, e.durations, e.frames.f0, 0, total),
            "acoustic+f0": models.acoustic_window(
                encodings, e.durations, f0_track(e.durations, prosody.log_f0, prosody.voiced),
                0, total),
            "all predicted": models.acoustic_window(
                encodings, durations, f0_track(durations, prosody.log_f0, prosody.voiced), 0,
                int(durations.sum()))}
        for kind, voice in voices.items():
            for stage, stage_frames in frames.items():
                # the vocoders lag by one frame: trimmed so every stage is scored alike
                spoken = voice.vocoder.synthesize(stage_frames)[HOP:]
                heard[f"{stage} ({kind})"].append(recogniser.transcribe(spoken, SAMPLE_RATE))
            heard[f"kantor ({kind})"].append(
                recogniser.transcribe(voice.synthesize(e.text), SAMPLE_RATE))
    texts = [e.text for e in examples]
    words = sum(len(t.split()) for t in texts)
    return {"sentences": len(examples), "reference_words": words,
            "wer": {name: corpus_wer(texts, said) for name, said in heard.items()}}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(STAGES))
    original = results["wer"]["original"] * 100
    ax.bar([0], [original], 0.6, color="#777777", label="Festival (the teacher)")
    ax.text(0, original + 0.3, f"{original:.1f}", ha="center", fontsize=8)
    for offset, kind, colour in ((-0.2, "world", "#4c72b0"), (0.2, "neural", "#55a868")):
        values = [results["wer"][f"{s} ({kind})"] * 100 for s in STAGES[1:]]
        ax.bar(x[1:] + offset, values, 0.4, color=colour, label=f"{kind} vocoder")
        for xi, v in zip(x[1:] + offset, values, strict=True):
            ax.text(xi, v + 0.3, f"{v:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, STAGES)
    ax.axhline(original * 1.1, color="red", ls="--", label="1.1 x original (target)")
    ax.set_ylim(0, max(results["wer"].values()) * 100 * 1.35)
    ax.set_ylabel("pocketsphinx WER, %")
    ax.set_title(f"Voice ablation, {results['sentences']} held-out sentences")
    ax.legend(loc="upper left", ncol=2, fontsize=8)
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
