"""Peak memory of one harmonisation request, measured in a process of its own.

    python -m tests.request_memory     # prints {"baseline_mb", "requests": {name: {...}}}

The process prepares the service's sampler as ``kantor serve`` does, then sends each input
through ``KantorService.harmonize_upload`` (read within the service's limits, harmonise
with the most chains a request may ask for, write the file). Before each request the
kernel's peak-RSS mark is reset (``/proc/self/clear_refs``, 5), so the peak read after it
(VmHWM) belongs to that request alone; the figure is that peak minus the RSS before.
"""

from __future__ import annotations

import json
import sys
import time

MB = 1024 * 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def requests() -> dict[str, tuple[bytes, str]]:
    """Every hostile file, and the largest legal uploads."""
    from harness.hostile import HOSTILE_FILES, largest_midi, largest_musicxml

    inputs = {name: (data, kind) for name, (data, kind, _) in HOSTILE_FILES.items()}
    inputs["largest-legal.mid"] = (largest_midi(), "midi")
    inputs["largest-legal.musicxml"] = (largest_musicxml(), "musicxml")
    return inputs


def measure(chains: int = 16, iterations: int = 1) -> dict:
    """Per request: outcome, peak growth over the RSS before it (MB), seconds.
    ``iterations`` does not change the memory (the sampler's arrays are sized by chains
    and length), so one keeps the measurement short."""
    from kantor.bridges.harmonizing import HarmonizeOptions
    from kantor.bridges.scorefiles import ScoreFileError
    from kantor.bridges.serve_config import ServeConfig
    from kantor.bridges.service import KantorService
    from kantor.engine.chorale.melody import MelodyError

    service = KantorService(ServeConfig())
    service._prepare_sampler()  # as `kantor serve` does before "ready"
    results = {}
    for name, (data, kind) in requests().items():
        for output in ("midi", "musicxml"):
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # reset the peak RSS mark to the current RSS
            before = _status_kb("VmRSS")
            started = time.perf_counter()
            try:
                body, _ = service.harmonize_upload(
                    data, kind, output, HarmonizeOptions(chains=chains, iterations=iterations),
                    name)
                outcome = f"harmonised ({len(body)} bytes)"
            except (ScoreFileError, MelodyError) as error:
                outcome = f"refused: {error}"
            peak = _status_kb("VmHWM")
            results[f"{name} -> {output}"] = {
                "outcome": outcome, "peak_growth_mb": round((peak - before) / 1024, 1),
                "peak_rss_mb": round(peak / 1024, 1),
                "seconds": round(time.perf_counter() - started, 3)}
            if outcome.startswith("refused"):
                break  # refused while reading: the output format plays no part
    return {"baseline_mb": round(_status_kb("VmRSS") / 1024, 1), "chains": chains,
            "iterations": iterations, "requests": results}


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=1)
