"""Render the speech corpus with Festival's HTS voice, with each utterance's phone segments.

Each sentence becomes ``ID.wav`` (32 kHz, 16-bit, Festival's native rate) and ``ID.lab``
(one line per segment: ``phone end_seconds stress word``, read from the Segment relation
after ``utt.synth``). Work is split into batches, one ``festival -b`` process per batch,
several in parallel; a sentence whose ``.lab`` is complete is skipped, so an interrupted
render resumes where it stopped.

    python -m kantor.export.speech.festival --out .cache/speech/festival --count 10000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from kantor.export.parallel import run_jobs
from kantor.export.speech.texts import harvest, is_test, sentence_id

VOICE = "cmu_us_slt_arctic_hts"
NATIVE_RATE = 32000
DEFAULT_DIR = Path(".cache/speech/festival")
TEST_COUNT = 300

_SCHEME_HEADER = f"""
(voice_{VOICE})
(define (kantor-dump utt path)
  (let ((fd (fopen path "w")))
    (mapcar (lambda (s)
      (format fd "%s %f %s %s\\n" (item.name s) (item.feat s "end")
        (item.feat s "R:SylStructure.parent.stress")
        (item.feat s "R:SylStructure.parent.parent.name")))
      (utt.relation.items utt 'Segment))
    (fclose fd)))
(define (kantor-say text wav lab)
  ; Utterance does not evaluate its arguments, hence the eval
  (let ((utt (utt.synth (eval (list 'Utterance 'Text text)))))
    (utt.save.wave utt wav 'riff)
    (kantor-dump utt lab)))
"""


class FestivalError(RuntimeError):
    """Festival is missing or failed on a batch."""


@dataclass(frozen=True)
class Segment:
    """One phone of a rendered utterance: times in seconds, ``stress`` 0/1 of its syllable."""

    phone: str
    start: float
    end: float
    stress: int
    word: str


def read_lab(path: Path) -> list[Segment]:
    """Segments of one ``.lab`` file (start of each = end of the previous, from 0 s)."""
    segments: list[Segment] = []
    start = 0.0
    for line in path.read_text().splitlines():
        phone, end, stress, word = line.split(" ", 3)
        end_s = round(float(end) / 0.005) * 0.005  # Festival's ends sit on a 5 ms grid
        segments.append(Segment(phone, start, end_s, int(stress or 0), word))
        start = end_s
    return segments


def lab_complete(path: Path) -> bool:
    """A lab is complete when it ends with the closing pause (written last)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    return bool(lines) and lines[-1].startswith("pau ")


def choose_sentences(count: int, test_count: int = TEST_COUNT) -> dict[str, str]:
    """``{id: text}``: the first ``count`` training and ``test_count`` held-out sentences."""
    sentences = harvest()
    train = [s for s in sentences if not is_test(s)][:count]
    test = [s for s in sentences if is_test(s)][:test_count]
    return {sentence_id(s): s for s in train + test}


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_batch(items: Sequence[tuple[str, str]], out: Path) -> int:
    """Render ``(id, text)`` pairs into ``out`` with one Festival process; returns how many."""
    lines = [_SCHEME_HEADER]
    for ident, text in items:
        wav, lab = out / f"{ident}.wav", out / f"{ident}.lab"
        lines.append(f"(kantor-say {_scheme_string(text)} {_scheme_string(str(wav))} "
                     f"{_scheme_string(str(lab))})")
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as script:
        script.write("\n".join(lines))
    try:
        done = subprocess.run(["festival", "-b", script.name], capture_output=True, text=True,
                              timeout=60 + 10 * len(items))
    finally:
        Path(script.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise FestivalError(f"festival failed: {done.stderr.strip()[-300:]}")
    return sum(lab_complete(out / f"{ident}.lab") for ident, _ in items)


def render(sentences: dict[str, str], out: Path = DEFAULT_DIR, workers: int = 2,
           batch: int = 25, ray_address: str | None = None) -> int:
    """Render every sentence not yet in ``out``, in ``workers`` processes or on a Ray
    cluster (``ray_address``, export/parallel.py); returns the number of complete
    utterances."""
    if shutil.which("festival") is None:
        raise FestivalError("festival is not installed (apt-get install festival "
                            "festvox-us-slt-hts)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sentences.tsv").write_text(
        "".join(f"{i}\t{'test' if is_test(t) else 'train'}\t{t}\n" for i, t in sentences.items()))
    todo = [(i, t) for i, t in sentences.items() if not lab_complete(out / f"{i}.lab")]
    batches = [todo[k:k + batch] for k in range(0, len(todo), batch)]
    with tqdm(total=len(sentences), initial=len(sentences) - len(todo), desc="festival",
              unit="utt") as bar:
        for rendered in run_jobs(render_batch, [(b, out) for b in batches], workers,
                                 ray_address):
            bar.update(rendered)
    return sum(lab_complete(out / f"{i}.lab") for i in sentences)


def read_corpus_index(folder: Path = DEFAULT_DIR) -> list[tuple[str, str, str]]:
    """``(id, split, text)`` of every rendered sentence listed in ``sentences.tsv``."""
    rows = []
    for line in (folder / "sentences.tsv").read_text().splitlines():
        ident, split, text = line.split("\t", 2)
        if lab_complete(folder / f"{ident}.lab"):
            rows.append((ident, split, text))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--count", type=int, default=10000, help="training sentences")
    parser.add_argument("--test-count", type=int, default=TEST_COUNT)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ray-address", help="render on this Ray cluster ('auto', "
                                              "'ray://HOST:10001'; 'local' starts one here)")
    args = parser.parse_args(argv)
    done = render(choose_sentences(args.count, args.test_count), args.out, args.workers,
                  ray_address=args.ray_address)
    print(f"{done} utterances in {args.out}")


if __name__ == "__main__":
    main()
