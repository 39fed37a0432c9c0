"""English sentences for the speech corpus, from Debian packages that ship prose.

Sources: ``fortunes`` (/usr/share/games/fortunes) and the example sentences of WordNet
(``wordnet-base``, /usr/share/wordnet/data.*). Kept: clean 5-20-word sentences of plain
ASCII letters and ordinary punctuation. The held-out test list is fixed by a hash of each
sentence, so it never depends on which sources happen to be installed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")

MIN_WORDS, MAX_WORDS = 5, 20
TEST_SHARE = 50  # one sentence in 50 (by hash) is held out

_CLEAN = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'?!.$%-]*[.?!]$")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
_BAD = re.compile(r"(\.\.|--|''|\s'|'\s|[A-Z]{4,}|\b(?:Mr|Mrs|Dr|St|Jr|vs|etc)\.\s)")


def clean_sentence(text: str) -> str | None:
    """Return ``text`` as one tidy sentence, or None when it is not a clean 5-20-word one."""
    text = " ".join(text.split())
    if not _CLEAN.match(text) or _BAD.search(text):
        return None
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    return text


def _fortune_paragraphs(folder: Path) -> Iterator[str]:
    for path in sorted(folder.iterdir()):
        # fortune databases are the files without an extension (the .dat/.u8 are indices)
        if path.suffix or not path.is_file() or path.name.startswith("off"):
            continue
        text = path.read_text(encoding="latin-1")
        for entry in text.split("\n%\n"):
            lines = [line for line in entry.splitlines() if not line.strip().startswith("--")]
            yield " ".join(lines)


def _wordnet_examples(folder: Path) -> Iterator[str]:
    for path in sorted(folder.glob("data.*")):
        for line in path.read_text(encoding="latin-1").splitlines():
            for example in re.findall(r'"([^"]+)"', line):
                example = example.strip()
                if example:
                    example = example[0].upper() + example[1:]
                    if example[-1] not in ".?!":
                        example += "."
                    yield example


def harvest(fortunes: Path = FORTUNES, wordnet: Path = WORDNET) -> list[str]:
    """All clean sentences from the installed sources, deduplicated, in a stable order."""
    found: dict[str, None] = {}

    def add(texts: Iterable[str]) -> None:
        for text in texts:
            for piece in _SENTENCE_END.split(" ".join(text.split())):
                sentence = clean_sentence(piece)
                if sentence is not None:
                    found.setdefault(sentence, None)

    if fortunes.is_dir():
        add(_fortune_paragraphs(fortunes))
    if wordnet.is_dir():
        add(_wordnet_examples(wordnet))
    return sorted(found, key=sentence_id)


def sentence_id(text: str) -> str:
    """A stable 12-hex-digit id of a sentence (its file name in the corpus)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def is_test(text: str) -> bool:
    """True for the held-out sentences (fixed by hash, about 2%)."""
    return int(sentence_id(text), 16) % TEST_SHARE == 0
