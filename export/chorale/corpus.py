"""Bach's chorales from music21's corpus as four voices on the 16th grid.

Steps: pick the S/A/T/B parts by name, strip ties, encode on the grid; drop files that are
not 4-voice chorales; group chorales that share a tune into families and keep one of each
set of near-identical harmonisations; split by family so test melodies are unseen.
Parsing all ~400 files takes ~40 s, so the result is cached as a pickle.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kantor.engine.chorale.encoding import (
    HOLD_PITCH,
    REST_PITCH,
    STEPS_PER_QUARTER,
    VOICES,
    VoiceVocabulary,
    build_metadata,
    transpose_key,
    transpose_raw,
)
from kantor.engine.chorale.keys import key_of_setting

log = logging.getLogger(__name__)

CACHE_VERSION = 5  # 5: metadata with mode, tonic and distances to fermata/end
DEFAULT_CACHE = Path(".cache/chorales")
SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class Chorale:
    """One harmonisation on the grid. ``raw`` is ``int16 [4, T]`` (see encoding)."""

    name: str
    raw: np.ndarray
    meta: np.ndarray  # int64 [T, 4]
    key_sharps: int
    family: str = ""
    split: str = ""


@dataclass
class ChoraleCorpus:
    """The parsed corpus with its splits and the per-voice vocabularies."""

    chorales: list[Chorale]
    vocabularies: list[VoiceVocabulary]
    dropped: dict[str, str] = field(default_factory=dict)  # file -> reason
    duplicates: dict[str, str] = field(default_factory=dict)  # dropped -> kept

    def split(self, name: str) -> list[Chorale]:
        return [c for c in self.chorales if c.split == name]


def _voice_of_part_name(name: str | None) -> int | None:
    """Voice index from a part name such as 'Soprano', 'Alto\\rViloin 2' or 'Bass Continuo'."""
    if not name:
        return None
    first = name.replace("\r", " ").split()[0].lower().rstrip(".")
    for v, voice in enumerate(VOICES):
        if first == voice:
            return v
    return None


def _encode_part(part, n_steps: int) -> tuple[np.ndarray, int]:
    """Raw pitches of one part; returns (raw [n_steps], notes lost to the grid)."""
    raw = np.full(n_steps, REST_PITCH, dtype=np.int16)
    lost = 0
    for element in part.stripTies().flatten().notesAndRests:
        start = round(float(element.offset) * STEPS_PER_QUARTER)
        end = round(float(element.offset + element.quarterLength) * STEPS_PER_QUARTER)
        end = min(end, n_steps)
        if end <= start:  # grace notes and anything shorter than half a 16th
            lost += int(not element.isRest)
            continue
        if element.isRest:
            raw[start:end] = REST_PITCH
            continue
        pitch = max(p.midi for p in element.pitches)  # a chord keeps its top note
        raw[start] = pitch
        raw[start + 1:end] = HOLD_PITCH
    return raw, lost


def _bar_grid(part) -> tuple[int, int]:
    """(steps of the first bar before step 0, steps per bar) from the part's measures."""
    measures = list(part.getElementsByClass("Measure"))
    if not measures:
        return 0, 4 * STEPS_PER_QUARTER
    first = measures[0]
    bar = float(first.barDuration.quarterLength)
    padding = float(first.paddingLeft or 0.0)
    return round(padding * STEPS_PER_QUARTER), round(bar * STEPS_PER_QUARTER)


def _fermata_steps(part, n_steps: int) -> np.ndarray:
    mask = np.zeros(n_steps, dtype=bool)
    for note in part.stripTies().flatten().notes:
        if any(type(e).__name__ == "Fermata" for e in note.expressions):
            start = round(float(note.offset) * STEPS_PER_QUARTER)
            end = round(float(note.offset + note.quarterLength) * STEPS_PER_QUARTER)
            mask[start:max(end, start + 1)] = True
    return mask


