"""One user session: the conversation loop between the client, STT, LLM and TTS.

Three tasks feed one outbound queue: the client reader (audio, typed turns,
interrupts, playback reports), the STT event reader and the LLM event reader;
each turn adds a TTS reader. All of them run on the one event loop, so a flag
set by one (``turn.cancelled``) is seen by the others before their next await:
that is what guarantees no audio of an interrupted turn is sent afterwards.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.orchestrator import metrics
from services.orchestrator.audit import AuditLog, stream_key
from services.orchestrator.downstream import Downstream, StreamWriter
from services.orchestrator.heard import SpokenSegment
from services.orchestrator.speech import is_backchannel, same_words
from services.orchestrator.state import State, StateMachine
from services.orchestrator.turn import Turn, now_ms
from voxmesh.audio import SUPPORTED_SAMPLE_RATES
from voxmesh.logs import session_id_var
from voxmesh.telemetry import grpc_metadata_with_context
from voxmesh.v1 import audio_pb2, dialogue_pb2, stt_pb2, tts_pb2
from voxmesh.v1 import orchestrator_pb2 as pb

log = logging.getLogger(__name__)
tracer = trace.get_tracer("voxmesh.orchestrator")

OUTPUT_SAMPLE_RATES = (16000, 24000, 48000)
APOLOGY = "Sorry, I lost my train of thought for a moment. Could you say that again?"
"""Spoken when the dialogue service fails a turn, so the user is never left in silence."""
RECONNECT_MAX_DELAY_S = 5.0
"""Backoff ceiling while a downstream service is away."""
PLAYBACK_SLACK_MS = 500.0
"""How long after its audio was all sent a reply may still be playing at the client
(network and jitter buffer), when the client does not report playback."""
_END = object()  # closes the outbound queue


class SessionAbort(Exception):
    """Ends the session with a gRPC status (the client gets code and message)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _turn_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class TurnPolicy:
    """How the session takes turns (see OrchestratorSettings for the meaning)."""

    eager_turns: bool = True
    barge_in_min_speech_ms: int = 1500
    llm_first_token_timeout_s: float = 15.0


class _NotReady(Exception):
    """The dialogue service answered the config with something other than ready."""


