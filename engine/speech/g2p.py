"""Neural grapheme-to-phoneme conversion (Deep Voice component 2) on ONNX Runtime.

A word's letters go through an encoder graph once, which also projects them to every
decoder layer's cross-attention keys and values; a decoder-step graph then turns those and
the newest phone into scores for the next phone, reading the keys and values of the
earlier phones from a cache it returns grown by one phone (so a step costs one phone's
work, not the whole prefix's). Decoding is a beam search (``beam`` hypotheses per word,
all words' hypotheses in one decoder call per step; the finished hypothesis with the best
length-normalised log-probability wins), or greedy (the argmax each step) with
``beam=1``. Words leave the batch as soon as they are decoded.

Phones are ARPAbet with stress digits on vowels, as in the CMU dictionary
(``"canter"`` -> ``["K", "AE1", "N", "T", "ER0"]``).

    g2p = G2P.load()                 # engine/assets/g2p-encoder.onnx + g2p-decoder.onnx
    g2p.predict("Kantor")            # ['K', 'AE1', 'N', 'T', 'ER0'] or close to it
    g2p.predict_batch(["a", "b"])    # one list per word, in order
    G2P.load(beam=1)                 # greedy: a little faster, a little less accurate
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.engine.models import ASSETS, ModelError, OnnxModel, load_model
from kantor.engine.speech.phones import ARPABET, VOWELS

# Input alphabet: index 0 is padding, letters start at 1.
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
LETTER_INDEX = {c: i + 1 for i, c in enumerate(LETTERS)}
# Output symbols: padding, start and end tokens, then every phone the dictionary uses
# (vowels with stress 0/1/2, consonants bare).
PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")
PHONE_SYMBOLS = tuple(
    s for p in ARPABET for s in ([f"{p}{d}" for d in "012"] if p in VOWELS else [p]))
SYMBOLS = (*SPECIALS, *PHONE_SYMBOLS)
SYMBOL_INDEX = {s: i for i, s in enumerate(SYMBOLS)}
# Longest word (in letters) the model reads, and longest pronunciation it writes; longer
# words are cut so decoding stays bounded. CMUdict's longest word has 28 letters.
MAX_LETTERS = 30
MAX_PHONES = 32
NAME = "g2p"
# The graphs' interface (see export/speech/g2p.py, _Graphs): the encoder returns
# memory_keys_L and memory_values_L for each decoder layer L = 0, 1, ...; the decoder takes
# those, past_keys_L and past_values_L, and returns logits and present_keys_L, ...
DECODER_INPUTS = ("phones", "position", "letters")
# Default decoding, chosen on the valid split (see the model card's "decoding").
DEFAULT_BEAM = 3
# Hypotheses are ranked by log-probability / (symbols incl. the end token) ** this.
DEFAULT_LENGTH_PENALTY = 1.0

_NOT_A_LETTER = re.compile(f"[^{re.escape(LETTERS)}]")


def _cache_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("keys", "values")]


def clean_word(word: str) -> str:
    """Lower-case ``word`` and keep only a-z and apostrophes, at most ``MAX_LETTERS``."""
    return _NOT_A_LETTER.sub("", word.lower())[:MAX_LETTERS]


def letter_ids(word: str) -> list[int]:
    """Letter indices (1-based) of the cleaned word."""
    return [LETTER_INDEX[c] for c in clean_word(word)]


def model_paths(folder: Path, name: str = NAME) -> tuple[Path, Path]:
    """The encoder and decoder-step ONNX files of model ``name`` in ``folder``."""
    return folder / f"{name}-encoder.onnx", folder / f"{name}-decoder.onnx"


@dataclass
class G2P:
    """Letters-to-phones model: an encoder session and a decoder-step session."""

    encoder: OnnxModel
    decoder: OnnxModel
    beam: int = DEFAULT_BEAM
    length_penalty: float = DEFAULT_LENGTH_PENALTY

    def __post_init__(self) -> None:
        if not isinstance(self.beam, int) or not 1 <= self.beam <= len(PHONE_SYMBOLS):
            raise ValueError(f"beam must be an integer in 1..{len(PHONE_SYMBOLS)}, "
                             f"not {self.beam!r}")
        inputs = {i.name: i.shape for i in self.decoder.session.get_inputs()}
        layers = sum(name.startswith("past_keys_") for name in inputs)
        self._memory_names = _cache_names(layers, "memory")
        self._past_names = _cache_names(layers, "past")
        outputs = [o.name for o in self.encoder.session.get_outputs()]
        if (layers == 0 or outputs != self._memory_names
                or set(inputs) != {*DECODER_INPUTS, *self._memory_names, *self._past_names}):
            raise ModelError(f"{self.decoder.path.name} is not a cached decoder step (inputs "
                             f"{sorted(inputs)}); re-export it with this version of Kantor")
        # each cache is [words, beams, heads, phones so far, head width]
        shape = inputs["past_keys_0"]
        self._cache_tail = (int(shape[2]), 0, int(shape[4]))

    @classmethod
    def load(cls, path: Path | None = None, name: str = NAME, threads: int = 1,
             beam: int = DEFAULT_BEAM,
             length_penalty: float = DEFAULT_LENGTH_PENALTY) -> G2P:
        """Load ``NAME-encoder.onnx`` and ``NAME-decoder.onnx`` (and cards) from folder
        ``path`` (default: the engine's assets); decode with ``beam`` hypotheses per word
        (1 = greedy). ModelError if missing, corrupt or built for another symbol set;
        ValueError for a beam outside 1..len(PHONE_SYMBOLS)."""
        folder = Path(path) if path is not None else ASSETS
        encoder_path, decoder_path = model_paths(folder, name)
        encoder = load_model(encoder_path, threads=threads)
        decoder = load_model(decoder_path, threads=threads)
        for model in (encoder, decoder):
            card = model.card
            if (tuple(card.get("symbols", ())) != SYMBOLS
                    or card.get("letters") != LETTERS):
                raise ModelError(f"{model.path.name} was built for another letter or phone "
                                 "set than this engine's; re-export it")
            if card.get("companion_sha256") is None:
                raise ModelError(f"{model.path.name}'s card does not name its companion graph")
        if (encoder.card["companion_sha256"] != decoder.card["sha256"]
                or decoder.card["companion_sha256"] != encoder.card["sha256"]):
            raise ModelError(f"{encoder_path.name} and {decoder_path.name} come from different "
                             "exports; re-export both")
        return cls(encoder, decoder, beam, length_penalty)

    @property
    def card(self) -> dict:
        """The model card (architecture, training record, held-out PER/WER)."""
        return self.decoder.card

    def predict(self, word: str) -> list[str]:
        """ARPAbet phones with stress digits for one word; [] if it has no letters."""
        return self.predict_batch([word])[0]

    __call__ = predict  # a G2P is itself a word -> phones fallback (speech.lexicon)

    def predict_batch(self, words: Sequence[str]) -> list[list[str]]:
        """Phones for each word, in order. Case is ignored; characters other than a-z and
        apostrophes are dropped; words are cut to ``MAX_LETTERS`` letters."""
        encoded = [letter_ids(w) for w in words]
        results: list[list[str]] = [[] for _ in words]
        todo = [i for i, ids in enumerate(encoded) if ids]
        if not todo:
            return results
        width = max(len(encoded[i]) for i in todo)
        letters = np.zeros((len(todo), width), dtype=np.int64)
        for row, i in enumerate(todo):
            letters[row, :len(encoded[i])] = encoded[i]
        for row, ids in enumerate(self.decode(letters)):
            results[todo[row]] = [SYMBOLS[k] for k in ids]
        return results

    def decode(self, letters: np.ndarray) -> list[list[int]]:
        """Decoding of a batch of letter-index rows (int64 [batch, letters], 0 = padding,
        no empty rows) with this model's beam; symbol indices per row without start/end
        tokens."""
        if self.beam == 1:
            return self.decode_greedy(letters)
        return self.decode_beam(letters, self.beam, self.length_penalty)

    def _empty_cache(self, words: int) -> list[np.ndarray]:
        """The decoder's key/value caches before the first phone (one hypothesis per
        word): for each layer, keys and values float32 [words, 1, heads, 0, width]."""
        empty = np.zeros((words, 1, *self._cache_tail), dtype=np.float32)
        return [empty] * len(self._past_names)

    def _step(self, phones: np.ndarray, position: int, letters: np.ndarray,
              memory: list[np.ndarray], cache: list[np.ndarray]
              ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One decoder step: log-probabilities float64 [words, beams, symbols] of the
        symbol after ``phones`` (int64 [words, beams], each hypothesis's newest symbol, at
        index ``position`` of its sequence), and the caches grown by that symbol. Padding
        and the start token are never allowed next."""
        logits, *cache = self.decoder.run({
            "phones": phones, "position": np.array(position, dtype=np.int64),
            "letters": letters, **dict(zip(self._memory_names, memory, strict=True)),
            **dict(zip(self._past_names, cache, strict=True))})
        logits = logits.astype(np.float64)
        logits[..., PAD] = -np.inf
        logits[..., BOS] = -np.inf
        top = logits.max(axis=-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
        return logp, cache

    def decode_beam(self, letters: np.ndarray, beam: int,
                    length_penalty: float = DEFAULT_LENGTH_PENALTY) -> list[list[int]]:
        """Beam search over a batch of letter rows (see :meth:`decode`). Each step runs the
        decoder once on the ``beam`` hypotheses of every word not yet finished (one at the
        first step, when they would all be the same); a finished hypothesis stays in its
        beam (extended by padding at no cost) until all ``beam`` hypotheses of its word
        have ended, and a word whose hypotheses have all ended leaves the batch; the winner
        is the finished one with the highest log-probability / (symbols incl. the end
        token) ** ``length_penalty``."""
        memory = self.encoder.run({"letters": letters})
        batch, k, vocab = letters.shape[0], beam, len(SYMBOLS)
        # The state of the words still being decoded (rows in ``live`` order); a word's
        # rows are copied to ``out`` when all its hypotheses have ended and it leaves.
        # Each hypothesis's symbols: start token, phones, end token, then padding.
        phones = np.full((batch, k, MAX_PHONES + 2), PAD, dtype=np.int64)
        phones[:, :, 0] = BOS
        scores = np.full((batch, k), -np.inf)
        scores[:, 0] = 0.0  # one live hypothesis at the start, not k copies of it
        finished = np.zeros((batch, k), dtype=bool)
        lengths = np.zeros((batch, k), dtype=np.int64)
        live = np.arange(batch)
        cache = self._empty_cache(batch)
        out: list[list[int]] = [[] for _ in range(batch)]
        for step in range(MAX_PHONES + 1):
            ended = finished.all(axis=1)
            if ended.any():
                self._keep_best(out, live[ended], phones[ended], scores[ended],
                                lengths[ended], finished[ended], length_penalty)
                if ended.all():
                    break
                still = ~ended
                live, letters, phones = live[still], letters[still], phones[still]
                scores, finished, lengths = scores[still], finished[still], lengths[still]
                memory = [m[still] for m in memory]
                cache = [c[still] for c in cache]
            n = live.size
            width = cache[0].shape[1]  # hypotheses in the cache: 1 at the first step
            logp, cache = self._step(phones[:, :width, step], step, letters, memory, cache)
            if width < k:
                logp = np.concatenate([logp, np.full((n, k - width, vocab), -np.inf)],
                                      axis=1)
            if step == MAX_PHONES:  # runaway hypotheses: end them here
                end = logp[..., EOS].copy()
                logp[:] = -np.inf
                logp[..., EOS] = end
            if finished.any():  # a finished hypothesis carries on as itself, padded
                logp[finished] = -np.inf
                logp[finished, PAD] = 0.0
            candidates = (scores[:, :, None] + logp).reshape(n, k * vocab)
            best = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
            source, symbol = best // vocab, best % vocab
            word = np.arange(n)[:, None]
            was_done = finished[word, source]
            scores = candidates[word, best]
            lengths = lengths[word, source] + ~was_done
            finished = was_done | (symbol == EOS)
            phones = phones[word, source]
            phones[:, :, step + 1] = symbol
            # each hypothesis continues its source's cache: one flat row gather per cache
            rows = (word * width + np.minimum(source, width - 1)).ravel()
            cache = [c.reshape(n * width, *c.shape[2:])[rows].reshape(n, k, *c.shape[2:])
                     for c in cache]
        else:
            self._keep_best(out, live, phones, scores, lengths, finished, length_penalty)
        return out

    @staticmethod
    def _keep_best(out: list[list[int]], words: np.ndarray, phones: np.ndarray,
                   scores: np.ndarray, lengths: np.ndarray, finished: np.ndarray,
                   length_penalty: float) -> None:
        """Store in ``out[word]`` the symbols of each word's winning hypothesis: the
        finished one with the best log-probability / length ** ``length_penalty``."""
        ranked = np.where(finished, scores / np.maximum(lengths, 1) ** length_penalty,
                          -np.inf)
        for word, row, choice in zip(words, phones, ranked.argmax(axis=1), strict=True):
            symbols = row[choice, 1:]
            ends = np.flatnonzero(symbols == EOS)
            out[word] = [int(x) for x in symbols[:ends[0] if ends.size else symbols.size]]

    def decode_greedy(self, letters: np.ndarray) -> list[list[int]]:
        """Greedy decoding (the argmax each step) of a batch of letter rows (see
        :meth:`decode`); words leave the batch as they end."""
        memory = self.encoder.run({"letters": letters})
        batch = letters.shape[0]
        out: list[list[int]] = [[] for _ in range(batch)]
        live = np.arange(batch)
        newest = np.full((batch, 1), BOS, dtype=np.int64)
        cache = self._empty_cache(batch)
        for step in range(MAX_PHONES + 1):
            logp, cache = self._step(newest, step, letters, memory, cache)
            symbol = logp[:, 0].argmax(axis=1)
            if step == MAX_PHONES:  # a runaway word: end it here
                symbol[:] = EOS
            going = symbol != EOS
            for word, phone in zip(live[going], symbol[going], strict=True):
                out[word].append(int(phone))
            if not going.any():
                break
            if not going.all():
                live, letters = live[going], letters[going]
                memory = [m[going] for m in memory]
                cache = [c[going] for c in cache]
            newest = symbol[going, None]
        return out
