"""Run the voice's prosody and acoustic models (ONNX Runtime, one thread).

``VoiceModels.prosody`` maps phones to durations and F0 points; ``acoustic_window``
computes the mel-cepstrum and band aperiodicity of a range of frames only, with enough
frames of context on each side that the result equals the whole-utterance result: this
is what lets the voice stream the first 40 ms of audio before the rest is computed. The
acoustic model comes as two graphs: a phone encoder run once per sentence and a frame
decoder run per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kantor.engine.models import ASSETS, ModelError, OnnxModel, load_model
from kantor.engine.speech.features import MCEP_SIZE, Frames
from kantor.engine.speech.prosody import frame_inputs, frame_phones

PROSODY_NAME = "voice-prosody"
ACOUSTIC_NAME = "voice-acoustic"
ACOUSTIC_ENCODER_NAME = "voice-acoustic-encoder"
VOCODER_NAME = "voice-vocoder"  # engine/speech/neural_vocoder.py runs it


@dataclass
class Prosody:
    """Per phone: ``frames`` float durations, ``log_f0`` and ``voiced`` at the points."""

    frames: np.ndarray
    log_f0: np.ndarray
    voiced: np.ndarray


def run_prosody(model: OnnxModel, ids: np.ndarray, feats: np.ndarray) -> Prosody:
    """Run a prosody model on one utterance's phone ids (N,) and features (N, F)."""
    frames, log_f0, voiced = model.run({"phone_ids": ids[None], "phone_feats": feats[None]})
    return Prosody(frames[0], log_f0[0], voiced[0])


class VoiceModels:
    """The two ONNX models of a voice, verified against their cards at load."""

    def __init__(self, prosody: OnnxModel, encoder: OnnxModel, acoustic: OnnxModel,
                 vocoder: OnnxModel | None = None, vocoder_error: str | None = None) -> None:
        self.prosody_model = prosody
        self.encoder_model = encoder
        self.acoustic_model = acoustic
        # the neural vocoder's network, shared by every voice (None: the WORLD-style one)
        self.vocoder_model = vocoder
        self.vocoder_error = vocoder_error
        config = acoustic.card.get("config", {})
        try:
            # frames each side that influence a frame: 2 convolutions per block
            self.context = int(config["frame_blocks"]) * 2 * (int(config["frame_kernel"]) // 2)
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{acoustic.path}: card lacks the frame network's shape") from None

    @classmethod
    def load(cls, folder: Path | None = None, threads: int = 1,
             vocoder: bool = True) -> VoiceModels:
        """The models in ``folder`` (default: the shipped ones). The neural vocoder's
        network is optional: the voice falls back to the WORLD-style vocoder when it is
        absent (``vocoder_error`` None) or does not load (``vocoder_error`` says why)."""
        folder = Path(folder) if folder is not None else ASSETS
        network, error = None, None
        path = folder / f"{VOCODER_NAME}.onnx"
        if vocoder and path.exists():  # absent: a voice without one (error stays None)
            try:
                network = load_model(path, threads)
            except ModelError as failure:
                error = str(failure)
        return cls(load_model(folder / f"{PROSODY_NAME}.onnx", threads),
                   load_model(folder / f"{ACOUSTIC_ENCODER_NAME}.onnx", threads),
                   load_model(folder / f"{ACOUSTIC_NAME}.onnx", threads), network, error)

    def prosody(self, ids: np.ndarray, feats: np.ndarray) -> Prosody:
        """Phone ids (N,) and features (N, F) of one utterance -> its prosody."""
        return run_prosody(self.prosody_model, ids, feats)

    def encode(self, ids: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """Phone encodings (N, C) of one sentence for ``acoustic_window``."""
        return self.encoder_model.run({"phone_ids": ids[None], "phone_feats": feats[None]})[0][0]

    def acoustic_window(self, encodings: np.ndarray, durations: np.ndarray, f0: np.ndarray,
                        start: int, stop: int) -> Frames:
        """Frames ``[start, stop)`` of a sentence given its phone ``encodings`` (from
        ``encode``), phone ``durations`` (frames) and per-frame ``f0`` (Hz)."""
        total = int(durations.sum())
        lo, hi = max(0, start - self.context), min(total, stop + self.context)
        phones = frame_phones(durations)[lo:hi]
        inputs = frame_inputs(durations, f0)[lo:hi]
        out = self.acoustic_model.run({"phone_encodings": encodings[phones][None],
                                       "frame_feats": inputs[None]})[0][0]
        out = out[start - lo : stop - lo]
        return Frames(f0[start:stop].astype(np.float32),
                      np.ascontiguousarray(out[:, :MCEP_SIZE]),
                      np.ascontiguousarray(out[:, MCEP_SIZE:]))
