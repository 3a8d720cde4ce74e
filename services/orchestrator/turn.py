"""One user turn and the agent's reply to it: timings, spoken segments, playback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from services.orchestrator.downstream import StreamWriter
from services.orchestrator.heard import SpokenSegment, heard_text


def now_ms() -> float:
    """Monotonic clock in milliseconds, for latencies."""
    return time.perf_counter() * 1000.0


@dataclass
class Turn:
    """The reply to one user turn, from the end of user speech to the last audio byte."""

    turn_id: str
    user_text: str
    output_rate: int
    span: Span
    speech_end_ms: float | None = None
    """When the last speech frame reached us (None for typed input)."""
    started_ms: float = field(default_factory=now_ms)
    stt_ms: float = 0.0
    llm_sent_ms: float = 0.0
    first_delta_ms: float | None = None
    first_audio_ms: float | None = None
    reply_parts: list[str] = field(default_factory=list)
    segments: list[SpokenSegment] = field(default_factory=list)
    samples_sent: int = 0
    played_ms: int | None = None
    playback_done: bool = False
    llm_done: bool = False
    apologised: bool = False
    """The dialogue service failed the turn; an apology was spoken in its place."""
    tts_failed: bool = False
    cancelled: bool = False
    finished: bool = False
    tts: StreamWriter | None = None
    tts_metadata: list[tuple[str, str]] = field(default_factory=list)
    tts_task: asyncio.Task[None] | None = None
    llm_span: Span | None = None
    tts_span: Span | None = None
    proactive: bool = False
    """A notification the agent speaks unprompted: no user turn, no latency to report."""
    speculative: bool = False
    """An eager turn not yet confirmed: its output is held in :attr:`held`, unsent."""
    held: list[dict[str, Any]] = field(default_factory=list)
    """SessionResponse fields of a speculative turn's output, in order."""
    held_end: str = ""
    """How a speculative turn's synthesis ended, to report once it is committed."""
    committed_ms: float | None = None
    """When an eager turn was confirmed (its latency stages count from here)."""

    @property
    def reply_text(self) -> str:
        """The reply generated so far."""
        return "".join(self.reply_parts)

    @property
    def origin_ms(self) -> float:
        """Where voice-to-voice latency starts: end of speech, or the typed input."""
        return self.speech_end_ms if self.speech_end_ms is not None else self.started_ms

    def heard(self, at_ms: float | None = None) -> str:
        """Words the user heard: by playback reports if any came; else, for a client that
        does not report, by real time since the first audio (at ``at_ms``) within what
        was sent."""
        played = self.samples_sent
        if self.played_ms is not None:
            played = min(played, self.played_ms * self.output_rate // 1000)
        elif at_ms is not None and self.first_audio_ms is not None:
            elapsed = max(0.0, at_ms - self.first_audio_ms)
            played = min(played, int(elapsed * self.output_rate / 1000))
        return heard_text(self.segments, played)