def parse_chorale(path: str) -> Chorale | str:
    """Parse one corpus file into a :class:`Chorale`, or return why it was dropped."""
    from music21 import corpus

    try:
        score = corpus.parse(path)
    except Exception as error:  # music21 raises many kinds on odd files
        return f"unreadable: {error}"
    by_voice: dict[int, object] = {}
    for part in score.parts:
        voice = _voice_of_part_name(part.partName)
        if voice is None:
            continue
        if voice in by_voice:
            return "more than one part for a voice (not a 4-voice chorale)"
        by_voice[voice] = part
    if sorted(by_voice) != [0, 1, 2, 3]:
        return "no soprano, alto, tenor and bass parts"
    n_steps = round(float(score.duration.quarterLength) * STEPS_PER_QUARTER)
    raws, lost = [], 0
    for v in range(4):
        raw, lost_here = _encode_part(by_voice[v], n_steps)
        raws.append(raw)
        lost += lost_here
    raw = np.stack(raws)
    if (raw[:, 0] == HOLD_PITCH).any():
        return "a voice starts with a hold"
    soprano = by_voice[0]
    signatures = list(soprano.recurse().getElementsByClass("KeySignature"))
    key_sharps = int(signatures[0].sharps) if signatures else 0
    bar_offset, steps_per_bar = _bar_grid(soprano)
    fermatas = _fermata_steps(soprano, n_steps)
    key = key_of_setting(raw)
    meta = build_metadata(n_steps, bar_offset, steps_per_bar, fermatas, key_sharps,
                          mode=int(key.minor), tonic_degree=key.degree_of(key_sharps))
    if lost:
        log.debug("%s: %d notes shorter than the grid dropped", path, lost)
    return Chorale(name=Path(path).stem, raw=raw, meta=meta, key_sharps=key_sharps)


def corpus_paths() -> list[str]:
    """Every Bach file in music21's corpus that can hold a chorale (MusicXML)."""
    from music21 import corpus

    return sorted(str(p) for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".xml"))


def _melody_intervals(chorale: Chorale, length: int = 24) -> tuple[int, ...]:
    """The soprano's first ``length`` melodic intervals, ignoring repeated notes."""
    pitches = [int(p) for p in chorale.raw[0] if p >= 0]
    deduped = [p for i, p in enumerate(pitches) if i == 0 or p != pitches[i - 1]]
    return tuple(np.diff(deduped[: length + 1]).tolist())


def _edit_distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def same_tune(a: Chorale, b: Chorale, tolerance: float = 0.3) -> bool:
    """Two chorales share a melody if their openings' interval sequences nearly agree
    (Bach's settings of one hymn tune vary in passing notes and ornaments)."""
    ia, ib = _melody_intervals(a), _melody_intervals(b)
    if not ia or not ib:
        return False
    return _edit_distance(ia, ib) <= tolerance * max(len(ia), len(ib))


def _quarter_sonorities(chorale: Chorale) -> list[tuple[int, ...]]:
    """The four sounding pitches on every quarter beat, relative to the first soprano
    note, so two settings in different keys compare equal."""
    from kantor.engine.chorale.encoding import sounding_pitches

    sounding = sounding_pitches(chorale.raw)[:, ::STEPS_PER_QUARTER]
    pitched = chorale.raw[0][chorale.raw[0] >= 0]
    reference = int(pitched[0]) if pitched.size else 0
    return [tuple(int(p) - reference if p >= 0 else -1000 for p in column)
            for column in sounding.T]


