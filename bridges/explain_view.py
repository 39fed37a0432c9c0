"""How `kantor explain` shows an explanation of an offline choice: a short table and a
heat map PNG (live explanations go out as JSON, ``Explanation.to_json``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kantor.engine.chorale.encoding import STEPS_PER_QUARTER, VOICES
from kantor.engine.chorale.explain import Explanation


def beat_of(step: int) -> str:
    """A step (16th from the first note) as the beat the CLI counts (from 1)."""
    return f"{step / STEPS_PER_QUARTER + 1:g}"


def table(explanation: Explanation, count: int = 10) -> str:
    """The ``count`` cells that drove an offline choice most, one line each."""
    a = explanation.attribution
    lines = [f"why the {VOICES[explanation.voice]} sings {explanation.chosen} at beat "
             f"{beat_of(explanation.step)} "
             f"({explanation.network} network): logit {a.logit:+.2f}, {a.baseline_logit:+.2f} "
             f"with every note hidden; integrated gradients over {a.steps} steps share out "
             f"the {a.logit - a.baseline_logit:+.2f} nats (completeness error "
             f"{a.completeness_error:.2%})",
             f"  {'voice':8s} {'beat':>6s} {'note':>6s} {'nats':>8s} {'share':>6s}"]
    for row in explanation.top(count):
        lines.append(f"  {row['voice']:8s} {beat_of(row['step']):>6s} {row['note']:>6s} "
                     f"{row['nats']:+8.3f} {row['share']:6.1%}")
    return "\n".join(lines)


def heat_map(explanation: Explanation, path: Path) -> None:
    """A piano-roll heat map: the four voices against the window's steps, each cell
    coloured by its attribution (red pushed the choice up, blue down) and named."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("the heat map needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = explanation.attribution.cells
    limit = float(np.abs(cells).max()) or 1.0
    fig, axis = plt.subplots(figsize=(max(8, cells.shape[1] * 0.45), 3.2))
    image = axis.imshow(cells, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for v in range(4):
        for c in range(cells.shape[1]):
            axis.text(c, v, explanation.notes[v][c], ha="center", va="center", fontsize=6)
    labels = [beat_of(int(s)) for s in explanation.steps]
    axis.set_xticks(range(len(labels)), labels, fontsize=6, rotation=90)
    axis.set_yticks(range(4), VOICES)
    axis.set_xlabel("beat")
    centre = int(np.flatnonzero(explanation.steps == explanation.step)[0])
    axis.axvline(centre, color="black", linewidth=0.8)
    axis.set_title(f"why the {VOICES[explanation.voice]} sings {explanation.chosen} "
                   f"(nats of logit, integrated gradients)", fontsize=9)
    fig.colorbar(image, ax=axis, fraction=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
