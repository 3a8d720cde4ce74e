"""One recognition stream: audio in, VAD-delimited utterances, partial and final transcripts out.

Audio is downmixed, resampled to 16 kHz and scored by Silero in a worker
thread; the state machine and scheduling run on the event loop. Every position
is a 16 kHz sample index from the start of the stream, which maps 1:1 to ms of
input audio.

Latency: the final decode of an utterance (the utterance plus ``final_pad_ms`` of
trailing silence) starts as soon as that much silence is seen, while VAD still
waits for ``stop_ms``. If speech resumes, that speculative decode is dropped;
if not, the final is usually ready when speech_stopped is sent. A speculative
decode that finishes before the utterance stops is sent at once as a partial
with ``covers_speech_end``, so the orchestrator can start an eager reply while
the turn decision is still pending.

Turns: a turn is one or more utterances. With the semantic model on, the
Smart Turn model is asked after ``turn_silence_ms`` of silence; "complete" ends
the utterance and the turn at once, "incomplete" lets the utterance end at
``stop_ms`` without an end_of_turn, and the next utterance continues the turn
until the model says "complete" or silence reaches ``max_silence_ms``. The
audio stream waits for the model's answer (tens of ms), so every decision is
made at a fixed point of the input audio whatever the arrival pace.
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

from services.stt import metrics
from services.stt.buffer import SampleBuffer
from services.stt.engine import DecodeResult
from services.stt.errors import InvalidArgument, SttError
from services.stt.events import OrderedEvents
from services.stt.scheduler import DecodeKind, DecodeScheduler
from services.stt.turn import WINDOW_SAMPLES as TURN_WINDOW
from services.stt.turn import SmartTurnModel
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


def agreed_prefix(previous: str, current: str) -> str:
    """The leading words of ``current`` that ``previous`` had too (case and punctuation aside).

    Whisper rewrites the end of a growing utterance (and punctuates it) but rarely its
    beginning, so words two consecutive decodes agree on are unlikely to change.
    """
    agreed: list[str] = []
    for old, new in zip(previous.split(), current.split(), strict=False):
        if old.strip(".,!?;:").lower() != new.strip(".,!?;:").lower():
            break
        agreed.append(new)
    return " ".join(agreed)


def offset_ms(sample: int) -> int:
    """16 kHz sample index to ms from the start of the stream."""
    return sample * 1000 // SAMPLE_RATE


@dataclass
class _Speculation:
    """A final decode started during the trailing silence, valid while no speech follows."""

    speech_end: int
    task: asyncio.Task[DecodeResult | None]


@dataclass(frozen=True)
class _TurnEnd:
    """Why and where a turn ended."""

    decided_at: int
    reason: stt_pb2.TurnEndReason
    probability: float = 0.0


@dataclass
class _Utterance:
    id: int
    speech_start: int
    audio_start: int
    next_partial_at: int
    last_partial: str = ""
    partial_end: int = 0
    """End of the audio behind the latest partial sent: an older decode must not follow it."""
    stopped: bool = False
    speculation: _Speculation | None = None


@dataclass
class _Turn:
    """The user's turn in progress: utterances until the turn is judged over."""

    audio_start: int
    utterances: int = 0
    """Utterances of this turn long enough to be transcribed."""
    checked_speech_end: int = -1
    """The speech end the model was last asked about (once per pause)."""
    probability: float = 0.0
    fate: asyncio.Future[_TurnEnd | None] | None = None
    """Set once the turn's latest utterance stopped: a _TurnEnd, or None if the turn goes on."""
    last_speech_end: int = 0


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
        turn_model: SmartTurnModel | None = None,
    ) -> None:
        self._cfg = config
        self._scheduler = scheduler
        self._vad = vad
        self._turn_model = turn_model if config.turn.semantic else None
        self._turn: _Turn | None = None
        self._turn_silence = ms_to_samples(config.turn.turn_silence_ms)
        self._max_silence = ms_to_samples(config.turn.max_silence_ms)
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
        await self._advance(samples, probs)

    async def end_input(self) -> None:
        """Finish any open utterance and turn, wait for the finals, then end :attr:`events`."""
        samples, probs = await self._score_in_thread(b"", last=True)
        await self._advance(samples, probs)
        probability = self._turn.probability if self._turn is not None else 0.0
        end = _TurnEnd(self._buffer.end, stt_pb2.TURN_END_REASON_END_OF_INPUT, probability)
        if self._tracker.stop_now() and self._utterance is not None:
            self._stop_utterance(end)
        elif self._turn is not None:
            self._end_turn(end)
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

    async def _advance(self, samples: np.ndarray, probs: list[float]) -> None:
        self._buffer.append(samples)
        tracker = self._tracker
        for prob in probs:
            transition = tracker.update(prob)
            if transition is VadTransition.STARTED:
                self._start_utterance()
            elif transition is VadTransition.STOPPED:
                await self._on_vad_stop()
            elif tracker.speaking:
                await self._while_speaking()
            elif self._turn is not None and self._turn.fate is not None:
                self._while_turn_pauses(self._turn)
        keep_from = tracker.position - _KEEP_IDLE
        if self._turn is not None:  # the turn model looks back over the whole turn
            keep_from = min(keep_from, max(self._turn.audio_start, tracker.position - TURN_WINDOW))
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
        turn = self._turn
        if turn is None:
            self._turn = _Turn(audio_start=utterance.audio_start)
        elif turn.fate is not None:
            turn.fate.set_result(None)  # the pause was mid-turn: this utterance continues it
            turn.fate = None
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            speech_started=stt_pb2.SpeechStarted(
                utterance_id=utterance.id, offset_ms=offset_ms(start))))

    async def _while_speaking(self) -> None:
        utterance, tracker = self._utterance, self._tracker
        assert utterance is not None
        self._maybe_speculate(utterance)
        turn = self._turn
        if (
            turn is not None
            and self._turn_model is not None
            and tracker.silence_samples >= self._turn_silence
            and turn.checked_speech_end != tracker.speech_end
        ):
            probability = await self._ask_turn_model(turn)
            if probability is not None and probability >= self._cfg.turn.threshold:
                metrics.TURN_DECISIONS.labels(decision="complete").inc()
                tracker.stop_now()
                self._stop_utterance(_TurnEnd(
                    tracker.position, stt_pb2.TURN_END_REASON_SEMANTIC, probability))
            elif probability is not None:
                metrics.TURN_DECISIONS.labels(decision="incomplete").inc()

    async def _on_vad_stop(self) -> None:
        """Silence reached stop_ms: the utterance ends; does the turn?"""
        tracker, turn = self._tracker, self._turn
        assert turn is not None
        if self._turn_model is None:
            self._stop_utterance(_TurnEnd(
                tracker.position, stt_pb2.TURN_END_REASON_SILENCE))
            return
        if turn.checked_speech_end != tracker.speech_end:  # turn_silence_ms >= stop_ms
            probability = await self._ask_turn_model(turn)
            if probability is not None and probability >= self._cfg.turn.threshold:
                metrics.TURN_DECISIONS.labels(decision="complete").inc()
                self._stop_utterance(_TurnEnd(
                    tracker.position, stt_pb2.TURN_END_REASON_SEMANTIC, probability))
                return
            if probability is not None:
                metrics.TURN_DECISIONS.labels(decision="incomplete").inc()
        self._stop_utterance(None)
        self._while_turn_pauses(turn)  # max_silence_ms may equal stop_ms

    def _while_turn_pauses(self, turn: _Turn) -> None:
        """Silence after an utterance judged incomplete: end the turn at max_silence_ms."""
        if self._tracker.position - turn.last_speech_end >= self._max_silence:
            metrics.TURN_DECISIONS.labels(decision="timeout").inc()
            self._end_turn(_TurnEnd(self._tracker.position,
                                    stt_pb2.TURN_END_REASON_MAX_SILENCE, turn.probability))

    def _end_turn(self, end: _TurnEnd) -> None:
        """End the open turn, whose latest utterance has stopped."""
        turn, self._turn = self._turn, None
        if turn is not None and turn.fate is not None and not turn.fate.done():
            turn.fate.set_result(end)

    async def _ask_turn_model(self, turn: _Turn) -> float | None:
        """P(turn complete) for the turn's audio so far; None if the model failed."""
        assert self._turn_model is not None
        tracker = self._tracker
        turn.checked_speech_end = tracker.speech_end
        audio = self._buffer.slice(max(turn.audio_start, tracker.position - TURN_WINDOW),
                                   tracker.position)
        try:
            probability = await asyncio.to_thread(self._turn_model.predict, audio)
        except Exception:  # the model is an optimisation: fall back to silence, keep the stream
            log.exception("smart turn inference failed")
            return None
        turn.probability = probability
        log.debug("turn model", extra={"probability": round(probability, 3)})
        return probability

    def _maybe_speculate(self, utterance: _Utterance) -> None:
        """Partials while speech goes on; the speculative final once final_pad_ms is silent."""
        tracker = self._tracker
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
            speculation = _Speculation(
                tracker.speech_end, self._start_final_decode(utterance, tracker.speech_end, True)
            )
            utterance.speculation = speculation
            speculation.task.add_done_callback(
                lambda task: self._announce_speculation(utterance, speculation))

    def _stop_utterance(self, turn_end: _TurnEnd | None) -> None:
        """End the open utterance; ``turn_end`` None means the turn may go on."""
        utterance, turn = self._utterance, self._turn
        assert utterance is not None and turn is not None
        self._utterance = None
        utterance.stopped = True
        end = self._tracker.speech_end
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            speech_stopped=stt_pb2.SpeechStopped(
                utterance_id=utterance.id, offset_ms=offset_ms(end))))
        speculation = utterance.speculation
        earlier = turn.utterances  # finals the orchestrator may hold for this turn
        decode: asyncio.Task[DecodeResult | None] | None = None
        if end - utterance.speech_start < self._min_speech:
            if speculation is not None:
                speculation.task.cancel()
        elif speculation is not None and speculation.speech_end == end:
            decode = speculation.task
        else:
            if speculation is not None:
                speculation.task.cancel()
            decode = self._start_final_decode(utterance, end, False)
        if decode is not None:
            turn.utterances += 1
        fate: asyncio.Future[_TurnEnd | None] = asyncio.get_running_loop().create_future()
        turn.fate, turn.last_speech_end = fate, end
        if turn_end is not None:
            self._end_turn(turn_end)
        finish = self._spawn(self._finish(utterance, end, decode, fate, earlier > 0))
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
        if result is None or not result.text or utterance.stopped or end <= utterance.partial_end:
            return  # no free slot, nothing heard yet, or overtaken by a later decode
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            partial=stt_pb2.Transcript(
                utterance_id=utterance.id,
                text=result.text,
                start_offset_ms=offset_ms(utterance.speech_start),
                end_offset_ms=offset_ms(end),
                is_stable=result.text == utterance.last_partial,
                decode_ms=result.decode_ms,
                stable_text=agreed_prefix(utterance.last_partial, result.text),
            )))
        utterance.last_partial, utterance.partial_end = result.text, end

    def _announce_speculation(self, utterance: _Utterance, speculation: _Speculation) -> None:
        """Send a finished speculative final as a partial that covers the speech end.

        The turn decision may still be pending (Smart Turn unsure, or its silence
        not reached yet); a client can start its answer on this text, which
        becomes the final unless speech resumes. Once the utterance has stopped,
        the final itself follows instead.
        """
        task = speculation.task
        if (not self._cfg.enable_partials or task.cancelled() or task.exception() is not None
                or utterance.stopped or utterance.speculation is not speculation):
            return
        result = task.result()
        if result is None or not result.text:
            return
        self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
            partial=stt_pb2.Transcript(
                utterance_id=utterance.id,
                text=result.text,
                start_offset_ms=offset_ms(utterance.speech_start),
                end_offset_ms=offset_ms(speculation.speech_end),
                is_stable=True,
                decode_ms=result.decode_ms,
                stable_text=result.text,
                covers_speech_end=True,
            )))
        utterance.last_partial = result.text
        utterance.partial_end = speculation.speech_end + self._pad

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
        decode: asyncio.Task[DecodeResult | None] | None,
        fate: asyncio.Future[_TurnEnd | None],
        turn_has_earlier: bool,
    ) -> None:
        """Emit the utterance's final (if any), then its end_of_turn once the turn's fate is known.

        The utterance's events stay open until then, so the next utterance's
        events (held back by :class:`OrderedEvents`) come after this end_of_turn.
        """
        try:
            result = await decode if decode is not None else None
        except SttError as error:
            self.fail(error)
            return
        except Exception:
            log.exception("final decode failed", extra={"utterance_id": utterance.id})
            self.fail(SttError("final decode failed"))
            return
        has_final = result is not None and bool(result.text)
        if result is not None and has_final:
            self._emit_final(utterance, speech_end, result)
        turn_end = await fate
        # A turn of nothing but dropped noise has no text: it ends silently.
        if turn_end is not None and (has_final or turn_has_earlier):
            self.events.emit(utterance.id, stt_pb2.StreamingRecognizeResponse(
                end_of_turn=stt_pb2.EndOfTurn(
                    utterance_id=utterance.id,
                    offset_ms=offset_ms(turn_end.decided_at),
                    reason=turn_end.reason,
                    completion_probability=turn_end.probability,
                )))
        self.events.close(utterance.id)

    def _emit_final(self, utterance: _Utterance, speech_end: int, result: DecodeResult) -> None:
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
                stable_text=result.text,
            )))
