"""Many independent jobs (render a batch of sentences, analyse a file) on this machine's
processes, or on a Ray cluster when one is given: the same jobs, the same results.

``ray_address`` is what ``ray.init`` takes: ``"auto"`` (a cluster this machine belongs
to), ``"ray://HOST:10001"`` (a remote one), or ``"local"`` for a Ray instance started here
(a check of the Ray path without a cluster). The jobs' functions must be importable on
the workers (Kantor installed there) and the folders they write must be shared by every
node (e.g. NFS). Ray itself is optional: ``pip install ray`` where it is used.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def run_jobs(function: Callable[..., Any], jobs: Sequence[tuple], workers: int = 2,
             ray_address: str | None = None) -> Iterator[Any]:
    """``function(*job)`` for every job, results yielded as the jobs finish (in no fixed
    order): in ``workers`` local processes, or as Ray tasks on ``ray_address``."""
    if not jobs:
        return
    if ray_address is None:
        # fresh interpreters, not forks: a fork of a process that runs threads (ONNX
        # Runtime's, JACK's, a Ray client's gRPC) can die before it starts its job
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")
                                 ) as pool:
            for future in as_completed([pool.submit(function, *job) for job in jobs]):
                yield future.result()
        return
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray-address needs Ray (pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**({"num_cpus": workers} if ray_address == "local"
                    else {"address": ray_address}), log_to_driver=False,
                 include_dashboard=False)
    try:
        remote = ray.remote(function)
        pending = [remote.remote(*job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()
