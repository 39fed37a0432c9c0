"""Score the voice models (as shipped, through ONNX Runtime) on held-out sentences
against the teacher (Festival's segments and the analysed audio).

- duration MAE in ms per phone (all phones, and without the utterance-edge pauses);
- F0 RMSE in Hz over frames voiced in both, and the voicing error rate (share of frames
  whose voiced/unvoiced decision differs), predicted F0 laid on the teacher's durations;
- mel-cepstral distortion (dB, c1..c39) of the acoustic model given the teacher's
  durations and F0, and given the teacher's durations with the predicted F0.
"""

from __future__ import annotations

import numpy as np

from kantor.engine.models import OnnxModel
from kantor.engine.speech.acoustic import VoiceModels, run_prosody
from kantor.engine.speech.features import FRAME_SECONDS, mel_cepstral_distortion
from kantor.engine.speech.prosody import f0_track
from kantor.export.speech.dataset import Example


def evaluate_prosody(model: OnnxModel, examples: list[Example]) -> dict:
    """Duration and F0 metrics of a prosody model on ``examples``."""
    errors, inner, f0_sq, voicing_wrong, frames = [], [], [], 0, 0
    for e in examples:
        p = run_prosody(model, e.ids, e.feats)
        diff = np.abs(p.frames - e.durations) * FRAME_SECONDS * 1000
        errors.append(diff)
        inner.append(diff[1:-1])
        predicted = f0_track(e.durations, p.log_f0, p.voiced)
        teacher = e.frames.f0
        both = (predicted > 0) & (teacher > 0)
        f0_sq.append((predicted[both] - teacher[both]) ** 2)
        voicing_wrong += int(np.sum((predicted > 0) != (teacher > 0)))
        frames += len(teacher)
    return {"sentences": len(examples),
            "duration_mae_ms": float(np.concatenate(errors).mean()),
            "duration_mae_ms_without_edge_pauses": float(np.concatenate(inner).mean()),
            "f0_rmse_hz": float(np.sqrt(np.concatenate(f0_sq).mean())),
            "voicing_error": voicing_wrong / frames}


def evaluate_acoustic(models: VoiceModels, examples: list[Example]) -> dict:
    """Mel-cepstral distortion of the acoustic model on ``examples``."""
    teacher_f0, predicted_f0 = [], []
    for e in examples:
        total = int(e.durations.sum())
        encodings = models.encode(e.ids, e.feats)
        out = models.acoustic_window(encodings, e.durations, e.frames.f0, 0, total)
        teacher_f0.append(mel_cepstral_distortion(e.frames.mcep, out.mcep))
        p = models.prosody(e.ids, e.feats)
        f0 = f0_track(e.durations, p.log_f0, p.voiced)
        out = models.acoustic_window(encodings, e.durations, f0, 0, total)
        predicted_f0.append(mel_cepstral_distortion(e.frames.mcep, out.mcep))
    return {"sentences": len(examples),
            "mcd_db_teacher_durations_and_f0": float(np.mean(teacher_f0)),
            "mcd_db_teacher_durations_predicted_f0": float(np.mean(predicted_f0))}
