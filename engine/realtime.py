"""Shared pieces of the live path: timing statistics that never allocate per event."""

from __future__ import annotations

import numpy as np


class LatencyRecorder:
    """The last ``capacity`` latencies (seconds) in a ring; percentiles on demand.

    ``record`` is called by one thread (the worker); ``percentiles_ms`` may be read from
    another and sees a consistent-enough snapshot for a status line."""

    def __init__(self, capacity: int = 65536) -> None:
        self._values = np.zeros(capacity, dtype=np.float64)
        self._count = 0

    def record(self, seconds: float) -> None:
        self._values[self._count % self._values.size] = seconds
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def values(self) -> np.ndarray:
        """The recorded latencies in seconds (up to ``capacity`` most recent)."""
        return self._values[:min(self._count, self._values.size)].copy()

    def last(self, n: int) -> np.ndarray:
        """The ``n`` most recent latencies in seconds, oldest first (fewer if fewer were
        recorded or kept)."""
        n = min(n, self._count, self._values.size)
        end = self._count % self._values.size
        if n <= end:
            return self._values[end - n:end].copy()
        return np.concatenate([self._values[self._values.size - (n - end):],
                               self._values[:end]])

    def percentiles_ms(self, points: tuple[float, ...] = (50, 99, 99.9)) -> dict[str, float]:
        """Percentiles and max in milliseconds; empty if nothing was recorded."""
        values = self.values()
        if values.size == 0:
            return {}
        result = {f"p{p:g}": float(np.percentile(values, p) * 1000) for p in points}
        result["max"] = float(values.max() * 1000)
        return result
