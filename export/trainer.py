"""The one training loop every Kantor model uses, on one process or many (torchrun).

A model brings a :class:`Run`: its network, optimiser and schedule, the batches of each
epoch, and how to turn a batch into a loss. :func:`fit` does the rest, the same way for
every model:

* one checkpoint format in the run folder (``checkpoint.pt``: net, optimiser, schedule and
  the training record, whose ``config`` must match for a run to resume) and ``best.pt``
  (the weights of the epoch that scored best on validation);
* a progress bar per epoch, one JSON line per epoch, an optional time budget;
* the epoch's random streams derived from (seed, epoch), so a resumed run draws what an
  uninterrupted one would have;
* mixed precision (bfloat16 autocast) on a GPU when the run asks for it;
* distributed data parallel when started by torchrun (``WORLD_SIZE`` > 1): gloo on CPUs,
  nccl on GPUs, several nodes by torchrun's own flags. Every process draws the same
  global batch, keeps its slice (:func:`shard`) and weighs its mean loss by the slice's
  share, so the averaged gradients are the one-process gradients of the whole batch; rank
  0 validates, checkpoints and reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


@dataclass
class Run:
    """What one model's training needs from its module.

    ``batches(epoch, rng)`` yields the epoch's global batches (the same on every process:
    draw only from ``rng``); ``prepare(batch, generator)`` may add random corruption to a
    whole batch before it is split (draw only from ``generator``); ``loss(module, part)``
    is the mean loss of a part of a batch (it may call any method of the network).
    ``validate(net)`` returns numbers for the record; the epoch with the lowest
    ``best_key`` among them is kept in ``best.pt`` and loaded at the end (None: the last
    epoch is kept). ``config`` is plain JSON: a run resumes only with the same one.
    """

    name: str
    net: nn.Module
    config: dict
    epochs: int
    batches: Callable[[int, np.random.Generator], Iterable[Any]]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    # AdamW with a one-cycle schedule over epochs x steps_per_epoch steps, unless the
    # model brings its own optimiser (and schedule)
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.3
    optimiser: torch.optim.Optimizer | None = None
    schedule: Any | None = None
    prepare: Callable[[Any, torch.Generator], Any] | None = None
    validate: Callable[[nn.Module], dict] | None = None
    best_key: str | None = None
    clip: float | None = None
    seed: int = 0
    time_budget_s: float | None = None
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast (GPU only)
    steps_per_epoch: int | None = None  # for the progress bar, when known
    validate_every: int = 1  # epochs between validations (the last epoch always)
    after_step: Callable[[], None] | None = None  # e.g. a weight average's update
    # state beyond the network's, optimiser's and schedule's (e.g. a weight average),
    # saved in every checkpoint and given back on resume
    extra_state: Callable[[], dict] | None = None
    load_extra_state: Callable[[dict], None] | None = None
    done: Callable[[], bool] | None = None  # stops the run early (checked per step)


class _Objective(nn.Module):
    """The network and its loss as one module, so that a DDP wrapper sees every call the
    loss makes into the network (whichever of its methods)."""

    def __init__(self, net: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.loss = loss

    def forward(self, part: Any) -> torch.Tensor:
        return self.loss(self.net, part)


def adamw_one_cycle(net: nn.Module, learning_rate: float, total_steps: int,
                    weight_decay: float = 1e-4, warmup: float = 0.3
                    ) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and a one-cycle learning rate over ``total_steps`` optimiser steps (``warmup``:
    the share of the run spent rising), the recipe every model here trains with."""
    optimiser = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=max(total_steps, 1), pct_start=warmup)
    return optimiser, schedule


