"""The chorale networks' contract: what they are shown, and how their answers are read.

One definition each, used by training (export/chorale), evaluation, the offline sampler
(gibbs.py) and the live processor (live.py):

* :func:`live_hidden` / :func:`live_inputs`: what a live voice network may see when it
  decides a step (the past of every voice, the soprano up to the lookahead, the lower
  voices already decided at this step; everything else is MASK);
* :func:`log_softmax`, :func:`gumbel_noise` and :func:`sample`: log-probabilities from
  logits and draws from them (Gumbel-max);
* :func:`allowed_tokens`: the tokens a voice may be given (rest, hold, pitches in range).

Token <-> pitch arithmetic lives on :class:`~kantor.engine.chorale.encoding.VoiceVocabulary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kantor.engine.chorale.encoding import END, HOLD, LIVE_DECISION_ORDER, MASK, REST, START


def live_hidden(window: int, past: int, decided: Sequence[int], ahead: int) -> np.ndarray:
    """Which grid cells ``bool [4, window]`` a live network may not see when it decides
    column ``past`` (the step now): the lower voices at and after it, except the voices in
    ``decided`` at the step itself, and the soprano more than ``ahead`` steps after it."""
    hidden = np.zeros((4, window), dtype=bool)
    hidden[1:, past:] = True
    for voice in decided:
        hidden[voice, past] = False
    hidden[0, past + ahead + 1:] = True
    return hidden


def live_hidden_by_decision(window: int, past: int, ahead: int) -> list[np.ndarray]:
    """:func:`live_hidden` for each voice in LIVE_DECISION_ORDER, the voices before it
    decided."""
    return [live_hidden(window, past, LIVE_DECISION_ORDER[:index], ahead)
            for index in range(len(LIVE_DECISION_ORDER))]


def live_inputs(rows: np.ndarray, hidden: np.ndarray, out: np.ndarray | None = None
                ) -> np.ndarray:
    """``rows`` (tokens ``[n, 4, window]``) as a live network sees them: MASK where
    ``hidden`` (``[4, window]``, from :func:`live_hidden`) says. Written into ``out`` when
    given (no allocation)."""
    if out is None:
        out = rows.copy()
    else:
        out[:] = rows
    out[:, hidden] = MASK
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in the dtype of ``logits`` (pass float64 for
    the live decisions, which compare them with rule charges)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def gumbel_noise(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Standard Gumbel noise: ``argmax(scores / T + noise)`` draws from softmax(scores / T)."""
    return -np.log(-np.log(rng.random(shape) + 1e-12) + 1e-12)


def sample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from softmax(scores) (Gumbel-max; -inf scores are never drawn)."""
    return np.argmax(scores + gumbel_noise(rng, scores.shape), axis=-1)


def allowed_tokens(token_pitches: np.ndarray, low: int, high: int) -> np.ndarray:
    """Tokens ``bool [size]`` a voice may be given: rest, hold and pitches in
    ``low``..``high`` (MIDI, inclusive); never START, END or MASK. ``token_pitches`` is
    :meth:`VoiceVocabulary.token_pitches`."""
    ok = (token_pitches >= low) & (token_pitches <= high)
    ok[[REST, HOLD]] = True
    ok[[START, END, MASK]] = False
    return ok
