"""A growable float32 sample buffer addressed by absolute sample index."""

from __future__ import annotations

import numpy as np


class SampleBuffer:
    """Appends in amortised O(1); old samples are dropped with :meth:`discard_before`."""

    def __init__(self, capacity: int = 16_000 * 8) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._size = 0
        self.start = 0
        """Absolute index of the oldest sample kept."""

    @property
    def end(self) -> int:
        """Absolute index one past the newest sample."""
        return self.start + self._size

    def append(self, samples: np.ndarray) -> None:
        """Add samples at :attr:`end`."""
        needed = self._size + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : needed] = samples
        self._size = needed

    def slice(self, start: int, end: int) -> np.ndarray:
        """Copy of the kept samples in ``[start, end)``, clipped to what is kept."""
        lo = max(start, self.start) - self.start
        hi = min(end, self.end) - self.start
        return self._data[lo:hi].copy() if hi > lo else np.zeros(0, dtype=np.float32)

    def discard_before(self, index: int) -> None:
        """Forget samples before absolute ``index``."""
        drop = min(max(0, index - self.start), self._size)
        if drop:
            self._data[: self._size - drop] = self._data[drop : self._size]
            self._size -= drop
            self.start += drop