def near_identical(a: Chorale, b: Chorale, threshold: float = 0.85) -> bool:
    """Two harmonisations are duplicates if the shorter one's quarter-beat sonorities
    (all four voices) reappear, in order, in the longer one for at least ``threshold``
    of its beats. Catches re-used settings and the vocal core of instrumental versions."""
    sa, sb = _quarter_sonorities(a), _quarter_sonorities(b)
    if not sa or not sb:
        return False
    matcher = SequenceMatcher(None, sa, sb, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched / min(len(sa), len(sb)) >= threshold


def group_families(chorales: list[Chorale]) -> list[list[int]]:
    """Indices of chorales grouped by tune (union-find over :func:`same_tune`)."""
    parent = list(range(len(chorales)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(chorales)):
        for j in range(i + 1, len(chorales)):
            if same_tune(chorales[i], chorales[j]):
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(chorales)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def split_of_family(family: str, test_share: int = 10, valid_share: int = 10) -> str:
    """Deterministic split from a hash of the family's name (percent shares)."""
    bucket = int(hashlib.sha256(family.encode()).hexdigest(), 16) % 100
    if bucket < test_share:
        return "test"
    if bucket < test_share + valid_share:
        return "valid"
    return "train"


def vocabularies_for(chorales: list[Chorale]) -> list[VoiceVocabulary]:
    """Each voice's range over the whole corpus (so no held-out note is unknown)."""
    vocabs = []
    for v, voice in enumerate(VOICES):
        pitches = np.concatenate([c.raw[v][c.raw[v] >= 0] for c in chorales])
        vocabs.append(VoiceVocabulary(voice, int(pitches.min()), int(pitches.max())))
    return vocabs


def build_corpus(paths: list[str], processes: int = 2) -> ChoraleCorpus:
    """Parse, filter, deduplicate, group into families and split."""
    parsed: list[Chorale] = []
    dropped: dict[str, str] = {}
    with Pool(processes) as pool:
        results = pool.imap(parse_chorale, paths, chunksize=4)
        for path, result in tqdm(zip(paths, results, strict=True), total=len(paths),
                                 desc="parsing chorales", unit="file"):
            if isinstance(result, str):
                dropped[Path(path).name] = result
            else:
                parsed.append(result)
    families = group_families(parsed)
    kept: list[Chorale] = []
    duplicates: dict[str, str] = {}
    for members in families:
        family = min(parsed[i].name for i in members)
        # Of two duplicates keep the shorter: the plain vocal setting rather than the
        # version with instrumental interludes.
        members = sorted(members, key=lambda i: (parsed[i].raw.shape[1], parsed[i].name))
        unique: list[Chorale] = []
        for i in members:
            candidate = parsed[i]
            twin = next((u for u in unique if near_identical(u, candidate)), None)
            if twin is not None:
                duplicates[candidate.name] = twin.name
                continue
            candidate.family = family
            candidate.split = split_of_family(family)
            unique.append(candidate)
        kept.extend(unique)
    kept.sort(key=lambda c: c.name)
    return ChoraleCorpus(kept, vocabularies_for(kept), dropped, duplicates)


def load_corpus(cache_dir: Path = DEFAULT_CACHE, limit: int | None = None,
                processes: int = 2) -> ChoraleCorpus:
    """The cached corpus, parsed on first use. ``limit`` parses only the first N files
    (for quick tests); limited corpora are cached under their own name."""
    paths = corpus_paths()
    if limit is not None:
        paths = paths[:limit]
    from music21 import VERSION_STR

    tag = f"v{CACHE_VERSION}-m21_{VERSION_STR}-n{len(paths)}"
    cache = Path(cache_dir) / f"corpus-{tag}.pkl"
    if cache.exists():
        with cache.open("rb") as f:
            return pickle.load(f)
    corpus = build_corpus(paths, processes=processes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(corpus, f)
    tmp.replace(cache)
    return corpus


def transpositions(chorale: Chorale, vocabularies: list[VoiceVocabulary],
                   max_shift: int = 6) -> list[int]:
    """Semitone shifts that keep every voice inside its vocabulary's range."""
    shifts = []
    for k in range(-max_shift, max_shift + 1):
        ok = True
        for v, vocab in enumerate(vocabularies):
            pitched = chorale.raw[v][chorale.raw[v] >= 0]
            if pitched.size and (pitched.min() + k < vocab.low or pitched.max() + k > vocab.high):
                ok = False
                break
        if ok:
            shifts.append(k)
    return shifts


def transposed(chorale: Chorale, semitones: int) -> Chorale:
    """A copy moved by ``semitones`` with its key metadata updated."""
    meta = chorale.meta.copy()
    meta[:, 3] = transpose_key(int(meta[0, 3]), semitones)
    return Chorale(chorale.name, transpose_raw(chorale.raw, semitones), meta,
                   chorale.key_sharps, chorale.family, chorale.split)
