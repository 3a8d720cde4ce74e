"""One StreamingSynthesize session: text in, segments synthesised in order, events out.

Three parties share a :class:`SynthesisStream`: the reader pushes text and
control (``push_text``, ``flush``, ``end_input``, ``cancel``), a worker task
synthesises released segments one after another off the event loop, and the
RPC iterates :meth:`SynthesisStream.events`, sending each segment's audio while
the worker already renders the next. Cancel and errors jump the queue: the
sender checks them before every chunk, so a cancelled stream sends no more audio.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context

from services.tts import metrics
from services.tts.chunker import TextChunker
from services.tts.errors import InvalidArgument, SynthesisFailed, TtsError
from services.tts.trim import trim_silence
from services.tts.validation import StreamConfig
from voxmesh.audio import BYTES_PER_SAMPLE, float_to_pcm16, resample
from voxmesh.v1 import tts_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer("voxmesh.tts")

#: Longest text chunk accepted; LLM deltas are a few characters, a whole script fits.
MAX_TEXT_CHARS = 100_000


class _Signal(enum.Enum):
    """Markers on the ready queue besides rendered segments."""

    END = "end"
    """Every segment has been rendered."""
    WAKE = "wake"
    """Cancel or failure: the sender should look at the stream's state."""


@dataclass(frozen=True)
class _Rendered:
    """A synthesised segment, as PCM16 at the output rate."""

    index: int
    text: str
    pcm: bytes
    synthesis_ms: int


_Ready = _Rendered | _Signal | TtsError


