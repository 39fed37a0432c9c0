"""Speech quality metrics for the TTS benchmark: word error rate of an ASR, and DNSMOS.

* :func:`normalise_words` / :func:`word_errors`: lower-case words without punctuation
  (apostrophes inside words kept, numbers left as the text writes them) and a plain
  Levenshtein distance over words; WER = summed errors / summed reference words.
* :class:`Recogniser`: pocketsphinx with its bundled en-US model (default config), fed
  16 kHz 16-bit mono.
* :class:`Dnsmos`: Microsoft's DNSMOS P.835 model as packaged by ``speechmos``, on one
  ONNX Runtime thread. ``speechmos.dnsmos.run`` imports librosa only for the P.808 score
  (a mel spectrogram); SIG/BAK/OVRL come from the raw waveform alone, so this class runs
  speechmos's own ``sig_bak_ovr.onnx`` with speechmos's segmenting and polynomial mapping
  and needs no librosa.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from kantor.export.speech.g2p import edit_distance

ASR_RATE = 16000  # Hz: what pocketsphinx's en-US model and DNSMOS expect

_PUNCTUATION = re.compile(r"[^a-z0-9' ]+")


class MetricError(ValueError):
    """Audio a metric cannot score (empty, not mono, not finite)."""


def normalise_words(text: str) -> list[str]:
    """Lower-case words with punctuation stripped; hyphens split words; ``can't`` stays."""
    text = _PUNCTUATION.sub(" ", text.lower().replace("-", " ").replace(",", ""))
    return [word.strip("'") for word in text.split() if word.strip("'")]


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``reference`` into ``hypothesis``."""
    return edit_distance(reference, hypothesis)


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over many sentences: summed edit distances / summed reference words."""
    if len(references) != len(hypotheses) or not references:
        raise MetricError("need as many hypotheses as references, at least one")
    refs = [normalise_words(r) for r in references]
    errors = sum(word_errors(r, normalise_words(h)) for r, h in zip(refs, hypotheses, strict=True))
    return errors / max(1, sum(len(r) for r in refs))


def to_asr_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` (float mono at ``rate`` Hz) resampled to 16 kHz float32 in [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise MetricError(f"expected non-empty mono audio, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise MetricError("audio has NaN or infinite samples")
    if rate != ASR_RATE:
        audio = soxr.resample(audio, rate, ASR_RATE).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


class Recogniser:
    """pocketsphinx's default en-US recogniser (acoustic model + 3-gram LM + CMUdict)."""

    def __init__(self) -> None:
        import pocketsphinx

        self._decoder = pocketsphinx.Decoder(loglevel="FATAL")

    def transcribe(self, audio: np.ndarray, rate: int) -> str:
        """The recognised words of one utterance (float mono at ``rate`` Hz)."""
        pcm = (to_asr_rate(audio, rate) * 32767.0).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


@dataclass(frozen=True)
class MosScores:
    """DNSMOS P.835 scores on the 1-5 MOS scale: speech, background, overall."""

    sig: float
    bak: float
    ovrl: float


class Dnsmos:
    """DNSMOS P.835 (non-personalised) from speechmos's ONNX model, one thread."""

    _CLIP_S = 9.01  # the model's input: 9.01 s at 16 kHz, scored in 1 s hops
    # speechmos's (and Microsoft's dnsmos_local.py) raw-to-MOS polynomials
    _SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
    _BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
    _OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])

    def __init__(self) -> None:
        import onnxruntime as ort
        import speechmos

        model = Path(speechmos.__file__).parent / "dnsmos_models" / "sig_bak_ovr.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), options,
                                             providers=["CPUExecutionProvider"])

    def score(self, audio: np.ndarray, rate: int) -> MosScores:
        """Mean SIG/BAK/OVRL over the 9 s windows of one utterance (float mono, ``rate`` Hz)."""
        audio = to_asr_rate(audio, rate)
        clip = int(self._CLIP_S * ASR_RATE)
        while len(audio) < clip:  # as speechmos does: a short utterance is looped
            audio = np.concatenate([audio, audio])
        hops = int(np.floor(len(audio) / ASR_RATE) - self._CLIP_S) + 1
        windows = [audio[k * ASR_RATE:k * ASR_RATE + clip] for k in range(hops)]
        windows = np.stack([w for w in windows if len(w) == clip])
        raw = self._session.run(None, {"input_1": windows})[0]
        return MosScores(float(np.mean(self._SIG(raw[:, 0]))), float(np.mean(self._BAK(raw[:, 1]))),
                         float(np.mean(self._OVRL(raw[:, 2]))))
