"""Scores and audio to judge by eye and ear: a few held-out chorale melodies and tunes from
outside the repertoire, set by Bach (the chorales), by Kantor before this work and by
Kantor now, rendered with MuseScore 3 (PNG) and fluidsynth with a General MIDI
soundfont (OGG), side by side.

    python benchmarks/render_examples.py [--before git:4d6dac7] \
        [--out benchmarks/results/examples]

Needs the Debian packages musescore3, fluidsynth and fluid-soundfont-gm. Writes
<name>-<who>.png/.ogg/.musicxml and an index.md listing them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
from harmonizer_style import OLD_SAMPLER, model_folder  # the analysis's "before"

from kantor.bridges.scorefiles import write_harmonisation
from kantor.engine.chorale.gibbs import ChoraleSampler
from kantor.engine.chorale.melody import Melody, harmonize_melody
from kantor.engine.models import ASSETS
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.outside_repertoire import TUNES
from kantor.export.chorale.style import melody_of

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
CHORALES = ("bwv432", "bwv110.7", "bwv145.5")  # major, minor, ending on the dominant
OUTSIDE = ("Greensleeves (3/4)", "Drunken Sailor (Dorian)")
SAMPLE_RATE = 22050


def render(raw: np.ndarray, melody: Melody, stem: Path) -> list[Path]:
    """MusicXML, PNG (first page) and OGG of one setting."""
    xml = stem.with_suffix(".musicxml")
    write_harmonisation(raw, melody, xml)
    written = [xml]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    png = stem.with_suffix(".png")
    subprocess.run(["mscore3", "-r", "80", "-o", str(png), str(xml)], env=env, check=True,
                   capture_output=True, timeout=120)
    pages = sorted(stem.parent.glob(f"{stem.name}-*.png"))
    if pages:  # MuseScore numbers the pages; keep the first under the plain name
        pages[0].replace(png)
        for extra in pages[1:]:
            extra.unlink()
    written.append(png)
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "setting.mid"
        wav = Path(tmp) / "setting.wav"
        write_harmonisation(raw, melody, mid)
        subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SAMPLE_RATE), "-F",
                        str(wav), str(SOUNDFONT), str(mid)], check=True, capture_output=True,
                       timeout=300)
        audio, rate = soundfile.read(wav)
        ogg = stem.with_suffix(".ogg")
        soundfile.write(ogg, audio.mean(axis=1) if audio.ndim == 2 else audio, rate,
                        format="OGG", subtype="VORBIS")
    written.append(ogg)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="git:4d6dac7",
                        help="model folder, or git:COMMIT (the models shipped then)")
    parser.add_argument("--after", default=str(ASSETS))
    parser.add_argument("--out", default="benchmarks/results/examples")
    args = parser.parse_args()
    for tool in ("mscore3", "fluidsynth"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (Debian: musescore3 fluidsynth "
                             "fluid-soundfont-gm)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = ChoraleSampler.load(Path(model_folder(args.before)))
    after = ChoraleSampler.load(Path(args.after))
    corpus = {c.name: c for c in load_corpus().chorales}
    index = ["# Before and after, by eye and ear", "",
             "Rendered by `benchmarks/render_examples.py` (MuseScore 3, fluidsynth with "
             "FluidR3 GM). *Before*: the models and sampler before the style work "
             "(seed 0); *after*: Kantor's defaults now (seed 0); *Bach*: his own setting.",
             ""]
    pieces: list[tuple[str, Melody, np.ndarray | None]] = []
    for name in CHORALES:
        pieces.append((name, melody_of(corpus[name]), corpus[name].raw))
    for tune in TUNES:
        if tune.name in OUTSIDE:
            pieces.append((tune.name, tune.melody(), None))
    for name, melody, bach in pieces:
        slug = name.split(" (")[0].lower().replace(" ", "-").replace(",", "").replace(".", "-")
        versions = {"before": harmonize_melody(before, dataclasses.replace(melody),
                                                settings=OLD_SAMPLER).raw,
                    "after": harmonize_melody(after, dataclasses.replace(melody)).raw}
        if bach is not None:
            versions["bach"] = bach
        index.append(f"## {name} ({melody.resolved_key()})")
        index.append("")
        for who, raw in versions.items():
            files = render(raw, melody, out / f"{slug}-{who}")
            png, ogg = files[1].name, files[2].name
            index.append(f"- {who}: [score]({png}), [audio]({ogg}), "
                         f"[MusicXML]({files[0].name})")
            print("wrote", ", ".join(str(f) for f in files))
        index.append("")
    (out / "index.md").write_text("\n".join(index) + "\n")


if __name__ == "__main__":
    main()