class SynthesisStream:
    """Chunker, synthesis worker and event sender of one stream."""

    def __init__(self, config: StreamConfig, trace_context: Context) -> None:
        """Start the synthesis worker for a validated stream configuration."""
        self._config = config
        self._engine = config.voice.engine
        self._trace_context = trace_context
        self._chunker = TextChunker()
        self._pending: asyncio.Queue[str | None] = asyncio.Queue()
        self._ready: asyncio.Queue[_Ready] = asyncio.Queue()
        self._input_ended = False
        self._cancelled = False
        self._error: TtsError | None = None
        self._first_text_at: float | None = None
        self.total_samples = 0
        self._worker = asyncio.create_task(self._synthesize_segments(), name="tts-synthesis")

    @property
    def engine_name(self) -> str:
        """Engine speaking this stream."""
        return self._engine.name

    # -- input side ------------------------------------------------------------------------

    def push_text(self, text: str) -> None:
        """Add an LLM delta; complete segments go to synthesis at once."""
        if self._input_ended:
            raise InvalidArgument("text: received after end_of_input")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidArgument(
                f"text: {len(text)} characters in one chunk (at most {MAX_TEXT_CHARS})")
        if self._first_text_at is None and text:
            self._first_text_at = time.perf_counter()
        self._queue(self._chunker.push(text))

    def flush(self) -> None:
        """Speak whatever text is buffered now."""
        if self._input_ended:
            raise InvalidArgument("flush: received after end_of_input")
        self._queue(self._chunker.flush())

    def end_input(self) -> None:
        """No more text: speak the rest, then finish. Repeated calls do nothing."""
        if self._input_ended:
            return
        self._queue(self._chunker.flush())
        self._input_ended = True
        self._pending.put_nowait(None)

    def cancel(self) -> None:
        """Stop now: drop pending synthesis and send no further audio."""
        if self._cancelled:
            return
        self._cancelled = True
        self._worker.cancel()
        self._ready.put_nowait(_Signal.WAKE)
        metrics.CANCELLED.inc()
        log.info("stream cancelled", extra={"samples_sent": self.total_samples})

    def fail(self, error: TtsError) -> None:
        """End the stream with ``error`` (bad input, or the client's side failed)."""
        if self._error is None:
            self._error = error
            self._worker.cancel()
            self._ready.put_nowait(_Signal.WAKE)

    def _queue(self, segments: list[str]) -> None:
        for segment in segments:
            self._pending.put_nowait(segment)

    # -- synthesis worker ------------------------------------------------------------------

    async def _synthesize_segments(self) -> None:
        index = 0
        try:
            while (text := await self._pending.get()) is not None:
                rendered = await self._render(index, text)
                if rendered is not None:
                    self._ready.put_nowait(rendered)
                    index += 1
            self._ready.put_nowait(_Signal.END)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an engine bug must end this stream only, with a status
            log.exception("synthesis failed", extra={"engine": self._engine.name})
            message = f"{self._engine.name}: synthesis failed: {error}"
            self._ready.put_nowait(SynthesisFailed(message))

    async def _render(self, index: int, text: str) -> _Rendered | None:
        with tracer.start_as_current_span("tts.synthesize", context=self._trace_context,
                                          attributes={"voxmesh.engine": self._engine.name,
                                                      "voxmesh.segment_index": index,
                                                      "voxmesh.chars": len(text)}) as span:
            pcm, seconds, audio_seconds = await asyncio.to_thread(self._render_blocking, text)
            span.set_attribute("voxmesh.synthesis_ms", round(seconds * 1000))
            span.set_attribute("voxmesh.audio_ms", round(audio_seconds * 1000))
        metrics.SYNTHESIS_SECONDS.labels(self._engine.name).observe(seconds)
        if audio_seconds > 0:
            metrics.REAL_TIME_FACTOR.labels(self._engine.name).observe(seconds / audio_seconds)
        if not pcm:
            log.info("segment has nothing to speak", extra={"text": text})
            return None
        return _Rendered(index, text, pcm, round(seconds * 1000))

    def _render_blocking(self, text: str) -> tuple[bytes, float, float]:
        """Synthesise, trim and resample one segment: (PCM16, synthesis s, audio s)."""
        config, native = self._config, self._engine.native_sample_rate
        started = time.perf_counter()
        audio = self._engine.run(text, config.voice.id, config.speed)
        seconds = time.perf_counter() - started
        speech = trim_silence(audio, native)
        if len(speech) and native != config.sample_rate:
            speech = resample(speech, native, config.sample_rate)
        return float_to_pcm16(speech), seconds, len(audio) / native

    # -- output side -----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        """Segment announcements and audio chunks in order, then ``done``.

        Raises:
            TtsError: Bad input or a synthesis failure; the RPC ends with its status.
        """
        while True:
            item = await self._ready.get()
            if self._error is not None:
                raise self._error
            if self._cancelled:
                yield self._done()
                return
            if isinstance(item, TtsError):
                raise item
            if item is _Signal.END:
                yield self._done()
                return
            if isinstance(item, _Rendered):
                for event in self._segment_events(item):
                    yield event

    def _segment_events(self, segment: _Rendered) -> Iterator[tts_pb2.StreamingSynthesizeResponse]:
        """SegmentStarted, then the audio chunks; the state is checked as each is pulled."""
        samples = len(segment.pcm) // BYTES_PER_SAMPLE
        yield tts_pb2.StreamingSynthesizeResponse(segment=tts_pb2.SegmentStarted(
            segment_index=segment.index, text=segment.text, sample_offset=self.total_samples,
            synthesis_ms=segment.synthesis_ms, sample_count=samples,
        ))
        step = self._config.chunk_samples * BYTES_PER_SAMPLE
        for start in range(0, len(segment.pcm), step):
            if self._cancelled or self._error is not None:
                return  # control jumps the queue: not one more chunk
            chunk = segment.pcm[start : start + step]
            yield tts_pb2.StreamingSynthesizeResponse(audio=tts_pb2.AudioChunk(
                audio=chunk, sample_offset=self.total_samples, segment_index=segment.index,
            ))
            if self.total_samples == 0 and self._first_text_at is not None:
                metrics.FIRST_AUDIO_SECONDS.labels(self._engine.name).observe(
                    time.perf_counter() - self._first_text_at)
            self.total_samples += len(chunk) // BYTES_PER_SAMPLE

    def _done(self) -> tts_pb2.StreamingSynthesizeResponse:
        return tts_pb2.StreamingSynthesizeResponse(done=tts_pb2.SynthesisDone(
            total_samples=self.total_samples, is_cancelled=self._cancelled,
            engine=self._engine.name,
        ))

    async def aclose(self) -> None:
        """Stop the worker (a segment already in an engine finishes in its thread)."""
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
