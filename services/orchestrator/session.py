"""One user session: the conversation loop between the client, STT, LLM and TTS.

Three tasks feed one outbound queue: the client reader (audio, typed turns,
interrupts, playback reports), the STT event reader and the LLM event reader;
each turn adds a TTS reader. All of them run on the one event loop, so a flag
set by one (``turn.cancelled``) is seen by the others before their next await:
that is what guarantees no audio of an interrupted turn is sent afterwards.

The session's other parts are layered under :class:`Session`: see :mod:`.session_core`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services.orchestrator import metrics
from services.orchestrator.links import DownstreamLinks, NotReady
from services.orchestrator.replies import APOLOGY
from services.orchestrator.session_core import SessionAbort, TurnPolicy
from services.orchestrator.state import State
from services.orchestrator.turn import now_ms
from voxmesh.audio import SUPPORTED_SAMPLE_RATES
from voxmesh.logs import session_id_var
from voxmesh.ownership import OwnershipUnavailable, Principal, Verdict, new_resume_token
from voxmesh.v1 import orchestrator_pb2 as pb
from voxmesh.v1 import stt_pb2

__all__ = ["APOLOGY", "OUTPUT_SAMPLE_RATES", "Session", "SessionAbort", "TurnPolicy"]

OUTPUT_SAMPLE_RATES = (16000, 24000, 48000)
_END = object()  # closes the outbound queue


class Session(DownstreamLinks):
    """Runs one Orchestrator.Session stream."""

    async def run(self, requests: AsyncIterator[pb.SessionRequest]) -> AsyncIterator[Any]:
        """Serve the session; yields SessionResponse messages for the client.

        Raises SessionAbort when the session cannot go on.
        """
        first = await anext(requests, None)
        if first is None or first.WhichOneof("request") != "start":
            raise SessionAbort(grpc.StatusCode.INVALID_ARGUMENT,
                               "first request must carry start (SessionStart)")
        await self._start(first.start)
        metrics.ACTIVE_SESSIONS.inc()
        try:
            self._spawn(self._read_client(requests), "client")
            self._spawn(self._read_stt(), "stt")
            self._spawn(self._read_llm(), "llm")
            while True:
                item = await self.out.get()
                if item is _END:
                    break
                if isinstance(item, SessionAbort):
                    raise item
                yield item
        finally:
            metrics.ACTIVE_SESSIONS.dec()
            await self._close()

    async def _start(self, start: pb.SessionStart) -> None:
        self.session_id = start.session_id or uuid.uuid4().hex
        session_id_var.set(self.session_id)
        resumed = bool(start.session_id)
        await self._authorize(start)
        self.input_rate = start.input_sample_rate_hertz or 16000
        self.output_rate = start.output_sample_rate_hertz or 24000
        self.record("session.start", agent=start.agent, input_rate=self.input_rate,
                    output_rate=self.output_rate, resumed=resumed)
        if self.input_rate not in SUPPORTED_SAMPLE_RATES:
            raise self._abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"start.input_sample_rate_hertz: unsupported rate {self.input_rate}"
                              f" Hz (supported: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))})")
        if self.output_rate not in OUTPUT_SAMPLE_RATES:
            raise self._abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"start.output_sample_rate_hertz: unsupported rate {self.output_rate}"
                              f" Hz (supported: {', '.join(map(str, OUTPUT_SAMPLE_RATES))})")
        self.agent, self.variables = start.agent, dict(start.variables)
        self.user_id = start.user_id
        try:
            ready = await self._open_llm()
        except grpc.aio.AioRpcError as exc:
            raise self._abort(exc.code(), f"dialogue service: {exc.details()}") from exc
        except NotReady as exc:
            raise self._abort(grpc.StatusCode.INTERNAL, str(exc)) from exc
        await self._open_stt()
        self.send(started=pb.SessionStarted(session_id=self.session_id, agent=ready.agent,
                                            is_resumed=resumed, resume_token=self.resume_token))
        self.record("session.started", agent=ready.agent, voice=ready.voice, model=ready.model)
        self.state.to(State.LISTENING)

    async def _authorize(self, start: pb.SessionStart) -> None:
        """Spend the token, then create the session or prove the caller owns it.

        Runs before anything is recorded: a refused attempt writes nothing to the
        session's audit log, only to the security log.

        Raises:
            SessionAbort: token reused, unknown session, another caller's session, or
                the ownership store is unreachable.
        """
        principal = Principal(start.user_id, start.resume_token)
        try:
            if start.token_id and not await self.owners.spend_token(
                    start.token_id, start.token_expires_at):
                raise self._refuse(grpc.StatusCode.UNAUTHENTICATED, "token_reused",
                                   "session token already used: each token opens one session;"
                                   " get a new one", principal)
            if not start.session_id:
                self.resume_token = new_resume_token()
                if not await self.owners.create(
                        self.session_id, Principal(start.user_id, self.resume_token)):
                    raise SessionAbort(grpc.StatusCode.ALREADY_EXISTS,
                                       "session id collision: start again")
                return
            verdict = await self.owners.check(self.session_id, principal)
        except OwnershipUnavailable as exc:
            raise SessionAbort(grpc.StatusCode.UNAVAILABLE, f"{exc}: try again",
                               "session_store_unavailable") from None
        if verdict is Verdict.UNKNOWN:
            raise self._refuse(grpc.StatusCode.NOT_FOUND, "unknown_session",
                               f"session_id: no session {self.session_id!r} (never created, "
                               "or expired)", principal)
        if verdict is not Verdict.OWNER:
            raise self._refuse(grpc.StatusCode.PERMISSION_DENIED, "session_forbidden",
                               "session_id: the session belongs to another caller", principal)
        self.resume_token = start.resume_token

    def _refuse(self, code: grpc.StatusCode, reason: str, message: str,
                principal: Principal) -> SessionAbort:
        """Count and log a refused start; the session it named is left alone."""
        metrics.ACCESS_REFUSED.labels(reason).inc()
        self.owners.report(reason, component="orchestrator", target_session=self.session_id,
                           user_id=principal.user_id,
                           presented_resume_token=bool(principal.resume_token))
        self.session_id = ""  # nothing of this attempt may reach that session's audit log
        session_id_var.set("")
        return SessionAbort(code, message, reason)

    async def _close(self) -> None:
        self.closing = True
        if self.eager is not None:
            await self._discard(self.eager, "session_end")
        if self.turn is not None and not self.turn.finished:
            await self._interrupt(self.turn, reason="session_end")
        for writer in (self.stt, self.llm):
            if writer is not None:
                await writer.done_writing()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in (self.stt, self.llm):
            if writer is not None:
                writer.call.cancel()
        if self.state.state is not State.IDLE:
            self.state.to(State.IDLE)
        self.record("session.end")

    async def _read_client(self, requests: AsyncIterator[pb.SessionRequest]) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "audio":
                    await self._on_audio(request.audio)
                    continue
                self.record(f"client.{kind}", component="client",
                            **_client_fields(request, kind))
                if kind == "input_text":
                    if self.eager is not None:
                        await self._discard(self.eager, "typed_input")
                    await self._on_user_text(request.input_text.text.strip(), None, 0.0)
                elif kind == "interrupt":
                    audible = self._audible_turn()
                    if audible is not None:
                        await self._barge_in(audible, "client")
                elif kind == "playback":
                    self._on_playback(request.playback)
                elif kind == "end":
                    break
                elif kind == "start":
                    self.error("invalid_argument", "session already started: start sent twice")
        except grpc.aio.AioRpcError:
            pass  # the client went away; the finally below ends the session
        finally:
            self.out.put_nowait(_END)

    async def _on_audio(self, audio: bytes) -> None:
        if len(audio) % 2:
            self.error("invalid_audio", f"audio: {len(audio)} bytes is not whole PCM16 samples")
            return
        self.audio_ms_in += len(audio) / 2 * 1000.0 / self.input_rate
        self._arrival_audio_ms.append(self.audio_ms_in)
        self._arrival_wall_ms.append(now_ms())
        if len(self._arrival_audio_ms) > 6000:  # keep about two minutes of 20 ms frames
            del self._arrival_audio_ms[:3000], self._arrival_wall_ms[:3000]
        assert self.stt is not None
        await self.stt.write(stt_pb2.StreamingRecognizeRequest(audio=audio))
        if self.talked_over is not None:
            await self._check_long_speech()

    def _on_playback(self, report: pb.PlaybackReport) -> None:
        turn = self.turns.get(report.turn_id)
        if turn is None:
            return
        turn.played_ms = max(turn.played_ms or 0, report.played_ms)
        turn.playback_done = turn.playback_done or report.is_done


def _client_fields(request: pb.SessionRequest, kind: str | None) -> dict[str, Any]:
    """Audit fields of a client event (audio is never logged)."""
    if kind == "input_text":
        return {"text": request.input_text.text}
    if kind == "playback":
        p = request.playback
        return {"played_ms": p.played_ms, "done": p.is_done, "for_turn": p.turn_id}
    return {}
