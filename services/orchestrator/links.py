"""The session's streams to the recognizer and the dialogue service: opening them,
reading their events, and reopening them with backoff when a service goes away.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import grpc

from services.orchestrator import metrics
from services.orchestrator.downstream import StreamWriter
from services.orchestrator.notifications import Notifications
from services.orchestrator.turn import now_ms
from voxmesh.telemetry import grpc_metadata_with_context
from voxmesh.v1 import audio_pb2, dialogue_pb2, stt_pb2, tts_pb2
from voxmesh.v1 import orchestrator_pb2 as pb

log = logging.getLogger(__name__)

RECONNECT_MAX_DELAY_S = 5.0
_ENDS_SENTENCE = re.compile(r"[.!?][\"')\]]*\s+$")
"""Backoff ceiling while a downstream service is away."""


def handoff_audit(handoff: dialogue_pb2.Handoff) -> dict[str, Any]:
    """The audit entry's data for a handoff: who, to whom, and how routing decided it."""
    method = dialogue_pb2.RouteMethod.Name(handoff.method).removeprefix("ROUTE_METHOD_")
    return {"from_agent": handoff.from_agent, "to_agent": handoff.to_agent,
            "voice": handoff.voice, "reason": handoff.reason, "intent": handoff.intent,
            "confidence": round(handoff.confidence, 3), "method": method.lower()}


class NotReady(Exception):
    """The dialogue service answered the config with something other than ready."""


