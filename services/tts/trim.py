"""Trim the silence engines put around a segment, so its first audio is speech."""

from __future__ import annotations

import numpy as np

FRAME_MS = 10
KEEP_MS = 50
# A frame is sound when its RMS is within 35 dB of the loudest frame's (breaths are quieter).
RELATIVE_FLOOR = 0.018
ABSOLUTE_FLOOR = 1e-4


def trim_silence(samples: np.ndarray, sample_rate: int, keep_ms: int = KEEP_MS) -> np.ndarray:
    """Cut leading and trailing silence down to at most ``keep_ms`` each side.

    Args:
        samples: Float32 mono audio of one segment.
        sample_rate: Its rate in Hz.
        keep_ms: Silence kept before the first and after the last speech frame.

    Returns:
        A view of ``samples``; empty if it holds no sound at all.
    """
    start, end = trim_bounds(samples, sample_rate, keep_ms)
    return samples[start:end]


def trim_bounds(samples: np.ndarray, sample_rate: int, keep_ms: int = KEEP_MS) -> tuple[int, int]:
    """(start, end) sample indices :func:`trim_silence` keeps; (0, 0) for pure silence."""
    frame = sample_rate * FRAME_MS // 1000
    count = len(samples) // frame
    if count == 0:
        return 0, len(samples)
    frames = samples[: count * frame].reshape(count, frame)
    levels = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    floor = max(float(levels.max()) * RELATIVE_FLOOR, ABSOLUTE_FLOOR)
    loud = np.flatnonzero(levels > floor)
    if loud.size == 0:
        return 0, 0
    keep = sample_rate * keep_ms // 1000
    start = max(int(loud[0]) * frame - keep, 0)
    end = min((int(loud[-1]) + 1) * frame + keep, len(samples))
    return start, end
