"""How long a 4-bar and a 16-bar harmonisation take at the default settings, with the voice
networks run by ONNX Runtime (what Kantor ships) and by PyTorch (the same weights, read
back from the ONNX files and checked for parity first), in the same run, same sampler.

    python benchmarks/harmonizer_speed.py [--repeats 10] [--out benchmarks/results]

Writes harmonizer_speed.json and harmonizer_speed.png. Needs the train extra (torch).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import numpy_helper

from kantor.engine.chorale.encoding import META_SIZES
from kantor.engine.chorale.gibbs import ChoraleSampler, GibbsSettings
from kantor.export.chorale.corpus import load_corpus
from kantor.export.chorale.model import VoiceNet, VoiceNetConfig


def torch_net_from_onnx(path: Path, card: dict, vocab_sizes: list[int]) -> VoiceNet:
    """A VoiceNet holding exactly the weights stored in an exported ONNX file."""
    net = VoiceNet(["soprano", "alto", "tenor", "bass"].index(card["voice"]), vocab_sizes,
                   VoiceNetConfig(**card["architecture"]))
    stored = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    state = net.state_dict()
    for name, tensor in state.items():
        value = stored.get(name)
        if value is None:  # the exporter may store a transposed copy under another name
            value = next(v.T for v in stored.values()
                         if v.ndim == 2 and v.T.shape == tuple(tensor.shape))
        state[name] = torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype)
    net.load_state_dict(state)
    return net.eval()


class TorchSampler(ChoraleSampler):
    """The same sampler with PyTorch computing the logits."""

    def __init__(self, onnx_sampler: ChoraleSampler) -> None:
        super().__init__(onnx_sampler.models)
        sizes = [v.size for v in self.vocabularies]
        self.nets = [torch_net_from_onnx(m.path, m.card, sizes) for m in onnx_sampler.models]

    def logits(self, voice, tokens, meta):
        meta = np.ascontiguousarray(meta[..., self.meta_columns])
        with torch.inference_mode():
            return self.nets[voice](torch.from_numpy(tokens), torch.from_numpy(meta)).numpy()


def check_parity(a: ChoraleSampler, b: ChoraleSampler) -> float:
    rng = np.random.default_rng(0)
    window = 2 * a.context + 1
    worst = 0.0
    for v in range(len(a.vocabularies)):
        tokens = np.stack([rng.integers(0, voc.size, (64, window)) for voc in a.vocabularies], 1)
        meta = np.stack([rng.integers(0, n, (64, window)) for n in META_SIZES], 2)
        worst = max(worst, float(np.abs(a.logits(v, tokens, meta) - b.logits(v, tokens, meta)
                                        ).max()))
    return worst


def excerpt(steps: int):
    """The first ``steps`` 16ths of the longest held-out chorale (soprano fixed)."""
    chorale = max(load_corpus().split("test"), key=lambda c: c.raw.shape[1])
    raw, meta = chorale.raw[:, :steps], chorale.meta[:steps]
    fixed = np.zeros(raw.shape, dtype=bool)
    fixed[0] = True
    return chorale.name, raw, fixed, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both backends on one thread, as the engine runs
    samplers = {"onnxruntime": ChoraleSampler.load(threads=1)}
    samplers["pytorch"] = TorchSampler(samplers["onnxruntime"])
    parity = check_parity(samplers["onnxruntime"], samplers["pytorch"])
    assert parity < 1e-4, f"backends disagree by {parity}"
    settings = GibbsSettings()
    results = {"settings": {k: v for k, v in vars(settings).items() if k != "ranges"},
               "parity_max_abs_logit_error": parity, "cases": {}}
    for bars in (4, 16):
        name, raw, fixed, meta = excerpt(16 * bars)
        case = {"chorale": name, "steps": int(raw.shape[1])}
        for backend, sampler in samplers.items():
            sampler.harmonize(raw, fixed, meta, settings)  # warm-up
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                sampler.harmonize(raw, fixed, meta, settings)
                times.append(time.perf_counter() - started)
            case[backend] = {"median_s": statistics.median(times), "min_s": min(times),
                             "max_s": max(times), "runs": times}
        case["speedup_onnx_over_torch"] = (case["pytorch"]["median_s"]
                                           / case["onnxruntime"]["median_s"])
        results["cases"][f"{bars}_bars"] = case
        print(f"{bars:2d} bars: onnxruntime {case['onnxruntime']['median_s'] * 1000:.0f} ms, "
              f"pytorch {case['pytorch']['median_s'] * 1000:.0f} ms "
              f"(x{case['speedup_onnx_over_torch']:.2f})")
    results["machine"] = {"cpu": platform.processor() or platform.machine(),
                          "cores": __import__("os").cpu_count(), "threads_used": 1,
                          "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "harmonizer_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "harmonizer_speed.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(results["cases"])
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.35
    for i, backend in enumerate(("onnxruntime", "pytorch")):
        values = [results["cases"][c][backend]["median_s"] for c in cases]
        ax.bar(np.arange(len(cases)) + i * width, values, width, label=backend)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="1 s target (4 bars)")
    ax.set_xticks(np.arange(len(cases)) + width / 2, [c.replace("_", " ") for c in cases])
    ax.set_ylabel("seconds (median)")
    ax.set_title("Harmonisation time at default settings (1 thread)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