class Session:
    """Runs one Orchestrator.Session stream."""

    def __init__(self, downstream: Downstream, audit: AuditLog,
                 policy: TurnPolicy | None = None) -> None:
        self.down = downstream
        self.audit = audit
        self.policy = policy or TurnPolicy()
        self.session_id = ""
        self.input_rate = 16000
        self.output_rate = 24000
        self.voice = ""
        self.speed = 0.0
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.state = StateMachine(self._on_state_change)
        self.turn: Turn | None = None
        self.next_turn_id = _turn_id()
        self.pending_user_text: list[str] = []
        self.speech_end_ms: float | None = None
        self.final_at_ms: float | None = None
        # (input audio ms received so far, monotonic ms) per chunk: maps STT offsets to wall time.
        self.audio_ms_in = 0.0
        self._arrival_audio_ms: list[float] = []
        self._arrival_wall_ms: list[float] = []
        self.stt: StreamWriter[stt_pb2.StreamingRecognizeRequest] | None = None
        self.llm: StreamWriter[dialogue_pb2.ConverseRequest] | None = None
        self.turns: dict[str, Turn] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.user_speaking = False
        self.partial_text = ""
        self.partial_stable = False
        self.eager: Turn | None = None
        """A reply started on the user's words before their turn was confirmed over."""
        self.talked_over: Turn | None = None
        """The reply the user started speaking over, while it is unclear whether they
        interrupt it or only give feedback ("uh-huh")."""
        self.talked_over_since_ms = 0.0
        """Input audio offset where the speech over the reply started."""
        self.closing = False
        self.agent = ""
        self.variables: dict[str, str] = {}
        self.user_id = ""
        self.llm_up = True
        self.stt_up = True
        self.stt_base_ms = 0.0
        """Input audio already sent when the current STT stream opened (its offsets are
        relative to that stream)."""
        self.notifications: list[dialogue_pb2.Notification] = []
        """Waiting for a safe moment: highest priority first, then in arrival order."""

    # -- plumbing --------------------------------------------------------------------------

    def send(self, **event: Any) -> None:
        """Queue one SessionResponse for the client."""
        self.out.put_nowait(pb.SessionResponse(**event))

    def record(self, type: str, turn_id: str = "", component: str = "orchestrator",
               **data: Any) -> None:
        """Append an event to this session's audit log (never blocks).

        Events of a turn carry its trace id as correlation id, and the turn's spans name
        the audit stream: from a trace to its audit entries and back.
        """
        turn = self.turns.get(turn_id) if turn_id else None
        correlation = ""
        if turn is not None:
            correlation = format(turn.span.get_span_context().trace_id, "032x")
        self.audit.emit(self.session_id, type, component=component, turn_id=turn_id,
                        correlation_id=correlation, **data)

    def error(self, code: str, message: str, turn_id: str = "") -> None:
        """Tell the client about a non-fatal problem and keep it in the audit log."""
        log.warning("%s: %s", code, message)
        self.send(error=pb.SessionError(code=code, message=message))
        self.record("error", turn_id, code=code, message=message)

    def _on_state_change(self, old: State, new: State, turn_id: str) -> None:
        self.send(state=pb.StateChanged(state=new.to_proto(), turn_id=turn_id))
        self.record("state", turn_id, **{"from": old.value, "to": new.value})

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._on_task_done)
        self.tasks.append(task)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        # A bug in one pump must end this session with a clear status, not hang it.
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("session task %s failed", task.get_name(), exc_info=exc)
        self._fatal(grpc.StatusCode.INTERNAL, f"internal error in {task.get_name()}: {exc!r}")

    # -- lifecycle -------------------------------------------------------------------------

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
        except _NotReady as exc:
            raise self._abort(grpc.StatusCode.INTERNAL, str(exc)) from exc
        await self._open_stt()
        self.send(started=pb.SessionStarted(session_id=self.session_id, agent=ready.agent,
                                            is_resumed=resumed))
        self.record("session.started", agent=ready.agent, voice=ready.voice, model=ready.model)
        self.state.to(State.LISTENING)

    async def _open_llm(self) -> dialogue_pb2.ConversationReady:
        """Open the session's Converse stream; the service restores its history by id.

        Raises:
            grpc.aio.AioRpcError: the service refused or is unreachable.
            _NotReady: it answered something other than ``ready``.
        """
        call = self.down.llm.Converse(metadata=grpc_metadata_with_context())
        writer: StreamWriter[dialogue_pb2.ConverseRequest] = StreamWriter(call)
        await writer.write(dialogue_pb2.ConverseRequest(config=dialogue_pb2.DialogueConfig(
            session_id=self.session_id, agent=self.agent, variables=self.variables,
            user_id=self.user_id)))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("event") != "ready":
            call.cancel()
            raise _NotReady("dialogue service did not confirm the agent")
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
            except (grpc.aio.AioRpcError, TimeoutError, _NotReady):
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
                continue
            self.record(f"{service}.reconnected", attempts=attempts)
            log.info("%s stream reopened after %d attempt(s)", service, attempts)
            return True
        return False

    def _abort(self, code: grpc.StatusCode, message: str) -> SessionAbort:
        self.record("session.aborted", code=code.name, message=message)
        return SessionAbort(code, message)

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

    def _fatal(self, code: grpc.StatusCode, message: str) -> None:
        self.out.put_nowait(self._abort(code, message))

    # -- client ----------------------------------------------------------------------------

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

    def _wall_ms_at(self, stt_offset_ms: float) -> float:
        """When the audio at ``stt_offset_ms`` of the current STT stream reached us."""
        i = bisect.bisect_left(self._arrival_audio_ms, stt_offset_ms + self.stt_base_ms)
        if i >= len(self._arrival_wall_ms):
            return now_ms()
        return self._arrival_wall_ms[i]

    def _on_playback(self, report: pb.PlaybackReport) -> None:
        turn = self.turns.get(report.turn_id)
        if turn is None:
            return
        turn.played_ms = max(turn.played_ms or 0, report.played_ms)
        turn.playback_done = turn.playback_done or report.is_done

    # -- speech recognition ----------------------------------------------------------------

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

    async def _on_stt_event(self, event: stt_pb2.StreamingRecognizeResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "speech_started":
            self.user_speaking = True
            self.send(voice_activity=pb.VoiceActivity(
                is_speaking=True, offset_ms=event.speech_started.offset_ms))
            self.record("speech_started", self.next_turn_id, component="stt",
                        offset_ms=event.speech_started.offset_ms)
            if self.eager is not None:  # the user goes on: that reply was premature
                await self._discard(self.eager, "speech_resumed")
            audible = self._audible_turn()
            if audible is not None:
                await self._on_speech_over(audible,
                                           event.speech_started.offset_ms + self.stt_base_ms)
        elif kind == "speech_stopped":
            offset = event.speech_stopped.offset_ms
            self.speech_end_ms = self._wall_ms_at(offset)
            if self.talked_over is not None:  # short speech: its words decide, at the final
                self.talked_over_since_ms = float("inf")
            self.send(voice_activity=pb.VoiceActivity(is_speaking=False, offset_ms=offset))
            self.record("speech_stopped", self.next_turn_id, component="stt", offset_ms=offset)
            # A partial that two decodes agreed on; unstable ones were measured to differ
            # from the final about half the time (bench/voice_to_voice.py).
            if self.partial_stable and self.partial_text:
                await self._maybe_start_eager([*self.pending_user_text, self.partial_text])
        elif kind in ("partial", "final"):
            transcript = getattr(event, kind)
            is_final = kind == "final"
            text = transcript.text.strip()
            if self.talked_over is not None and not is_backchannel(text):
                await self._barge_in(self.talked_over, "barge_in_words")
            if is_final:
                self.partial_text, self.partial_stable = "", False
                if self.talked_over is not None:  # only feedback or noise: keep talking
                    self._ignore_barge_in(self.talked_over, text)
                    return
                self.pending_user_text.append(text)
                self.final_at_ms = now_ms()
                await self._maybe_start_eager(self.pending_user_text)
            else:
                self.partial_text, self.partial_stable = text, transcript.is_stable
            self.send(transcript=pb.TranscriptEvent(
                role=pb.ROLE_USER, text=transcript.text, is_final=is_final,
                turn_id=self.next_turn_id))
            self.record(f"transcript.{kind}", self.next_turn_id, component="stt",
                        text=transcript.text, start_ms=transcript.start_offset_ms,
                        end_ms=transcript.end_offset_ms, decode_ms=transcript.decode_ms)
        elif kind == "end_of_turn":
            text = " ".join(t for t in self.pending_user_text if t)
            self.pending_user_text.clear()
            speech_end = self.speech_end_ms
            stt_ms = (self.final_at_ms - speech_end) if (speech_end and self.final_at_ms) else 0.0
            self.user_speaking = False
            self.record("end_of_turn", self.next_turn_id, component="stt",
                        offset_ms=event.end_of_turn.offset_ms)
            eager, self.eager = self.eager, None
            if eager is not None:
                if text and same_words(eager.user_text, text):
                    await self._commit(eager, stt_ms)
                    return
                await self._discard(eager, "text_changed")
            if text:
                await self._on_user_text(text, speech_end, stt_ms)
            else:
                await self._maybe_notify()

    # -- barge-in and eager turns ----------------------------------------------------------

    def _audible_turn(self) -> Turn | None:
        """The reply the user may be hearing now: one under way, or one whose audio was all
        sent (synthesis runs faster than real time) and is probably still playing."""
        if self.turn is None:
            return None
        turn = self.turn
        if not turn.finished:
            return turn
        if turn.cancelled or turn.playback_done or turn.first_audio_ms is None:
            return None
        audio_ms = turn.samples_sent * 1000 / self.output_rate
        playing_until = turn.first_audio_ms + audio_ms + PLAYBACK_SLACK_MS
        return turn if now_ms() < playing_until else None

    async def _on_speech_over(self, turn: Turn, offset_ms: float) -> None:
        """The user speaks while a reply is under way: interrupt, or wait to know why."""
        thinking = not turn.finished and self.state.state is State.THINKING
        if thinking or self.policy.barge_in_min_speech_ms == 0:
            # Nothing heard yet (the user is still finishing their turn), or no filter.
            metrics.BARGE_INS.labels("interrupted").inc()
            await self._interrupt(turn, reason="barge_in")
            return
        self.talked_over = turn
        self.talked_over_since_ms = offset_ms
        self.record("barge_in.pending", turn.turn_id, offset_ms=offset_ms)

    async def _check_long_speech(self) -> None:
        """Speech over the reply that lasts, even without recognised words, interrupts it.

        Measured in input audio, not wall time, so a loaded machine decides the same."""
        turn = self.talked_over
        if turn is not None and (self.audio_ms_in - self.talked_over_since_ms
                                 >= self.policy.barge_in_min_speech_ms):
            await self._barge_in(turn, "barge_in_long_speech")

    async def _barge_in(self, turn: Turn, reason: str) -> None:
        """The user interrupts ``turn``, whether it is still being sent or only playing."""
        self.talked_over = None
        metrics.BARGE_INS.labels("interrupted").inc()
        if turn.finished:
            await self._cut_playback(turn, reason)
        else:
            await self._interrupt(turn, reason)

    async def _cut_playback(self, turn: Turn, reason: str) -> None:
        """Stop a reply that was all sent but is still playing; keep only what was heard."""
        turn.cancelled = True
        self.send(playback_stop=pb.PlaybackStop(turn_id=turn.turn_id))
        metrics.INTERRUPTIONS.inc()
        await self._keep_heard(turn, reason, after_done=True)

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

    def _ignore_barge_in(self, turn: Turn, text: str) -> None:
        self.talked_over = None
        metrics.BARGE_INS.labels("ignored").inc()
        self.record("barge_in.ignored", turn.turn_id, text=text,
                    reason="noise" if not text else "backchannel")

    async def _maybe_start_eager(self, parts: list[str]) -> None:
        """Start replying to ``parts`` now, unconfirmed, unless a reply is under way."""
        text = " ".join(p for p in parts if p)
        if (not self.policy.eager_turns or not text or not self.llm_up
                or self.talked_over is not None
                or (self.turn is not None and not self.turn.finished)):
            return
        if self.eager is not None:
            if same_words(self.eager.user_text, text):
                return
            await self._discard(self.eager, "text_changed")
        self.eager = await self._on_user_text(text, self.speech_end_ms, 0.0, speculative=True)

    async def _commit(self, turn: Turn, stt_ms: float) -> None:
        """The turn ended with the eager reply's words: send what it held, then go live."""
        turn.speculative = False
        turn.committed_ms = now_ms()
        turn.stt_ms = stt_ms
        self._trace_stt(turn)
        self.next_turn_id = _turn_id()
        self.turn = turn
        metrics.EAGER_TURNS.labels("committed").inc()
        self.record("turn.start", turn.turn_id, text=turn.user_text, typed=False, eager=True,
                    head_start_ms=round(turn.committed_ms - turn.llm_sent_ms, 1))
        self.state.to(State.THINKING, turn.turn_id)
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(
            commit=dialogue_pb2.CommitTurn(turn_id=turn.turn_id)))
        held, turn.held = turn.held, []
        for event in held:
            if "audio" in event and turn.first_audio_ms is None:
                self._on_first_audio(turn)
            self.send(**event)
        if turn.held_end:
            self._end_turn(turn, turn.held_end, turn.reply_text)

    async def _discard(self, turn: Turn, reason: str) -> None:
        """Withdraw an eager reply nobody heard; the dialogue forgets the turn."""
        if self.eager is turn:
            self.eager = None
        turn.cancelled = turn.finished = True
        self.turns.pop(turn.turn_id, None)
        # Late events of the withdrawn generation carry its id: the next attempt needs another.
        self.next_turn_id = _turn_id()
        if turn.tts is not None:
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(cancel=tts_pb2.Cancel()))
            turn.tts.call.cancel()
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(
            cancel=dialogue_pb2.CancelTurn(turn_id=turn.turn_id, discard=True)))
        metrics.EAGER_TURNS.labels("discarded").inc()
        self.record("turn.eager_discarded", turn.turn_id, text=turn.user_text, reason=reason,
                    generated_text=turn.reply_text)
        for span in (turn.llm_span, turn.tts_span, turn.span):
            if span is not None and span.is_recording():
                span.set_attribute("voxmesh.status", "discarded")
                span.end()

    @staticmethod
    def _trace_stt(turn: Turn) -> None:
        """The STT stage (end of speech to final transcript), on the turn's trace."""
        end_ns = time.time_ns()
        stt_span = tracer.start_span("stt", context=trace.set_span_in_context(turn.span),
                                     start_time=end_ns - int(turn.stt_ms * 1e6))
        stt_span.set_attribute("voxmesh.stt_ms", turn.stt_ms)
        stt_span.end(end_time=end_ns)

    def _emit(self, turn: Turn, **event: Any) -> None:
        """Send one event of a turn's output; an unconfirmed turn keeps it for later."""
        if turn.speculative:
            turn.held.append(event)
        else:
            self.send(**event)

    # -- turns -----------------------------------------------------------------------------

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
            self.next_turn_id = _turn_id()
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

    # -- notifications ---------------------------------------------------------------------

    def _safe_to_speak(self) -> bool:
        """Neither side is talking and no reply is under way."""
        return (self.state.state is State.LISTENING and not self.user_speaking
                and not self.pending_user_text and self.eager is None
                and (self.turn is None or self.turn.finished))

    def _queue_notification(self, note: dialogue_pb2.Notification) -> None:
        if any(n.notification_id == note.notification_id for n in self.notifications):
            return  # sent again by a new Converse stream
        self.notifications.append(note)
        # Stable sort: within a priority, arrival order stays.
        self.notifications.sort(key=lambda n: -n.priority)
        self.record("notification.received", note.notification_id, component="llm",
                    text=note.text, source=note.source,
                    priority=dialogue_pb2.NotificationPriority.Name(note.priority))

    async def _maybe_notify(self) -> None:
        """Speak the most urgent waiting notification, if now is a safe moment."""
        if not self.notifications or not self._safe_to_speak():
            return
        note = self.notifications.pop(0)
        turn_id = note.notification_id
        priority = "high" if note.priority == dialogue_pb2.NOTIFICATION_PRIORITY_HIGH else (
            "normal")
        span = tracer.start_span("notification", context=otel_context.Context(), attributes={
            "voxmesh.session_id": self.session_id, "voxmesh.turn_id": turn_id,
            "voxmesh.source": note.source, "voxmesh.priority": priority})
        turn = Turn(turn_id, "", self.output_rate, span, proactive=True, llm_done=True,
                    reply_parts=[note.text])
        self.turn = self.turns[turn_id] = turn
        self.send(notification=pb.NotificationStarted(
            notification_id=turn_id, text=note.text, priority=priority, source=note.source))
        self.record("notification.spoken", turn_id, text=note.text, priority=priority)
        self.state.to(State.THINKING, turn_id)
        assert self.llm is not None
        # Told first, so a heard report after a barge-in finds it in the dialogue's history.
        await self.llm.write(dialogue_pb2.ConverseRequest(
            delivered=dialogue_pb2.NotificationDelivered(notification_id=turn_id)))
        with trace.use_span(span, end_on_exit=False):
            turn.tts_metadata = grpc_metadata_with_context()
        await self._open_tts(turn)
        self.send(response_text=pb.ResponseText(turn_id=turn_id, delta=note.text))
        assert turn.tts is not None
        await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(text=note.text))
        await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(
            end_of_input=audio_pb2.EndOfInput()))

    # -- dialogue --------------------------------------------------------------------------

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
            self.record("handoff", handoff.turn_id, component="llm",
                        from_agent=handoff.from_agent, to_agent=handoff.to_agent,
                        voice=handoff.voice, reason=handoff.reason)
            turn = self.turns.get(handoff.turn_id)
            # The handoff precedes the turn's first text: speak the reply in the new voice.
            if turn is not None and not turn.finished and turn.tts is not None:
                await self._open_tts(turn)
        elif kind == "tool":
            tool = event.tool
            self.record("tool", tool.turn_id, component="llm", call_id=tool.call_id,
                        name=tool.name, arguments=tool.arguments_json,
                        phase=dialogue_pb2.ToolPhase.Name(tool.phase), result=tool.result_json)
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

    # -- speech synthesis ------------------------------------------------------------------

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

    def _turn_error(self, turn: Turn, code: str, message: str) -> None:
        """A non-fatal error of a turn; an unconfirmed turn reports it if committed."""
        if turn.speculative:
            turn.held.append({"error": pb.SessionError(code=code, message=message)})
            self.record("error", turn.turn_id, code=code, message=message, eager=True)
            return
        self.error(code, message, turn.turn_id)

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


def _client_fields(request: pb.SessionRequest, kind: str | None) -> dict[str, Any]:
    """Audit fields of a client event (audio is never logged)."""
    if kind == "input_text":
        return {"text": request.input_text.text}
    if kind == "playback":
        p = request.playback
        return {"played_ms": p.played_ms, "done": p.is_done, "for_turn": p.turn_id}
    return {}
