"""Resumable training runs: one checkpoint file per run directory, and the optimiser step
the speech trainers share.

A checkpoint holds the network, optimiser and schedule states and the training record
(whose ``config`` must match the run being resumed, so a run never silently continues
with other settings). Torch is imported by the callers' modules; this one only uses the
objects it is handed.
"""

from __future__ import annotations

from pathlib import Path


def resume(checkpoint: Path, config: dict, net, optimiser, schedule, record: dict,
           extra: dict | None = None) -> tuple[dict, int]:
    """Load ``checkpoint`` into the given objects when it exists; returns the training
    record to continue and the number of epochs already done (0 for a fresh run)."""
    import torch

    if not checkpoint.exists():
        return record, 0
    saved = torch.load(checkpoint, weights_only=False)
    if saved["record"]["config"] != config:
        raise ValueError(f"{checkpoint} was trained with another config; use a new run dir")
    net.load_state_dict(saved["net"])
    optimiser.load_state_dict(saved["optimiser"])
    schedule.load_state_dict(saved["schedule"])
    if extra is not None:
        extra.update({k: v for k, v in saved.items()
                      if k not in ("net", "optimiser", "schedule", "record")})
    return saved["record"], len(saved["record"]["epochs"])


def save(checkpoint: Path, net, optimiser, schedule, record: dict, **extra) -> None:
    """Write the run's state after an epoch."""
    import torch

    torch.save({"net": net.state_dict(), "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(), "record": record, **extra}, checkpoint)


def step(loss, net, optimiser, schedule, clip: float = 1.0) -> float:
    """One optimiser step on ``loss`` (gradients clipped to norm ``clip``); returns the
    loss as a float."""
    from torch import nn

    optimiser.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), clip)
    optimiser.step()
    schedule.step()
    return loss.item()
