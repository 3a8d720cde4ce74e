"""A scripted ``voxmesh.v1.Orchestrator`` for the gateway's tests.

A real grpc.aio server on a loopback port in the test process. It answers each
request by a fixed script and records what it received, so a test can check both
what the gateway forwarded and how it translated the answers. Knobs:

- ``session.start`` -> ``started`` + state LISTENING; agent ``"missing"`` -> NOT_FOUND;
  a ``session_id`` -> resumed.
- audio -> counted (bytes and frames); the first chunk -> voice activity (speech started at 0 ms).
- input_text ``"hello"`` -> a whole turn: states, user transcript, two text deltas,
  ``audio_chunks`` chunks of 20 ms reply audio, done, assistant transcript, latency.
- input_text ``"count"`` -> a reply whose text is the number of audio bytes received.
- input_text ``"warn"`` -> a non-fatal ``error`` event (code ``tts_failed``).
- input_text ``"crash"`` -> the stream ends with INTERNAL.
- input_text ``"flood"`` -> reply audio without end, as fast as flow control allows.
- input_text ``"handoff"`` -> ``agent_changed`` (assistant -> booking), then a whole turn.
- input_text ``"notify"`` -> ``notification`` ``n1``, then its reply turn with turn_id ``n1``.
- interrupt -> state INTERRUPTED, playback_stop and done(interrupted) for the last turn.
- end -> state IDLE and the stream ends with OK.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc

from voxmesh.v1 import orchestrator_pb2 as pb
from voxmesh.v1 import orchestrator_pb2_grpc

HELLO_REPLY = ("Hello", " there!")


@dataclass
class ScriptedSession:
    """What one stream received and how it ended."""

    session_id: str
    agent: str
    input_rate: int
    output_rate: int
    user_id: str = ""
    kinds: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    audio_frames: int = 0
    texts: list[str] = field(default_factory=list)
    playback: list[pb.PlaybackReport] = field(default_factory=list)
    flood_chunks: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: str = ""


class ScriptedOrchestrator(orchestrator_pb2_grpc.OrchestratorServicer):
    """Answers Session streams by the script in the module docstring.

    Args:
        audio_chunks: Reply audio chunks per ``"hello"`` turn.
    """

    def __init__(self, audio_chunks: int = 3) -> None:
        self.audio_chunks = audio_chunks
        self.sessions: dict[str, ScriptedSession] = {}

    async def Session(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.SessionRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SessionResponse]:
        """Play the script for one stream."""
        requests = aiter(request_iterator)
        first = await anext(requests)
        start = first.start
        if start.agent == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "agent 'missing' not found")
        session = ScriptedSession(
            session_id=start.session_id or uuid.uuid4().hex, agent=start.agent or "assistant",
            input_rate=start.input_sample_rate_hertz, output_rate=start.output_sample_rate_hertz,
            user_id=start.user_id)
        session.kinds.append("start")
        self.sessions[session.session_id] = session
        turn = 0
        try:
            yield pb.SessionResponse(started=pb.SessionStarted(
                session_id=session.session_id, agent=session.agent,
                is_resumed=bool(start.session_id)))
            yield _state(pb.SESSION_STATE_LISTENING)
            async for request in requests:
                kind = request.WhichOneof("request")
                session.kinds.append(kind)
                if kind == "audio":
                    if session.audio_bytes == 0:
                        yield pb.SessionResponse(voice_activity=pb.VoiceActivity(
                            is_speaking=True, offset_ms=0))
                    session.audio_bytes += len(request.audio)
                    session.audio_frames += 1
                elif kind == "input_text":
                    text = request.input_text.text
                    session.texts.append(text)
                    turn += 1
                    turn_id = f"t{turn}"
                    if text == "crash":
                        await context.abort(grpc.StatusCode.INTERNAL, "scripted failure")
                    elif text == "warn":
                        yield pb.SessionResponse(error=pb.SessionError(
                            code="tts_failed", message="speech synthesis failed"))
                    elif text == "flood":
                        async for response in _flood(session, turn_id):
                            yield response
                    elif text == "handoff":
                        yield pb.SessionResponse(agent_changed=pb.AgentChanged(
                            turn_id=turn_id, from_agent=session.agent, to_agent="booking",
                            reason="intent booking (keyword)"))
                        session.agent = "booking"
                        for response in _turn(session, turn_id, text, HELLO_REPLY,
                                              self.audio_chunks):
                            yield response
                    elif text == "notify":
                        yield pb.SessionResponse(notification=pb.NotificationStarted(
                            notification_id="n1", text="Your car is ready.", priority="high",
                            source="escalation"))
                        for response in _turn(session, "n1", text, ("Your car is ready.",),
                                              self.audio_chunks):
                            yield response
                    else:
                        reply = (str(session.audio_bytes),) if text == "count" else HELLO_REPLY
                        for response in _turn(session, turn_id, text, reply, self.audio_chunks):
                            yield response
                elif kind == "interrupt":
                    turn_id = f"t{turn}"
                    yield _state(pb.SESSION_STATE_INTERRUPTED, turn_id)
                    yield pb.SessionResponse(playback_stop=pb.PlaybackStop(turn_id=turn_id))
                    yield pb.SessionResponse(response_done=pb.ResponseDone(
                        turn_id=turn_id, status="interrupted"))
                elif kind == "playback":
                    session.playback.append(request.playback)
                elif kind == "end":
                    yield _state(pb.SESSION_STATE_IDLE)
                    break
            session.outcome = "ended"
        except (asyncio.CancelledError, GeneratorExit):
            # The call was cancelled: CancelledError at an await, GeneratorExit at a yield.
            session.outcome = "cancelled"
            raise
        finally:
            session.outcome = session.outcome or "aborted"
            session.ended.set()


def _state(state: pb.SessionState, turn_id: str = "") -> pb.SessionResponse:
    return pb.SessionResponse(state=pb.StateChanged(state=state, turn_id=turn_id))


def reply_chunk(index: int, output_rate: int) -> bytes:
    """The ``index``-th 20 ms chunk of scripted reply audio: every sample is ``index + 1``."""
    return (index + 1).to_bytes(2, "little", signed=True) * (output_rate // 50)


def _turn(session: ScriptedSession, turn_id: str, text: str, reply: tuple[str, ...],
          audio_chunks: int) -> Iterator[pb.SessionResponse]:
    yield _state(pb.SESSION_STATE_THINKING, turn_id)
    yield pb.SessionResponse(transcript=pb.TranscriptEvent(
        role=pb.ROLE_USER, text=text, is_final=True, turn_id=turn_id))
    for delta in reply:
        yield pb.SessionResponse(response_text=pb.ResponseText(turn_id=turn_id, delta=delta))
    yield _state(pb.SESSION_STATE_SPEAKING, turn_id)
    for i in range(audio_chunks):
        yield pb.SessionResponse(audio=pb.ResponseAudio(
            turn_id=turn_id, audio=reply_chunk(i, session.output_rate)))
    yield pb.SessionResponse(response_done=pb.ResponseDone(turn_id=turn_id, status="completed"))
    yield pb.SessionResponse(transcript=pb.TranscriptEvent(
        role=pb.ROLE_ASSISTANT, text="".join(reply), is_final=True, turn_id=turn_id))
    yield pb.SessionResponse(latency=pb.LatencyReport(
        turn_id=turn_id, stt_ms=0, llm_ms=12, tts_ms=3, total_ms=15))
    yield _state(pb.SESSION_STATE_LISTENING)


async def _flood(session: ScriptedSession, turn_id: str) -> AsyncIterator[pb.SessionResponse]:
    yield _state(pb.SESSION_STATE_SPEAKING, turn_id)
    chunk = bytes(16 * 1024)
    while True:
        session.flood_chunks += 1
        yield pb.SessionResponse(audio=pb.ResponseAudio(turn_id=turn_id, audio=chunk))
        await asyncio.sleep(0)  # let cancellation in between chunks


@contextlib.asynccontextmanager
async def serve_scripted(host: str = "127.0.0.1",
                         audio_chunks: int = 3) -> AsyncIterator[tuple[str, ScriptedOrchestrator]]:
    """Run a :class:`ScriptedOrchestrator` on a free port of ``host``; yields (addr, servicer)."""
    server = grpc.aio.server()
    servicer = ScriptedOrchestrator(audio_chunks)
    orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    try:
        yield f"{host}:{port}", servicer
    finally:
        await server.stop(0)
