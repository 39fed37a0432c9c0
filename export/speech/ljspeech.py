"""Read a recorded corpus in the LJSpeech layout and align it into training examples.

The layout::

    FOLDER/metadata.csv     one line per utterance: ``ID|text|normalized text`` (the third
                            field may be missing or empty: the text is used then)
    FOLDER/wavs/ID.wav      mono or stereo, any sample rate

Such a corpus has no phone boundaries. Each utterance's phones come from the text front
end (engine/speech/frontend: phrases of words, a pause between phrases), its frames from
``features.analyze``, and the durations from forced alignment with the segmentation model
(export/speech/segmentation, on the audio's log-mel up to 8 kHz, so any sample rate from
16 kHz up works); a pause between phrases the reader did not make is dropped.
The result is the same ``Example`` the Festival corpus gives (export/speech/dataset), so
the prosody and acoustic models train on either.

    python -m kantor.export.speech.ljspeech FOLDER [--limit N]   # align and report
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from kantor.engine.speech.features import FRAME_SECONDS, FeatureError, analyze
from kantor.engine.speech.linguistic import PhoneItem, encode
from kantor.engine.speech.phones import PAUSE
from kantor.export.speech.dataset import Example
from kantor.export.speech.segmentation import Aligner, AlignmentError, optional_pauses

# text -> (phone items with pauses between phrases, is it a question)
Phonemizer = Callable[[str], tuple[list[PhoneItem], bool]]


class CorpusError(ValueError):
    """A corpus folder that does not follow the LJSpeech layout, or an utterance in it that
    cannot be used (unreadable audio, no words, too short for its phones)."""


@dataclass(frozen=True)
class Utterance:
    """One line of metadata.csv: ``text`` is the normalised text when given."""

    ident: str
    text: str
    wav: Path


def read_metadata(folder: Path) -> list[Utterance]:
    """The utterances listed in ``folder/metadata.csv``, each checked to have its WAV.
    CorpusError names the file and line of the first problem."""
    folder = Path(folder)
    metadata = folder / "metadata.csv"
    if not metadata.is_file():
        raise CorpusError(f"{metadata} is missing (LJSpeech layout: metadata.csv with "
                          "'ID|text|normalized' lines and wavs/ID.wav)")
    try:
        lines = metadata.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{metadata} is unreadable: {error}") from None
    utterances: list[Utterance] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("|")
        where = f"{metadata}:{number}"
        if len(fields) not in (2, 3):
            raise CorpusError(f"{where}: expected 'ID|text|normalized', got {len(fields)} "
                              f"field(s): {line[:60]!r}")
        ident = fields[0].strip()
        text = (fields[2] if len(fields) == 3 and fields[2].strip() else fields[1]).strip()
        if not ident or "/" in ident or "\\" in ident:
            raise CorpusError(f"{where}: bad utterance id {ident!r}")
        if not text:
            raise CorpusError(f"{where}: utterance {ident} has no text")
        if ident in seen:
            raise CorpusError(f"{where}: utterance {ident} is listed twice")
        seen.add(ident)
        wav = folder / "wavs" / f"{ident}.wav"
        if not wav.is_file():
            raise CorpusError(f"{where}: {wav} is missing")
        utterances.append(Utterance(ident, text, wav))
    if not utterances:
        raise CorpusError(f"{metadata} lists no utterances")
    return utterances


def front_end_phonemizer() -> Phonemizer:
    """Phones from the text front end (CMU dictionary + G2P), loaded once."""
    from kantor.engine.speech.frontend import FrontEnd
    from kantor.engine.speech.voice import sentence_from_phrases

    front_end = FrontEnd.load()

    def phonemize(text: str) -> tuple[list[PhoneItem], bool]:
        phrases = front_end.phrases(text)
        question = bool(phrases) and phrases[-1].question
        sentence = sentence_from_phrases([[list(w.phones) for w in p.words] for p in phrases],
                                         question, text)
        return sentence.items, question

    return phonemize


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float64 samples and the file's rate; CorpusError when unreadable."""
    try:
        audio, rate = sf.read(path, dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as error:
        raise CorpusError(f"{path}: cannot read audio: {error}") from None
    return audio.mean(axis=1), int(rate)


def align_utterance(utterance: Utterance, aligner: Aligner, phonemize: Phonemizer,
                    split: str = "train") -> Example:
    """Analyse, phonemise and align one utterance into an Example (durations in 5 ms
    frames, summing to its frame count)."""
    items, question = phonemize(utterance.text)
    if not any(item.phone != PAUSE for item in items):
        raise CorpusError(f"{utterance.ident}: no speakable words in {utterance.text!r}")
    audio, rate = read_audio(utterance.wav)
    try:
        frames = analyze(audio, rate)
    except FeatureError as error:
        raise CorpusError(f"{utterance.wav}: {error}") from None
    phones = [item.phone for item in items]
    try:
        durations = aligner.align(audio, rate, phones, optional_pauses(phones), len(frames))
    except AlignmentError as error:
        raise CorpusError(f"{utterance.ident} ({len(frames) * FRAME_SECONDS:.2f} s): "
                          f"{error}") from None
    kept = durations > 0  # phrase pauses the reader did not make
    items = [item for item, keep in zip(items, kept, strict=True) if keep]
    ids, feats = encode(items, question=question)
    return Example(utterance.ident, split, utterance.text, items, ids, feats,
                   durations[kept], frames)


def load_ljspeech(folder: Path, limit: int | None = None, aligner: Aligner | None = None,
                  phonemize: Phonemizer | None = None, split: str = "train") -> list[Example]:
    """Aligned examples of the corpus in ``folder`` (the first ``limit`` lines); the
    shipped aligner and the text front end unless given."""
    utterances = read_metadata(folder)[:limit] if limit else read_metadata(folder)
    aligner = aligner or Aligner.load()
    phonemize = phonemize or front_end_phonemizer()
    return [align_utterance(u, aligner, phonemize, split)
            for u in tqdm(utterances, desc="aligning", unit="utt",
                          disable=len(utterances) < 20)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    examples = load_ljspeech(args.folder, args.limit)
    phones = sum(len(e.items) for e in examples)
    seconds = sum(len(e.frames) for e in examples) * FRAME_SECONDS
    print(json.dumps({"utterances": len(examples), "phones": phones,
                      "hours": round(seconds / 3600, 3)}))


if __name__ == "__main__":
    main()
