"""One command per voice model: load the corpus, train, export to ONNX, score on the
held-out sentences, write the card.

    kantor train voice-prosody [--preset prosody-tiny]
    kantor train voice-acoustic [--preset acoustic-tiny]

The acoustic model's card needs a prosody model to score with predicted F0: it uses the
one in the same output folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict
from pathlib import Path

from kantor.engine.models import load_model, provisional_card, sha256_of
from kantor.engine.speech.acoustic import (
    ACOUSTIC_ENCODER_NAME,
    ACOUSTIC_NAME,
    PROSODY_NAME,
    VoiceModels,
)
from kantor.engine.speech.features import (
    frame_contract,
)
from kantor.engine.speech.linguistic import FEATURE_NAMES
from kantor.engine.speech.phones import PHONES
from kantor.engine.speech.prosody import POINTS
from kantor.export.speech.analysis import FEATURES_DIR
from kantor.export.speech.dataset import (
    card_training_data,
    hold_out,
    training_splits,
    write_card,
)
from kantor.export.speech.festival import DEFAULT_DIR
from kantor.export.trainer import is_main_process

log = logging.getLogger(__name__)


def train_and_export_voice(preset: str, run_dir: Path, out_dir: Path,
                           test_limit: int | None = None, corpus: Path = DEFAULT_DIR,
                           features: Path = FEATURES_DIR) -> dict | None:
    """Train the preset's model, export ``voice-<kind>.onnx`` + card into ``out_dir``.
    ``corpus``/``features``: the rendered corpus and its analysis."""
    from kantor.export.speech.acoustic import (
        PARITY_TOLERANCE,
        PRESETS,
        AcousticDecoderGraph,
        AcousticEncoderGraph,
        export_onnx,
        train,
    )
    from kantor.export.speech.evaluate import evaluate_acoustic, evaluate_prosody

    config = PRESETS[preset]
    examples, test = training_splits(config.train_limit, test_limit, corpus=corpus,
                                     features=features)
    valid, train_set = hold_out(examples)
    net, record = train(config, train_set, run_dir, valid=valid)
    if not is_main_process():  # torchrun's other processes trained; rank 0 exports
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    name = PROSODY_NAME if config.kind == "prosody" else ACOUSTIC_NAME
    path = out_dir / f"{name}.onnx"
    if config.kind == "prosody":
        parity = export_onnx(net, path)
    else:
        # two graphs: the phone encoder runs once per sentence, the frame decoder per chunk
        encoder_path = out_dir / f"{ACOUSTIC_ENCODER_NAME}.onnx"
        parity = max(export_onnx(AcousticEncoderGraph(net), encoder_path),
                     export_onnx(AcousticDecoderGraph(net), path))
        encoder_card = {
            "name": ACOUSTIC_ENCODER_NAME, "version": "1.0.0",
            "task": f"phone encoder of {name} (its card holds the metrics of both graphs)",
            "config": asdict(config), "sha256": sha256_of(encoder_path),
            "metrics": {"see": f"{name}.json"}}
        encoder_path.with_suffix(".json").write_text(json.dumps(encoder_card, indent=1))
    if parity > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX parity {parity:.2e} above {PARITY_TOLERANCE}")
    # a provisional card (hash only) so the model loads for scoring
    path.with_suffix(".json").write_text(json.dumps(provisional_card(
        path, name, "being measured", config=asdict(config))))
    if config.kind == "prosody":
        metrics = evaluate_prosody(load_model(path), test)
    else:
        metrics = evaluate_acoustic(VoiceModels.load(out_dir), test)
    card = {
        "name": name,
        "version": "1.0.0",
        "task": "Deep Voice duration + F0 model" if config.kind == "prosody"
        else "Deep Voice acoustic model (frames -> mel-cepstrum + band aperiodicity)",
        "created": dt.date.today().isoformat(),
        "config": asdict(config),
        "parameters": sum(p.numel() for p in net.parameters()),
        "inputs": {"phone_ids": {"dtype": "int64", "shape": [1, "phones"],
                                 "vocabulary": list(PHONES)},
                   "phone_feats": {"dtype": "float32", "shape": [1, "phones", 16],
                                   "fields": list(FEATURE_NAMES)},
                   **({} if config.kind == "prosody" else {
                       "note": f"phone inputs go to {ACOUSTIC_ENCODER_NAME}.onnx; this graph "
                               "takes its output gathered to frames",
                       "phone_encodings": {"dtype": "float32",
                                           "shape": [1, "frames", config.phone_channels]},
                       "frame_feats": {"dtype": "float32", "shape": [1, "frames", 4],
                                       "fields": ["position_in_phone", "phone_frames/20",
                                                  "log_f0 (0 unvoiced)", "voiced"]}})},
        "outputs": ({"frames": "duration per phone in 5 ms frames",
                     "log_f0": f"natural-log F0 (Hz) at {POINTS} points per phone",
                     "voiced": f"voicing probability at the {POINTS} points"}
                    if config.kind == "prosody" else
                    {"features": "(1, frames, 45): mel-cepstrum c0..c39 (natural log), "
                                 "band aperiodicity dB"}),
        "features": frame_contract(),
        "training_data": card_training_data(", WORLD analysis", train_set, valid, test),
    }
    log.info("%s: %s", name, metrics)
    return write_card(path, card, record, parity, metrics)
