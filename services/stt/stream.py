"""One recognition stream: audio in, VAD-delimited utterances, partial and final transcripts out.

Audio is downmixed, resampled to 16 kHz and scored by Silero in a worker
thread; the state machine and scheduling run on the event loop. Every position
is a 16 kHz sample index from the start of the stream, which maps 1:1 to ms of
input audio.

Latency: the final decode of an utterance (the utterance plus ``final_pad_ms`` of
trailing silence) starts as soon as that much silence is seen, while VAD still
waits for ``stop_ms``. If speech resumes, that speculative decode is dropped;
if not, the final is usually ready when speech_stopped is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context

from services.stt.buffer import SampleBuffer
from services.stt.engine import DecodeResult
from services.stt.errors import InvalidArgument, SttError
from services.stt.events import OrderedEvents
from services.stt.scheduler import DecodeKind, DecodeScheduler
from services.stt.vad import SAMPLE_RATE, VadTracker, VadTransition, WindowedVad, ms_to_samples
from services.stt.validation import StreamConfig
from voxmesh.audio import AudioFormatError, StreamResampler, pcm16_to_float
from voxmesh.v1 import audio_pb2, stt_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer("voxmesh.stt")

PREROLL_MS = 300
"""Audio kept before the first speech window: VAD fires a little after the onset."""
_KEEP_IDLE = ms_to_samples(1000)  # kept between utterances: pre-roll plus a forming speech run
_TRIM_STEP = ms_to_samples(5000)  # trim in steps so the copy is rare


def offset_ms(sample: int) -> int:
    """16 kHz sample index to ms from the start of the stream."""
    return sample * 1000 // SAMPLE_RATE


@dataclass
class _Speculation:
    """A final decode started during the trailing silence, valid while no speech follows."""

    speech_end: int
    task: asyncio.Task[DecodeResult | None]


@dataclass
class _Utterance:
    id: int
    speech_start: int
    audio_start: int
    next_partial_at: int
    last_partial: str = ""
    stopped: bool = False
    speculation: _Speculation | None = None


class StreamRecognizer:
    """Recognises one stream: :meth:`push_audio`, :meth:`end_input`, ``async for`` :attr:`events`.

    :meth:`aclose` must be called when the stream ends, however it ends.
    """

    def __init__(
        self,
        config: StreamConfig,
        scheduler: DecodeScheduler,
        vad: WindowedVad,
        trace_context: Context | None = None,
    ) -> None:
        self._cfg = config
        self._scheduler = scheduler
        self._vad = vad
        self._trace_context = trace_context
        self._tracker = VadTracker(config.vad)
        self._resampler = StreamResampler(config.audio.sample_rate, SAMPLE_RATE)
        self._buffer = SampleBuffer()
        self.events = OrderedEvents()
        """The responses to send, in order."""
        self._utterance: _Utterance | None = None
        self._next_id = 1
        self._partial_task: asyncio.Task[None] | None = None
        self._scoring: asyncio.Future[tuple[np.ndarray, list[float]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finishing: set[asyncio.Task[None]] = set()
        self._pad = ms_to_samples(config.final_pad_ms)
        self._min_speech = ms_to_samples(config.vad.min_speech_ms)
        self._interval = ms_to_samples(config.partial_interval_ms)

    # -- input -----------------------------------------------------------------------------

    async def push_audio(self, data: bytes) -> None:
        """Add PCM16 audio in the configured format; raises InvalidArgument for a torn frame."""
        try:
            samples, probs = await self._score_in_thread(data, last=False)
        except AudioFormatError as error:
            raise InvalidArgument(str(error)) from None
        self._advance(samples, probs)

    async def end_input(self) -> None:
        """Finish any open utterance, wait for its final, then end :attr:`events`."""
        samples, probs = await self._score_in_thread(b"", last=True)
        self._advance(samples, probs)
        if self._tracker.stop_now() and self._utterance is not None:
            self._stop_utterance(decided_at=self._buffer.end)
        if self._finishing:
            await asyncio.wait(self._finishing)
        self.events.end()

    def fail(self, error: SttError) -> None:
        """End :attr:`events` with ``error``."""
        self.events.fail(error)

    async def aclose(self) -> None:
        """Cancel outstanding decodes and wait until the VAD is no longer in use.

        Decodes already running finish in their threads, unobserved.
        """
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._scoring is not None:
            await asyncio.wait([self._scoring])

    async def _score_in_thread(self, data: bytes, last: bool) -> tuple[np.ndarray, list[float]]:
        # Shielded and remembered, so aclose() can wait for the thread to let go of the VAD.
        self._scoring = asyncio.ensure_future(asyncio.to_thread(self._score, data, last))
        return await asyncio.shield(self._scoring)

    def _score(self, data: bytes, last: bool) -> tuple[np.ndarray, list[float]]:
        """Decode, downmix, resample and VAD-score one chunk (runs in a worker thread)."""
        mono = pcm16_to_float(data, self._cfg.audio.channels)
        samples = self._resampler.process(mono, last=last)
        return samples, self._vad.process(samples)

    # -- state machine ---------------------------------------------------------------------

    def _advance(self, samples: np.ndarray, probs: list[float]) -> None:
        self._buffer.append(samples)
        tracker = self._tracker
        for prob in probs:
            transition = tracker.update(prob)
            if transition is VadTransition.STARTED:
                self._start_utterance()
            elif transition is VadTransition.STOPPED:
                self._stop_utterance(decided_at=tracker.position)
            elif tracker.speaking:
                self._while_speaking()
        keep_from = tracker.position - _KEEP_IDLE
        if self._utterance is None and keep_from - self._buffer.start > _TRIM_STEP:
            self._buffer.discard_before(keep_from)

    def _start_utterance(self) -> None:
        start = self._tracker.speech_start
        utterance = _Utterance(
            id=self._next_id,
            speech_start=start,
            audio_start=max(self._buffer.start, start - ms_to_samples(PREROLL_MS)),
            next_partial_at=start + self._interval,
        )
        self._next_id += 1
        self._utterance = utterance
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            speech_started=stt_pb2.SpeechStarted(
                utterance_id=utterance.id, offset_ms=offset_ms(start))))

    def _while_speaking(self) -> None:
        utterance, tracker = self._utterance, self._tracker
        assert utterance is not None
        speculation = utterance.speculation
        if tracker.silence_samples == 0:
            if speculation is not None and speculation.speech_end != tracker.speech_end:
                speculation.task.cancel()  # speech resumed: that audio is not the whole utterance
                utterance.speculation = None
            if self._cfg.enable_partials and tracker.position >= utterance.next_partial_at:
                utterance.next_partial_at = tracker.position + self._interval
                if self._partial_task is None or self._partial_task.done():
                    self._start_partial(utterance)
        elif (
            self._cfg.speculative_final
            and speculation is None
            and tracker.silence_samples >= self._pad
            and tracker.speech_end - utterance.speech_start >= self._min_speech
        ):
            utterance.speculation = _Speculation(
                tracker.speech_end, self._start_final_decode(utterance, tracker.speech_end, True)
            )

    def _stop_utterance(self, decided_at: int) -> None:
        utterance = self._utterance
        assert utterance is not None
        self._utterance = None
        utterance.stopped = True
        end = self._tracker.speech_end
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            speech_stopped=stt_pb2.SpeechStopped(
                utterance_id=utterance.id, offset_ms=offset_ms(end))))
        speculation = utterance.speculation
        if end - utterance.speech_start < self._min_speech:
            if speculation is not None:
                speculation.task.cancel()
            self.events.close(utterance.id)
            return
        if speculation is not None and speculation.speech_end == end:
            decode = speculation.task
        else:
            if speculation is not None:
                speculation.task.cancel()
            decode = self._start_final_decode(utterance, end, False)
        finish = self._spawn(self._finish(utterance, end, decided_at, decode))
        self._finishing.add(finish)
        finish.add_done_callback(self._finishing.discard)

    # -- decodes ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a dropped speculative decode may fail unobserved; that is fine

    def _start_partial(self, utterance: _Utterance) -> None:
        end = self._buffer.end
        audio = self._buffer.slice(utterance.audio_start, end)
        self._partial_task = self._spawn(self._partial(utterance, audio, end))

    async def _partial(self, utterance: _Utterance, audio: np.ndarray, end: int) -> None:
        try:
            result = await self._scheduler.decode(audio, DecodeKind.PARTIAL, self._cfg.language)
        except Exception:  # a partial is optional; the final will report a real failure
            log.exception("partial decode failed")
            return
        if result is None or not result.text or utterance.stopped:
            return  # no free slot, nothing heard yet, or overtaken by the end of speech
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            partial=stt_pb2.Transcript(
                utterance_id=utterance.id,
                text=result.text,
                start_offset_ms=offset_ms(utterance.speech_start),
                end_offset_ms=offset_ms(end),
                is_stable=result.text == utterance.last_partial,
                decode_ms=result.decode_ms,
            )))
        utterance.last_partial = result.text

    def _start_final_decode(
        self, utterance: _Utterance, speech_end: int, speculative: bool
    ) -> asyncio.Task[DecodeResult | None]:
        # Copy the audio now: the buffer moves on while the decode waits for a slot.
        audio = self._buffer.slice(utterance.audio_start, speech_end + self._pad)
        return self._spawn(self._decode_final(utterance.id, audio, speculative))

    async def _decode_final(
        self, utterance_id: int, audio: np.ndarray, speculative: bool
    ) -> DecodeResult | None:
        span = tracer.start_span("stt.decode", context=self._trace_context, attributes={
            "utterance_id": utterance_id,
            "audio_ms": offset_ms(len(audio)),
            "speculative": speculative,
        })
        try:
            result = await self._scheduler.decode(audio, DecodeKind.FINAL, self._cfg.language)
            if result is not None:
                span.set_attribute("decode_ms", result.decode_ms)
            return result
        except asyncio.CancelledError:
            span.set_attribute("cancelled", True)
            raise
        finally:
            span.end()

    async def _finish(
        self,
        utterance: _Utterance,
        speech_end: int,
        decided_at: int,
        decode: asyncio.Task[DecodeResult | None],
    ) -> None:
        try:
            result = await decode
        except SttError as error:
            self.fail(error)
            return
        except Exception:
            log.exception("final decode failed", extra={"utterance_id": utterance.id})
            self.fail(SttError("final decode failed"))
            return
        if result is None or not result.text:
            self.events.close(utterance.id)
            return
        start_ms, end_ms = offset_ms(utterance.speech_start), offset_ms(speech_end)
        base_ms = offset_ms(utterance.audio_start)
        words = []
        for word in result.words:
            # Whisper's first word often starts at 0 s, which is the pre-roll: clamp to speech.
            w_start = min(max(base_ms + round(word.start_s * 1000), start_ms), end_ms)
            w_end = min(max(base_ms + round(word.end_s * 1000), w_start), end_ms)
            words.append(audio_pb2.WordTiming(word=word.text, start_ms=w_start, end_ms=w_end))
        log.info("final", extra={"utterance_id": utterance.id, "audio_ms": result.audio_ms,
                                 "decode_ms": result.decode_ms})
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            final=stt_pb2.Transcript(
                utterance_id=utterance.id,
                text=result.text,
                start_offset_ms=start_ms,
                end_offset_ms=end_ms,
                is_stable=True,
                words=words,
                decode_ms=result.decode_ms,
            )))
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            end_of_turn=stt_pb2.EndOfTurn(utterance_id=utterance.id,
                                          offset_ms=offset_ms(decided_at))))
        self.events.close(utterance.id)
