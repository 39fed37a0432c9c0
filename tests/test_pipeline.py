"""The training pipeline end to end on the tiny preset: train, export, parity, cards."""

import json

import numpy as np
import pytest

from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.engine.chorale.melody import Melody, harmonize_melody
from kantor.export.chorale.to_onnx import PARITY_TOLERANCE

pytestmark = pytest.mark.slow
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")


def test_cards_record_parity_and_held_out_metrics(tiny_export):
    for voice in VOICE_NAMES:
        card = json.loads((tiny_export / "models" / f"chorale-{voice}.json").read_text())
        metrics = card["metrics"]
        assert metrics["onnx_parity_max_abs_logit_error"] <= PARITY_TOLERANCE
        assert metrics["nll_per_token_nats"] > 0 and 0 <= metrics["accuracy"] <= 1
        assert card["training"]["command"].endswith("--preset tiny")
        assert card["inputs"]["tokens"]["shape"][1] == 4


def test_exported_models_drive_the_sampler(tiny_export):
    sampler = ChoraleSampler.load(tiny_export / "models")
    soprano = np.array([67, -2, -2, -2, 69, -2, -2, -2, 71, -2, -2, -2], dtype=np.int16)
    result = harmonize_melody(sampler, Melody(soprano=soprano, key_sharps=1),
                              settings=GibbsSettings(iterations=3, chains=1))
    assert np.array_equal(result.raw[0], soprano)


def test_training_resumes_from_its_checkpoint(tiny_export, tiny_corpus):
    from kantor.export.chorale.train import PRESETS, train

    record = json.loads((tiny_export / "run" / "record.json").read_text())
    _, resumed = train(PRESETS["tiny"], tiny_export / "run", tiny_corpus)
    assert resumed["epochs"] == record["epochs"]  # nothing retrained


def test_parity_check_compares_torch_and_onnx(tiny_export, tiny_corpus):
    import torch

    from kantor.export.chorale.model import ChoraleModel, VoiceNetConfig
    from kantor.export.chorale.to_onnx import parity_error

    record = json.loads((tiny_export / "run" / "record.json").read_text())
    vocab_sizes = [v.size for v in tiny_corpus.vocabularies]
    model = ChoraleModel(vocab_sizes, VoiceNetConfig(**record["config"]["net"]))
    model.load_state_dict(torch.load(tiny_export / "run" / "best.pt"))
    model.eval()
    path = tiny_export / "models" / "chorale-tenor.onnx"
    assert parity_error(model.voices[2], vocab_sizes, path) <= PARITY_TOLERANCE
    # A network that differs by a little must not pass: the check can fail.
    with torch.no_grad():
        model.voices[2].out.bias += 1e-2
    assert parity_error(model.voices[2], vocab_sizes, path) > PARITY_TOLERANCE


def test_live_pipeline_exports_a_working_live_harmoniser(tmp_path):
    from kantor.engine.chorale.live import LiveHarmonizer
    from kantor.export.chorale.pipeline import train_and_export_live

    paths = train_and_export_live("live-tiny", tmp_path / "run", tmp_path / "models",
                                  eval_limit=1)
    assert [p.name for p in paths] == ["chorale-live-bass.onnx", "chorale-live-alto.onnx",
                                       "chorale-live-tenor.onnx"]
    card = json.loads(paths[0].with_suffix(".json").read_text())
    assert card["metrics"]["onnx_parity_max_abs_logit_error"] <= PARITY_TOLERANCE
    assert card["decision_order"] == ["bass", "alto", "tenor"]
    assert "event_mode" in card["metrics"]["live_harmonisations_of_test_sopranos"]["rates"]
    harmonizer = LiveHarmonizer.load(tmp_path / "models")
    harmonizer.prepare()
    answer = harmonizer.process([0x90, 67, 90], 0.0)
    assert sorted(m[0] & 0x0F for m in answer if m[0] & 0xF0 == 0x90) == [0, 1, 2, 3]


def test_two_processes_under_torchrun_train_what_one_does(tiny_export, tmp_path):
    # torchrun on this CPU (gloo): each process takes half of every batch; the averaged
    # gradients are the one-process ones, so the weights agree to float rounding
    import subprocess
    import sys

    import torch

    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "kantor.export", "train", "harmonizer", "--preset", "tiny", "--run-dir",
         str(run), "--out", str(tmp_path / "models"), "--eval-limit", "1"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 4  # rank 0 alone exports
    one = torch.load(tiny_export / "run" / "best.pt")
    two = torch.load(run / "best.pt")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5)
    record_one = json.loads((tiny_export / "run" / "record.json").read_text())
    record_two = json.loads((run / "record.json").read_text())
    assert (record_one["processes"], record_two["processes"]) == (1, 2)
    for key in ("train_loss", "valid_nll_mean"):
        assert record_two["epochs"][0][key] == pytest.approx(record_one["epochs"][0][key],
                                                             rel=1e-5)
