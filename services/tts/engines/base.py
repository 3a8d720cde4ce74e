"""The engine interface every TTS backend implements, and what describes it."""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass

import numpy as np


class EngineUnavailable(RuntimeError):
    """An engine cannot be loaded here; the message says what to install or configure."""


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do; the servicer validates requests against it."""

    #: Rate of the float32 audio ``synthesize`` returns, in Hz.
    native_sample_rate: int
    #: Slowest speaking rate the engine accepts (1.0 is normal).
    min_speed: float = 0.5
    #: Fastest speaking rate the engine accepts.
    max_speed: float = 2.0


@dataclass(frozen=True)
class VoiceInfo:
    """One voice an engine has installed locally."""

    #: Identifier clients put in ``SynthesisConfig.voice``; unique across engines.
    id: str
    #: BCP-47 language the voice speaks on this server.
    language_code: str


@dataclass(frozen=True)
class WordSpan:
    """A word placed in an engine's output audio by the model's own durations."""

    #: The word as phonemised (the segment's text words replace it when they line up).
    word: str
    #: Start, in seconds from the start of the returned audio.
    start: float
    #: End, in seconds from the start of the returned audio.
    end: float


@dataclass(frozen=True)
class Synthesis:
    """What an engine returns for one text."""

    #: Float32 mono audio at the engine's native rate; empty if nothing was pronounceable.
    audio: np.ndarray
    #: Word spans from the model's durations, or None when the engine has none.
    words: list[WordSpan] | None = None


class TtsEngine(abc.ABC):
    """A speech synthesiser: text in, one float32 mono array out.

    ``synthesize`` blocks (callers run it with ``asyncio.to_thread``) and is
    serialised per engine by :meth:`run`, because phonemisers such as
    espeak-ng are not thread-safe and the cores are shared anyway.
    """

    #: Engine name as configured in ``VOXMESH_TTS_ENGINES``.
    name: str
    #: What the engine supports.
    capabilities: EngineCapabilities

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Why :meth:`load` failed, when the service kept running on the fallback engine.
        self.load_error: str | None = None

    @property
    def native_sample_rate(self) -> int:
        """Rate of the audio ``synthesize`` returns, in Hz."""
        return self.capabilities.native_sample_rate

    @abc.abstractmethod
    def load(self) -> None:
        """Load models from local files only (blocking); never download."""

    @abc.abstractmethod
    def voices(self) -> list[VoiceInfo]:
        """Voices installed locally, default first."""

    @abc.abstractmethod
    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Speak ``text`` (blocking); return float32 mono at ``native_sample_rate``.

        Returns an empty array when the text has nothing the engine can pronounce.
        """

    @property
    def default_voice(self) -> str:
        """The voice used when a client names none and this engine comes first."""
        return self.voices()[0].id

    def synthesize_timed(self, text: str, voice: str, speed: float) -> Synthesis:
        """:meth:`synthesize` plus word spans where the model reports durations.

        Engines whose models expose durations override this; the default has none.
        """
        return Synthesis(self.synthesize(text, voice, speed))

    def run(self, text: str, voice: str, speed: float) -> np.ndarray:
        """:meth:`synthesize`, one call at a time per engine."""
        return self.run_timed(text, voice, speed).audio

    def run_timed(self, text: str, voice: str, speed: float) -> Synthesis:
        """:meth:`synthesize_timed`, one call at a time per engine.

        Raises:
            EngineUnavailable: The engine failed to load (``load_error``).
        """
        if self.load_error is not None:
            raise EngineUnavailable(f"engine {self.name!r} did not load: {self.load_error}")
        with self._lock:
            return self.synthesize_timed(text, voice, speed)
