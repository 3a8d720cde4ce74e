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
from services.tts.cache import CachedAudio, CacheKey, PhraseCache
from services.tts.catalog import Voice
from services.tts.chunker import TextChunker
from services.tts.engines import TtsEngine
from services.tts.errors import InvalidArgument, SynthesisFailed, TtsError
from services.tts.trim import trim_bounds
from services.tts.validation import StreamConfig
from services.tts.word_timings import Timed, place_words
from voxmesh.audio import BYTES_PER_SAMPLE, float_to_pcm16, resample
from voxmesh.v1 import audio_pb2, tts_pb2

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


TIMEOUT_BASE_CHARS = 45
"""Segment length the base primary timeout is meant for; longer segments get proportionally more."""


@dataclass(frozen=True)
class Fallback:
    """The engine that takes over a stream whose voice's engine fails or is too slow."""

    engine: TtsEngine
    #: Longest the voice's own engine may take on a short segment, in seconds.
    timeout: float

    def timeout_for(self, text: str) -> float:
        """Budget for one segment: the base for up to TIMEOUT_BASE_CHARS, stretched beyond.

        A slow engine (Kokoro int8 on two busy cores manages ~15 characters a second) must
        not lose a long sentence to the fallback; a hung one is still caught.
        """
        return self.timeout * max(1.0, len(text) / TIMEOUT_BASE_CHARS)

    def voice_for(self, voice: Voice) -> str:
        """The fallback voice closest to ``voice`` (same language where it has one)."""
        pick = getattr(self.engine, "voice_for", None)
        if callable(pick):
            return str(pick(voice.info.language_code))
        return self.engine.default_voice


@dataclass(frozen=True)
class _Rendered:
    """A synthesised segment, as PCM16 at the output rate."""

    index: int
    text: str
    pcm: bytes
    synthesis_ms: int
    engine: str
    is_fallback: bool
    cache_hit: bool
    words: list[Timed]
    timing_source: str


@dataclass(frozen=True)
class _Synthesised:
    pcm: bytes
    seconds: float
    words: list[Timed]
    timing_source: str


_Ready = _Rendered | _Signal | TtsError


