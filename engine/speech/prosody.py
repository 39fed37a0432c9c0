"""From phone-level predictions to frames: durations, F0 contour and voicing.

The prosody model predicts, for each phone, its duration in 5 ms frames and log-F0 and
voicing probability at ``POINTS`` evenly spaced points inside it. ``expand`` turns that
into per-frame inputs of the acoustic model and the F0 track of the vocoder. Training
(export/speech/acoustic.py) makes its targets with ``point_frames`` so both agree.
"""

from __future__ import annotations

import numpy as np

POINTS = 4
FRAME_INPUTS = 4  # position in phone, phone duration / 20, log F0 (0 unvoiced), voiced


def point_frames(durations: np.ndarray) -> np.ndarray:
    """Frame position (float, frames from the start) of each phone's points, (N, POINTS)."""
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
    offsets = (np.arange(POINTS) + 0.5) / POINTS
    return starts[:, None] + offsets[None, :] * durations[:, None]


def frame_phones(durations: np.ndarray) -> np.ndarray:
    """Index of the phone each frame belongs to, (sum(durations),) int64."""
    return np.repeat(np.arange(len(durations), dtype=np.int64), durations)


def f0_track(durations: np.ndarray, log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """F0 in Hz per frame (0 = unvoiced): log F0 interpolated through the voiced points,
    voicing interpolated through all points and thresholded at 0.5."""
    total = int(durations.sum())
    centres = np.arange(total) + 0.5
    positions = point_frames(durations).ravel()
    probability = np.interp(centres, positions, voiced.ravel())
    keep = voiced.ravel() > 0.5
    if not keep.any():
        return np.zeros(total, np.float32)
    contour = np.exp(np.interp(centres, positions[keep], log_f0.ravel()[keep]))
    return np.where(probability > 0.5, contour, 0.0).astype(np.float32)


def frame_inputs(durations: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Per-frame inputs of the acoustic model, (T, FRAME_INPUTS) float32."""
    phones = frame_phones(durations)
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
    lengths = durations[phones].astype(np.float32)
    position = (np.arange(len(phones)) - starts[phones] + 0.5) / lengths
    voiced = f0 > 0
    log_f0 = np.where(voiced, np.log(np.maximum(f0, 1.0)), 0.0)
    return np.stack([position, lengths / 20.0, log_f0, voiced], axis=1).astype(np.float32)


def round_durations(frames: np.ndarray, rate: float = 1.0) -> np.ndarray:
    """Predicted durations (frames, float) -> whole frames, at least 1, with the rounding
    error carried forward so the total stays true; ``rate`` > 1 speaks faster."""
    exact = np.cumsum(np.maximum(frames, 1.0) / rate)
    ends = np.maximum.accumulate(np.round(exact).astype(np.int64))
    durations = np.diff(np.concatenate([[0], ends]))
    return np.maximum(durations, 1)
