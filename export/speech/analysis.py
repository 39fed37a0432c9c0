"""Analyse the rendered corpus into the acoustic feature contract (engine/speech/features).

One ``ID.npz`` (f0, mcep, bap; float32) per utterance under ``.cache/speech/features``, made
in parallel processes with a progress bar; existing files are skipped, so it resumes.

    python -m kantor.export.speech.analysis [--workers 2]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from kantor.engine.speech.features import Frames, analyze
from kantor.export.parallel import run_jobs
from kantor.export.speech.festival import DEFAULT_DIR, read_corpus_index

FEATURES_DIR = Path(".cache/speech/features")


def analyze_file(wav: Path, out: Path) -> Path:
    """Analyse one WAV into ``out`` (npz); written via a temporary name so a killed run
    never leaves half a file."""
    audio, rate = sf.read(wav, dtype="float64")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    frames = analyze(audio, rate)
    partial = out.with_suffix(".part.npz")
    np.savez(partial, f0=frames.f0, mcep=frames.mcep, bap=frames.bap)
    partial.rename(out)
    return out


def load_frames(path: Path) -> Frames:
    """The frames saved by ``analyze_file``."""
    with np.load(path) as data:
        return Frames(data["f0"], data["mcep"], data["bap"])


def analyze_corpus(corpus: Path = DEFAULT_DIR, out: Path = FEATURES_DIR,
                   workers: int = 2, ray_address: str | None = None) -> int:
    """Analyse every rendered utterance not yet analysed, in ``workers`` processes or on a
    Ray cluster (``ray_address``, export/parallel.py); returns how many exist."""
    out.mkdir(parents=True, exist_ok=True)
    # held-out sentences first: evaluation needs them all, training can start on a part
    rows = sorted(read_corpus_index(corpus), key=lambda row: row[1] != "test")
    ids = [ident for ident, _, _ in rows]
    todo = [i for i in ids if not (out / f"{i}.npz").exists()]
    jobs = [(corpus / f"{i}.wav", out / f"{i}.npz") for i in todo]
    for _ in tqdm(run_jobs(analyze_file, jobs, workers, ray_address), total=len(todo),
                  desc="analysis", unit="utt"):
        pass
    return sum((out / f"{i}.npz").exists() for i in ids)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, default=FEATURES_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ray-address", help="analyse on this Ray cluster ('auto', "
                                              "'ray://HOST:10001'; 'local' starts one here)")
    args = parser.parse_args(argv)
    done = analyze_corpus(args.corpus, args.out, args.workers, args.ray_address)
    print(f"{done} utterances analysed")


if __name__ == "__main__":
    main()