class SynthesisStream:
    """Chunker, synthesis worker and event sender of one stream."""

    def __init__(
        self,
        config: StreamConfig,
        trace_context: Context,
        fallback: Fallback | None = None,
        cache: PhraseCache | None = None,
    ) -> None:
        """Start the synthesis worker for a validated stream configuration.

        Args:
            config: The validated stream configuration.
            trace_context: Parent of the per-segment spans.
            fallback: Engine that takes over when the voice's engine fails or times out.
            cache: Phrase cache shared by every stream of the service.
        """
        self._config = config
        self._engine = config.voice.engine
        self._fallback = fallback
        self._cache = cache
        self._on_fallback = False
        self._trace_context = trace_context
        self._chunker = TextChunker()
        self._pending: asyncio.Queue[str | None] = asyncio.Queue()
        self._ready: asyncio.Queue[_Ready] = asyncio.Queue()
        self._input_ended = False
        self._cancelled = False
        self._error: TtsError | None = None
        self._first_text_at: float | None = None
        self._used_fallback = False
        self.total_samples = 0
        self._worker = asyncio.create_task(self._synthesize_segments(), name="tts-synthesis")

    @property
    def engine_name(self) -> str:
        """Engine speaking this stream (the fallback once it has taken over)."""
        return self._speaker()[0].name

    def _speaker(self) -> tuple[TtsEngine, str]:
        """(engine, voice id) that speaks the next segment."""
        if self._on_fallback and self._fallback is not None:
            return self._fallback.engine, self._fallback.voice_for(self._config.voice)
        return self._engine, self._config.voice.id

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
            log.exception("synthesis failed", extra={"engine": self.engine_name})
            message = f"{self.engine_name}: synthesis failed: {error}"
            self._ready.put_nowait(SynthesisFailed(message))

    async def _render(self, index: int, text: str) -> _Rendered | None:
        engine, voice = self._speaker()
        if (hit := self._cached(text, engine, voice)) is not None:
            return self._rendered(index, text, hit, engine, cache_hit=True)
        if self._fallback is None or self._on_fallback:
            done = await self._synthesize(engine, voice, index, text)
        else:
            budget = self._fallback.timeout_for(text)
            try:
                done = await asyncio.wait_for(self._synthesize(engine, voice, index, text), budget)
            except TimeoutError:
                self._fall_back("timeout", f"no audio after {budget:g} s")
            except Exception as error:  # noqa: BLE001 - any engine failure: the fallback speaks
                self._fall_back("error", str(error))
            else:
                return self._store(index, text, done, engine, voice)
            engine, voice = self._speaker()
            if (hit := self._cached(text, engine, voice)) is not None:
                return self._rendered(index, text, hit, engine, cache_hit=True)
            done = await self._synthesize(engine, voice, index, text)
        return self._store(index, text, done, engine, voice)

    def _fall_back(self, reason: str, detail: str) -> None:
        """Hand this segment and the rest of the stream to the fallback engine."""
        self._on_fallback = True
        metrics.FALLBACKS.labels(engine=self._engine.name, reason=reason).inc()
        log.warning("engine gave up, fallback speaks", extra={
            "engine": self._engine.name, "reason": reason, "detail": detail,
            "fallback": self.engine_name,
        })

    def _key(self, text: str, engine: TtsEngine, voice: str) -> CacheKey:
        config = self._config
        return CacheKey.of(text, voice, config.speed, engine.name, config.sample_rate)

    def _cached(self, text: str, engine: TtsEngine, voice: str) -> _Synthesised | None:
        if self._cache is None:
            return None
        entry = self._cache.get(self._key(text, engine, voice))
        if entry is None:
            return None
        return _Synthesised(entry.pcm, 0.0, entry.words, entry.timing_source)

    def _store(self, index: int, text: str, done: _Synthesised, engine: TtsEngine,
               voice: str) -> _Rendered | None:
        if not done.pcm:
            log.info("segment has nothing to speak", extra={"text": text})
            return None
        if self._cache is not None:
            self._cache.put(self._key(text, engine, voice), CachedAudio(
                done.pcm, done.seconds, done.words, done.timing_source))
        return self._rendered(index, text, done, engine, cache_hit=False)

    def _rendered(self, index: int, text: str, done: _Synthesised, engine: TtsEngine,
                  cache_hit: bool) -> _Rendered:
        return _Rendered(index, text, done.pcm, round(done.seconds * 1000), engine.name,
                         self._on_fallback, cache_hit, done.words, done.timing_source)

    async def _synthesize(self, engine: TtsEngine, voice: str, index: int,
                          text: str) -> _Synthesised:
        with tracer.start_as_current_span("tts.synthesize", context=self._trace_context,
                                          attributes={"voxmesh.engine": engine.name,
                                                      "voxmesh.segment_index": index,
                                                      "voxmesh.chars": len(text)}) as span:
            done, audio_seconds = await asyncio.to_thread(
                self._render_blocking, engine, voice, text)
            span.set_attribute("voxmesh.synthesis_ms", round(done.seconds * 1000))
            span.set_attribute("voxmesh.audio_ms", round(audio_seconds * 1000))
        metrics.SYNTHESIS_SECONDS.labels(engine.name).observe(done.seconds)
        if audio_seconds > 0:
            metrics.REAL_TIME_FACTOR.labels(engine.name).observe(done.seconds / audio_seconds)
        return done

    def _render_blocking(self, engine: TtsEngine, voice: str,
                         text: str) -> tuple[_Synthesised, float]:
        """Synthesise, trim, place words and resample one segment; also the audio seconds."""
        config, native = self._config, engine.native_sample_rate
        started = time.perf_counter()
        result = engine.run_timed(text, voice, config.speed)
        seconds = time.perf_counter() - started
        start, end = trim_bounds(result.audio, native)
        speech = result.audio[start:end]
        words, source = place_words(text, len(speech) / native, result.words, start / native)
        if len(speech) and native != config.sample_rate:
            speech = resample(speech, native, config.sample_rate)
        done = _Synthesised(float_to_pcm16(speech), seconds, words, source)
        return done, len(result.audio) / native

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
        rate = self._config.sample_rate
        start_ms = self.total_samples * 1000 / rate
        words = [audio_pb2.WordTiming(word=w.word, start_ms=round(start_ms + w.start * 1000),
                                      end_ms=round(start_ms + w.end * 1000))
                 for w in segment.words]
        if segment.is_fallback:
            self._used_fallback = True
        yield tts_pb2.StreamingSynthesizeResponse(segment=tts_pb2.SegmentStarted(
            segment_index=segment.index, text=segment.text, sample_offset=self.total_samples,
            synthesis_ms=segment.synthesis_ms, sample_count=samples, engine=segment.engine,
            is_fallback=segment.is_fallback, cache_hit=segment.cache_hit,
            timing_source=segment.timing_source,
            words=words,
        ))
        step = self._config.chunk_samples * BYTES_PER_SAMPLE
        for start in range(0, len(segment.pcm), step):
            if self._cancelled or self._error is not None:
                return  # control jumps the queue: not one more chunk
            chunk = segment.pcm[start : start + step]
            chunk_start = self.total_samples * 1000 / rate
            chunk_end = chunk_start + len(chunk) // BYTES_PER_SAMPLE * 1000 / rate
            yield tts_pb2.StreamingSynthesizeResponse(audio=tts_pb2.AudioChunk(
                audio=chunk, sample_offset=self.total_samples, segment_index=segment.index,
                words=[w for w in words if w.start_ms < chunk_end and w.end_ms > chunk_start],
            ))
            if self.total_samples == 0 and self._first_text_at is not None:
                metrics.FIRST_AUDIO_SECONDS.labels(segment.engine).observe(
                    time.perf_counter() - self._first_text_at)
            self.total_samples += len(chunk) // BYTES_PER_SAMPLE

    def _done(self) -> tts_pb2.StreamingSynthesizeResponse:
        return tts_pb2.StreamingSynthesizeResponse(done=tts_pb2.SynthesisDone(
            total_samples=self.total_samples, is_cancelled=self._cancelled,
            engine=self.engine_name, is_fallback=self._used_fallback,
        ))

    async def aclose(self) -> None:
        """Stop the worker (a segment already in an engine finishes in its thread)."""
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