class DownstreamLinks(Notifications):
    """Keeps the STT and dialogue streams open and hands their events on."""

    async def _open_llm(self) -> dialogue_pb2.ConversationReady:
        """Open the session's Converse stream; the service restores its history by id.

        Raises:
            grpc.aio.AioRpcError: the service refused or is unreachable.
            NotReady: it answered something other than ``ready``.
        """
        call = self.down.llm.Converse(metadata=grpc_metadata_with_context())
        writer: StreamWriter[dialogue_pb2.ConverseRequest] = StreamWriter(call)
        await writer.write(dialogue_pb2.ConverseRequest(config=dialogue_pb2.DialogueConfig(
            session_id=self.session_id, agent=self.agent, variables=self.variables,
            user_id=self.user_id, resume_token=self.resume_token)))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("event") != "ready":
            call.cancel()
            raise NotReady("dialogue service did not confirm the agent")
        self.llm = writer
        self.agent = first.ready.agent  # a handoff restored from memory sticks
        self.voice, self.speed = first.ready.voice, first.ready.speed
        return first.ready

    async def _open_stt(self) -> None:
        """Open the session's recognition stream (offsets count from here)."""
        self.stt_base_ms = self.audio_ms_in
        self.stt = StreamWriter(self.down.stt.StreamingRecognize(
            metadata=grpc_metadata_with_context()))
        await self.stt.write(stt_pb2.StreamingRecognizeRequest(config=stt_pb2.RecognitionConfig(
            audio_format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=self.input_rate, channel_count=1),
            language_code="en", enable_partial_results=True, session_id=self.session_id)))

    async def _reconnect(self, service: str, open_stream: Any) -> bool:
        """Reopen a lost stream with exponential backoff; False when the session ended."""
        delay, attempts = 0.2, 0
        while not self.closing:
            await asyncio.sleep(delay)
            attempts += 1
            try:
                await asyncio.wait_for(open_stream(), timeout=5.0)
            except (grpc.aio.AioRpcError, TimeoutError, NotReady):
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
                continue
            self.record(f"{service}.reconnected", attempts=attempts)
            log.info("%s stream reopened after %d attempt(s)", service, attempts)
            return True
        return False

    async def _read_stt(self) -> None:
        while True:
            assert self.stt is not None
            code = grpc.StatusCode.UNAVAILABLE
            try:
                async for event in self.stt.call:
                    await self._on_stt_event(event)
                detail = "the recognition stream ended"
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED:
                    return
                code, detail = exc.code(), f"{exc.code().name}: {exc.details()}"
            if self.closing:
                return
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
                # The client's audio was refused (or the service is full): retrying the
                # same stream cannot help; the client hears exactly why.
                metrics.DOWNSTREAM_ERRORS.labels("stt").inc()
                self._fatal(code, f"speech recognition failed: {detail}")
                return
            # What was being said is lost; the session listens again once STT is back.
            metrics.DOWNSTREAM_ERRORS.labels("stt").inc()
            self.stt_up = False
            self.pending_user_text.clear()
            self.partial_text, self.partial_stable, self.user_speaking = "", False, False
            self.error("stt_unavailable", f"speech recognition lost ({detail}); reconnecting")
            if not await self._reconnect("stt", self._open_stt):
                return
            self.stt_up = True

    async def _read_llm(self) -> None:
        while True:
            assert self.llm is not None
            try:
                # read() rather than async-for: _open_llm already read `ready` from this
                # call, and grpc.aio does not allow mixing the two.
                while (event := await self.llm.call.read()) is not grpc.aio.EOF:
                    await self._on_llm_event(event)
                detail = "the dialogue stream ended"
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED:
                    return
                detail = f"{exc.code().name}: {exc.details()}"
            if self.closing:
                return
            metrics.DOWNSTREAM_ERRORS.labels("llm").inc()
            self.llm_up = False
            self.error("llm_unavailable", f"dialogue service lost ({detail}); reconnecting")
            if self.eager is not None:
                await self._discard(self.eager, "llm_lost")
            if self.turn is not None and not self.turn.finished and not self.turn.llm_done:
                await self._apologise(self.turn)
            if not await self._reconnect("llm", self._open_llm):
                return
            self.llm_up = True

    async def _on_llm_event(self, event: dialogue_pb2.ConverseResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "delta":
            turn = self.turns.get(event.delta.turn_id)
            if turn is None or turn.finished or not event.delta.delta:
                return
            if turn.first_delta_ms is None:
                turn.first_delta_ms = now_ms()
            turn.reply_parts.append(event.delta.delta)
            self._emit(turn, response_text=pb.ResponseText(turn_id=turn.turn_id,
                                                           delta=event.delta.delta))
            assert turn.tts is not None
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(text=event.delta.delta))
            if _ENDS_SENTENCE.search(event.delta.delta):
                # The dialogue service releases whole checked sentences: nothing more of
                # this one will come, so the TTS need not wait for the next word to be
                # sure the period ends it.
                await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(flush=tts_pb2.Flush()))
        elif kind == "notification":
            self._queue_notification(event.notification)
            await self._maybe_notify()
        elif kind == "retrieval":
            retrieval = event.retrieval
            self.record("retrieval", retrieval.turn_id, component="llm",
                        knowledge_base=retrieval.knowledge_base,
                        retrieval_ms=round(retrieval.retrieval_ms, 1),
                        citations=[{"source": c.source, "score": round(c.score, 3)}
                                   for c in retrieval.citations])
        elif kind == "handoff":
            handoff = event.handoff
            changed = pb.AgentChanged(turn_id=handoff.turn_id, from_agent=handoff.from_agent,
                                      to_agent=handoff.to_agent, reason=handoff.reason)
            handed = self.turns.get(handoff.turn_id)
            if handed is not None:
                self._emit(handed, agent_changed=changed)
            else:
                self.send(agent_changed=changed)
            self.voice, self.speed = handoff.voice, handoff.speed
            self.agent = handoff.to_agent
            self.record("handoff", handoff.turn_id, component="llm", **handoff_audit(handoff))
            turn = self.turns.get(handoff.turn_id)
            # The handoff precedes the turn's first text: speak the reply in the new voice.
            if turn is not None and not turn.finished and turn.tts is not None:
                await self._open_tts(turn)
        elif kind == "tool":
            tool = event.tool
            self.record("tool", tool.turn_id, component="llm", call_id=tool.call_id,
                        name=tool.name, arguments=tool.arguments_json,
                        phase=dialogue_pb2.ToolPhase.Name(tool.phase), result=tool.result_json,
                        refusal=tool.refusal_reason)
        elif kind == "done":
            done = event.done
            turn = self.turns.get(done.turn_id)
            status = dialogue_pb2.TurnStatus.Name(done.status)
            self.record("llm.done", done.turn_id, component="llm", status=status, text=done.text,
                        first_token_ms=done.first_token_ms, error=done.error_message)
            if turn is None:
                return
            turn.llm_done = True
            if turn.llm_span is not None:
                turn.llm_span.set_attribute("voxmesh.first_token_ms", done.first_token_ms)
                turn.llm_span.end()
            if turn.finished:
                return
            if turn.tts_failed:
                self._end_turn(turn, "failed", turn.reply_text)
                return
            if done.status == dialogue_pb2.TURN_STATUS_FAILED:
                metrics.DOWNSTREAM_ERRORS.labels("llm").inc()
                self._turn_error(turn, "llm_failed", done.error_message or "the reply failed")
            assert turn.tts is not None
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(
                end_of_input=audio_pb2.EndOfInput()))