def similar_length_batches(lengths: np.ndarray, size: int, rng: np.random.Generator,
                           jitter: float) -> list[np.ndarray]:
    """Indices in batches of ``size`` whose lengths are alike (``jitter``: how far apart,
    in length units, two items may be reordered), the batches in random order."""
    order = np.argsort(np.asarray(lengths) + rng.uniform(0, jitter, len(lengths)))
    batches = [order[k : k + size] for k in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def world() -> tuple[int, int]:
    """(rank, number of processes) of this process under torchrun; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Whether this process reports, checkpoints and exports (rank 0)."""
    return world()[0] == 0


def _start_group(device: str) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")


def shard(batch: Any, rank: int, size: int) -> tuple[Any, float]:
    """This process's contiguous slice of a global ``batch`` (a tensor, a sequence of
    tensors with a common first dimension, or a list of examples) and its share of the
    batch times ``size`` (the weight that makes averaged gradients exact)."""
    if size == 1:
        return batch, 1.0
    if isinstance(batch, torch.Tensor):
        total = batch.shape[0]
        part = torch.tensor_split(batch, size)[rank]
        return part, part.shape[0] * size / max(total, 1)
    if isinstance(batch, tuple) and batch and all(isinstance(t, torch.Tensor) or t is None
                                                  for t in batch):
        total = next(t.shape[0] for t in batch if t is not None)
        parts = tuple(None if t is None else torch.tensor_split(t, size)[rank] for t in batch)
        n = next(p.shape[0] for p in parts if p is not None)
        return parts, n * size / max(total, 1)
    items = list(batch)
    bounds = np.linspace(0, len(items), size + 1).astype(int)
    part = items[bounds[rank]:bounds[rank + 1]]
    return part, len(part) * size / max(len(items), 1)


def _empty(part: Any) -> bool:
    if isinstance(part, torch.Tensor):
        return part.shape[0] == 0
    if isinstance(part, tuple) and part and isinstance(part[0], torch.Tensor):
        return part[0].shape[0] == 0
    return len(part) == 0


def epoch_streams(seed: int, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
    """The random streams of one epoch (numpy, torch), from (seed, epoch) alone."""
    rng = np.random.default_rng([seed, epoch])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return rng, generator


def load_checkpoint(path: Path, config: dict, run: Run) -> dict | None:
    """The training record of ``path`` with its states loaded into ``run``; None when
    there is no checkpoint. ValueError when it was trained with another config."""
    if not path.exists():
        return None
    saved = torch.load(path, weights_only=False, map_location="cpu")
    if saved["record"]["config"] != config:
        raise ValueError(f"{path.parent} holds a run with another configuration; resume it "
                         "with that configuration or use a new run folder")
    run.net.load_state_dict(saved["net"])
    run.optimiser.load_state_dict(saved["optimiser"])
    if run.schedule is not None and saved.get("schedule") is not None:
        run.schedule.load_state_dict(saved["schedule"])
    if run.load_extra_state is not None and saved.get("extra") is not None:
        run.load_extra_state(saved["extra"])
    return saved["record"]


def fit(run: Run, run_dir: Path) -> tuple[nn.Module, dict]:
    """Train ``run`` (resuming from ``run_dir/checkpoint.pt``); returns the network with
    the best (or last) epoch's weights, in eval mode, and the training record."""
    rank, size = world()
    main = rank == 0
    torch.manual_seed(run.seed)
    if run.optimiser is None:
        if run.steps_per_epoch is None:
            raise ValueError("a run without its own optimiser needs steps_per_epoch")
        run.optimiser, run.schedule = adamw_one_cycle(
            run.net, run.learning_rate, run.epochs * run.steps_per_epoch, run.weight_decay,
            run.warmup)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, best_path = run_dir / "checkpoint.pt", run_dir / "best.pt"
    config = json.loads(json.dumps(run.config))  # tuples as lists, as saved
    run.net.to(run.device)
    record = load_checkpoint(checkpoint, config, run) or {
        "config": config, "epochs": [], "seconds": 0.0, "processes": size,
        "best_epoch": None, "best_key": run.best_key, "best": None,
        "stopped_by_time_budget": False}
    module: nn.Module = _Objective(run.net, run.loss)
    if size > 1:
        _start_group(run.device)
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(
            module, device_ids=[int(os.environ.get("LOCAL_RANK", 0))]
            if run.device.startswith("cuda") else None)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if run.amp and run.device.startswith("cuda") else contextlib.nullcontext())
    parameters = [p for p in run.net.parameters() if p.requires_grad]
    for epoch in range(len(record["epochs"]), run.epochs):
        if run.time_budget_s is not None and record["seconds"] > run.time_budget_s:
            record["stopped_by_time_budget"] = True
            break
        if run.done is not None and run.done():  # a resumed run that had finished
            break
        rng, generator = epoch_streams(run.seed, epoch)
        run.net.train()
        began = time.perf_counter()
        total, count = 0.0, 0
        bar = tqdm(run.batches(epoch, rng), total=run.steps_per_epoch, leave=False,
                   desc=f"{run.name} epoch {epoch + 1}/{run.epochs}", unit="batch",
                   disable=not main)
        for batch in bar:
            if run.prepare is not None:
                batch = run.prepare(batch, generator)
            part, weight = shard(batch, rank, size)
            with autocast:
                if _empty(part):  # still take part in the gradients' exchange
                    loss = sum(p.sum() for p in parameters) * 0.0
                else:
                    loss = module(part) * weight
            run.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if run.clip is not None:
                nn.utils.clip_grad_norm_(parameters, run.clip)
            run.optimiser.step()
            if run.schedule is not None and (
                    not hasattr(run.schedule, "total_steps")
                    or run.schedule.last_epoch + 1 < run.schedule.total_steps):
                run.schedule.step()
            if size > 1:  # the whole batch's mean loss: the weighted parts sum to size x it
                import torch.distributed as dist

                summed = loss.detach().clone()
                dist.all_reduce(summed)
                value = summed.item() / size
            else:
                value = loss.item()
            total, count = total + value, count + 1
            bar.set_postfix(loss=f"{total / count:.3f}")
            if run.after_step is not None:
                run.after_step()
            if run.done is not None and run.done():
                break
        entry = {"epoch": epoch + 1, "train_loss": total / max(count, 1),
                 "seconds": time.perf_counter() - began}
        last = epoch + 1 == run.epochs or (run.done is not None and run.done())
        if main and run.validate is not None and (last or (epoch + 1) % run.validate_every == 0):
            run.net.eval()
            with torch.no_grad():
                entry.update(run.validate(run.net))
            score = entry.get(run.best_key) if run.best_key else None
            if score is not None and (record["best"] is None or score < record["best"]):
                record["best"], record["best_epoch"] = float(score), epoch + 1
                torch.save({k: v.detach().cpu() for k, v in run.net.state_dict().items()},
                           best_path)
        record["epochs"].append(entry)
        record["seconds"] += entry["seconds"]
        if main:
            tqdm.write(json.dumps(entry))
            torch.save({"net": run.net.state_dict(), "optimiser": run.optimiser.state_dict(),
                        "schedule": run.schedule.state_dict() if run.schedule else None,
                        "record": record,
                        "extra": run.extra_state() if run.extra_state else None}, checkpoint)
        if run.done is not None and run.done():
            break
    if size > 1:
        import torch.distributed as dist

        dist.barrier()
    if run.best_key and best_path.exists():
        run.net.load_state_dict(torch.load(best_path, map_location=run.device))
    run.net.cpu().eval()
    if main:
        (run_dir / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    return run.net, record
