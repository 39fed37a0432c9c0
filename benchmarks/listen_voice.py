"""Listening material for the voice: a few held-out sentences as the teacher (Festival HTS)
said them and as Kantor says them with each vocoder, as WAV files and spectrograms side by
side, with an index page.

For each sentence: ``teacher`` (Festival's own audio, resampled to 24 kHz),
``world-on-teacher`` / ``neural-on-teacher`` (each vocoder on the teacher's analysed
features: what the vocoder alone loses) and ``kantor-world`` / ``kantor-neural`` (Kantor
end to end from the text, `kantor say` with ``--vocoder world`` / the default).

    python benchmarks/listen_voice.py [--sentences 3] [--out benchmarks/results/listening]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from kantor.engine.speech.features import HOP, SAMPLE_RATE, resample
from kantor.engine.speech.voice import Voice
from kantor.export.speech.dataset import load_examples
from kantor.export.speech.festival import DEFAULT_DIR

VERSIONS = ("teacher", "world-on-teacher", "neural-on-teacher", "kantor-world",
            "kantor-neural")


def render(count: int, out: Path) -> list[dict]:
    """Write the WAVs and spectrograms of the first ``count`` held-out sentences."""
    voices = {kind: Voice.load(vocoder=kind) for kind in ("world", "neural")}
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for example in load_examples("test", limit=count):
        audio, rate = sf.read(DEFAULT_DIR / f"{example.ident}.wav", dtype="float32")
        said = {"teacher": resample(audio, rate, SAMPLE_RATE)}
        for kind, voice in voices.items():
            said[f"{kind}-on-teacher"] = voice.vocoder.synthesize(example.frames)[HOP:]
            said[f"kantor-{kind}"] = voice.synthesize(example.text)
        said = {version: said[version] for version in VERSIONS}
        files = {}
        for version, samples in said.items():
            name = f"{example.ident}-{version}.wav"
            sf.write(out / name, np.clip(samples, -1, 1), SAMPLE_RATE, subtype="PCM_16")
            files[version] = name
        picture = f"{example.ident}-spectrograms.png"
        spectrograms(said, example.text, out / picture)
        rows.append({"ident": example.ident, "text": example.text, "files": files,
                     "spectrograms": picture})
    return rows


def spectrograms(said: dict[str, np.ndarray], text: str, path: Path) -> None:
    """Log-magnitude spectrograms (0-8 kHz) of every version, one above the other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(said), 1, figsize=(8, 1.4 * len(said)), sharex=True)
    for ax, (version, samples) in zip(axes, said.items(), strict=True):
        ax.specgram(samples, NFFT=512, Fs=SAMPLE_RATE, noverlap=384, cmap="magma",
                    vmin=-120)
        ax.set_ylim(0, 8000)
        ax.set_ylabel("Hz")
        ax.set_title(version, fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds")
    figure.suptitle(text, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=64)
    plt.close(figure)


def index(rows: list[dict], path: Path) -> None:
    lines = ["# The voice, by ear and eye", "",
             "Rendered by `benchmarks/listen_voice.py` from held-out sentences the models "
             "never trained on. *teacher*: Festival HTS (cmu_us_slt_arctic_hts), what the "
             "voice learned from; *-on-teacher*: a vocoder on the teacher's own analysed "
             "features; *kantor-*: Kantor end to end from the text.", ""]
    for row in rows:
        lines += [f"## {row['text']}", ""]
        lines += [f"- {version}: [{name}]({name})" for version, name in row["files"].items()]
        lines += ["", f"![spectrograms]({row['spectrograms']})", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/listening"))
    args = parser.parse_args(argv)
    rows = render(args.sentences, args.out)
    index(rows, args.out / "index.md")
    print(f"wrote {len(rows)} sentences x {len(VERSIONS)} versions to {args.out}")


if __name__ == "__main__":
    main()
