"""The agent's replies: starting one for a user turn, voicing it through TTS, reporting
its latency, and ending it (done, failed, interrupted).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.orchestrator import metrics
from services.orchestrator.audit import stream_key
from services.orchestrator.downstream import StreamWriter
from services.orchestrator.heard import SpokenSegment
from services.orchestrator.session_core import SessionCore, new_turn_id
from services.orchestrator.state import State
from services.orchestrator.turn import Turn, now_ms
from voxmesh.telemetry import grpc_metadata_with_context
from voxmesh.v1 import audio_pb2, dialogue_pb2, tts_pb2
from voxmesh.v1 import orchestrator_pb2 as pb

tracer = trace.get_tracer("voxmesh.orchestrator")

APOLOGY = "Sorry, I lost my train of thought for a moment. Could you say that again?"
"""Spoken when the dialogue service fails a turn, so the user is never left in silence."""


class Replies(SessionCore):
    """Starts, voices and ends the agent's replies."""

    async def _on_user_text(self, text: str, speech_end_ms: float | None, stt_ms: float,
                            speculative: bool = False) -> Turn | None:
        """Start the reply to a user turn; ``speculative``: an eager, unconfirmed one."""
        if not text:
            self.error("invalid_argument", "input_text.text is empty")
            return None
        if self.turn is not None and not self.turn.finished:
            await self._interrupt(self.turn, reason="new_turn")
        turn_id = self.next_turn_id
        if not speculative:  # an eager turn takes its id for good when committed
            self.next_turn_id = new_turn_id()
        span = tracer.start_span("turn", context=otel_context.Context(),
                                 attributes={"voxmesh.session_id": self.session_id,
                                             "voxmesh.turn_id": turn_id,
                                             "voxmesh.eager": speculative,
                                             "voxmesh.audit_stream": stream_key(
                                                 self.session_id)})
        turn = Turn(turn_id, text, self.output_rate, span, speech_end_ms=speech_end_ms,
                    stt_ms=stt_ms, speculative=speculative)
        if speech_end_ms is not None and not speculative:
            self._trace_stt(turn)
        self.turns[turn_id] = turn
        if len(self.turns) > 32:  # playback reports only matter for recent turns
            self.turns.pop(next(iter(self.turns)))
        if speculative:
            self.record("turn.eager_start", turn_id, text=text)
        else:
            self.turn = turn
            if speech_end_ms is None:
                self.send(transcript=pb.TranscriptEvent(role=pb.ROLE_USER, text=text,
                                                        is_final=True, turn_id=turn_id))
            self.record("turn.start", turn_id, text=text, typed=speech_end_ms is None)
            self.state.to(State.THINKING, turn_id)
        turn_ctx = trace.set_span_in_context(span)
        token = otel_context.attach(turn_ctx)
        try:
            turn.llm_span = tracer.start_span("llm", context=turn_ctx)
            with trace.use_span(turn.llm_span, end_on_exit=False):
                carrier = dict(grpc_metadata_with_context())
            turn.tts_span = tracer.start_span("tts", context=turn_ctx)
            with trace.use_span(turn.tts_span, end_on_exit=False):
                tts_metadata = grpc_metadata_with_context()
        finally:
            otel_context.detach(token)
        # The TTS stream opens first, so the first text delta goes straight to synthesis.
        turn.tts_metadata = tts_metadata
        await self._open_tts(turn)
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(user_turn=dialogue_pb2.UserTurn(
            turn_id=turn_id, text=text, trace_context=carrier, speculative=speculative)))
        turn.llm_sent_ms = now_ms()
        if not self.llm_up and not speculative:  # reconnecting: say so rather than wait
            self._turn_error(turn, "llm_unavailable", "the dialogue service is unavailable")
            await self._apologise(turn)
            return turn
        self._spawn(self._first_token_deadline(turn), "llm-deadline")
        if turn.cancelled:  # interrupted while being sent: that cancel may have gone first
            await self.llm.write(dialogue_pb2.ConverseRequest(cancel=dialogue_pb2.CancelTurn(
                turn_id=turn_id, discard=speculative)))
        return turn

    async def _open_tts(self, turn: Turn) -> None:
        """(Re)open the turn's synthesis stream with the session's current voice."""
        if turn.tts is not None:  # a handoff changed the voice before any text was spoken
            turn.tts.call.cancel()
            if turn.tts_task is not None:
                turn.tts_task.cancel()
        tts_call = self.down.tts.StreamingSynthesize(metadata=turn.tts_metadata)
        turn.tts = StreamWriter(tts_call)
        await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(config=tts_pb2.SynthesisConfig(
            voice=self.voice, speed=self.speed, sample_rate_hertz=self.output_rate,
            session_id=self.session_id)))
        turn.tts_task = self._spawn(self._read_tts(turn), "tts")

    async def _read_tts(self, turn: Turn) -> None:
        assert turn.tts is not None
        engine = ""
        try:
            async for event in turn.tts.call:
                if turn.cancelled:
                    return
                kind = event.WhichOneof("event")
                if kind == "segment":
                    seg = event.segment
                    turn.segments.append(SpokenSegment(seg.text, seg.sample_offset,
                                                       seg.sample_count))
                    self.record("tts.segment", turn.turn_id, component="tts", text=seg.text,
                                synthesis_ms=seg.synthesis_ms, samples=seg.sample_count)
                elif kind == "audio":
                    if turn.first_audio_ms is None and not turn.speculative:
                        self._on_first_audio(turn)
                    turn.samples_sent += len(event.audio.audio) // 2
                    self._emit(turn, audio=pb.ResponseAudio(turn_id=turn.turn_id,
                                                            audio=event.audio.audio))
                elif kind == "done":
                    engine = event.done.engine
                    break
        except grpc.aio.AioRpcError as exc:
            if turn.cancelled or exc.code() == grpc.StatusCode.CANCELLED:
                return
            metrics.DOWNSTREAM_ERRORS.labels("tts").inc()
            self._turn_error(turn, "tts_failed", f"speech synthesis failed: {exc.details()}")
            # The text reply still reaches the client; the turn ends when the LLM is done.
            turn.tts_failed = True
            if turn.llm_done:
                self._end_turn(turn, "failed", turn.reply_text)
            return
        if turn.cancelled or turn.finished:
            return
        if turn.tts_span is not None:
            turn.tts_span.set_attribute("voxmesh.engine", engine)
        status = ("completed" if turn.samples_sent and turn.reply_text and not turn.apologised
                  else "failed")
        self._end_turn(turn, status, turn.reply_text)

    def _emit(self, turn: Turn, **event: Any) -> None:
        """Send one event of a turn's output; an unconfirmed turn keeps it for later."""
        if turn.speculative:
            turn.held.append(event)
        else:
            self.send(**event)

    def _on_first_audio(self, turn: Turn) -> None:
        turn.first_audio_ms = now_ms()
        if turn.proactive:
            self.state.to(State.SPEAKING, turn.turn_id)
            return
        first_delta = turn.first_delta_ms or turn.first_audio_ms
        # An eager turn's stages count from its commit: what came before cost the user nothing.
        asked = max(turn.llm_sent_ms, turn.committed_ms or 0.0)
        first_delta = max(first_delta, asked)
        stt_ms, llm_ms = turn.stt_ms, first_delta - asked
        tts_ms = turn.first_audio_ms - first_delta
        total_ms = turn.first_audio_ms - turn.origin_ms
        self.state.to(State.SPEAKING, turn.turn_id)
        self.send(latency=pb.LatencyReport(
            turn_id=turn.turn_id, stt_ms=round(stt_ms), llm_ms=round(llm_ms),
            tts_ms=round(tts_ms), total_ms=round(total_ms)))
        self.record("latency", turn.turn_id, stt_ms=round(stt_ms, 1), llm_ms=round(llm_ms, 1),
                    tts_ms=round(tts_ms, 1), total_ms=round(total_ms, 1))
        for stage, ms in (("stt", stt_ms), ("llm", llm_ms), ("tts", tts_ms), ("total", total_ms)):
            if stage != "stt" or turn.speech_end_ms is not None:
                metrics.STAGE_LATENCY.labels(stage).observe(ms / 1000.0)

    @staticmethod
    def _trace_stt(turn: Turn) -> None:
        """The STT stage (end of speech to final transcript), on the turn's trace."""
        end_ns = time.time_ns()
        stt_span = tracer.start_span("stt", context=trace.set_span_in_context(turn.span),
                                     start_time=end_ns - int(turn.stt_ms * 1e6))
        stt_span.set_attribute("voxmesh.stt_ms", turn.stt_ms)
        stt_span.end(end_time=end_ns)

    def _turn_error(self, turn: Turn, code: str, message: str) -> None:
        """A non-fatal error of a turn; an unconfirmed turn reports it if committed."""
        if turn.speculative:
            turn.held.append({"error": pb.SessionError(code=code, message=message)})
            self.record("error", turn.turn_id, code=code, message=message, eager=True)
            return
        self.error(code, message, turn.turn_id)

    async def _apologise(self, turn: Turn) -> None:
        """End a reply the dialogue service cannot finish with a spoken apology."""
        turn.llm_done = turn.apologised = True
        text = (" " if turn.reply_parts else "") + APOLOGY
        turn.reply_parts.append(text)
        self._emit(turn, response_text=pb.ResponseText(turn_id=turn.turn_id, delta=text))
        self.record("turn.apology", turn.turn_id, text=APOLOGY)
        if turn.tts is not None:
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(text=text))
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(
                end_of_input=audio_pb2.EndOfInput()))

    async def _first_token_deadline(self, turn: Turn) -> None:
        """A reply whose first words do not come in time is given up, with an apology."""
        await asyncio.sleep(self.policy.llm_first_token_timeout_s)
        if turn.finished or turn.llm_done or turn.first_delta_ms is not None:
            return
        metrics.DOWNSTREAM_ERRORS.labels("llm").inc()
        self._turn_error(turn, "llm_timeout", "the dialogue service did not answer within "
                         f"{self.policy.llm_first_token_timeout_s:g} s")
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(
            cancel=dialogue_pb2.CancelTurn(turn_id=turn.turn_id)))
        await self._apologise(turn)

    async def _interrupt(self, turn: Turn, reason: str) -> None:
        """Stop a reply now: no further audio, cancel LLM and TTS, keep only what was heard."""
        if turn.finished:
            return
        turn.cancelled = turn.finished = True
        self.send(playback_stop=pb.PlaybackStop(turn_id=turn.turn_id))
        if self.state.state in (State.THINKING, State.SPEAKING):
            self.state.to(State.INTERRUPTED, turn.turn_id)
        metrics.INTERRUPTIONS.inc()
        if turn.tts is not None:
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(cancel=tts_pb2.Cancel()))
            turn.tts.call.cancel()
        assert self.llm is not None
        if not turn.llm_done:
            await self.llm.write(dialogue_pb2.ConverseRequest(
                cancel=dialogue_pb2.CancelTurn(turn_id=turn.turn_id)))
        heard = await self._keep_heard(turn, reason)
        self._end_turn(turn, "interrupted", heard)

    async def _keep_heard(self, turn: Turn, reason: str, after_done: bool = False) -> str:
        """Tell the dialogue what the user heard of a cut-off reply; returns that text."""
        heard = turn.heard(now_ms())
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(heard=dialogue_pb2.HeardReport(
            turn_id=turn.turn_id, heard_text=heard, is_complete=False)))
        self.record("turn.interrupted", turn.turn_id, reason=reason, heard_text=heard,
                    generated_text=turn.reply_text, played_ms=turn.played_ms,
                    sent_ms=turn.samples_sent * 1000 // self.output_rate, after_done=after_done)
        return heard

    def _end_turn(self, turn: Turn, status: str, assistant_text: str) -> None:
        if turn.speculative:  # reported when (if) the turn is committed
            turn.held_end = status
            return
        turn.finished = True
        # The final assistant line first: a client may stop reading at response.done.
        if assistant_text:
            self.send(transcript=pb.TranscriptEvent(role=pb.ROLE_ASSISTANT, text=assistant_text,
                                                    is_final=True, turn_id=turn.turn_id))
        self.send(response_done=pb.ResponseDone(turn_id=turn.turn_id, status=status))
        self.record("response.done", turn.turn_id, status=status, text=turn.reply_text,
                    audio_ms=turn.samples_sent * 1000 // self.output_rate)
        metrics.TURNS.labels(status).inc()
        for span in (turn.llm_span, turn.tts_span, turn.span):
            if span is not None and span.is_recording():
                span.set_attribute("voxmesh.status", status)
                span.end()
        if self.state.state is not State.IDLE:
            self.state.to(State.LISTENING, turn.turn_id)
            if self.notifications:
                self._spawn(self._maybe_notify(), "notify")
