"""What every part of a session shares: its state, and how it talks to the client and
the audit log.

The session is built in layers, each a module with one job, each subclassing the one
below: :class:`SessionCore` (state, plumbing) -> :class:`~.replies.Replies` (the
agent's replies) -> :class:`~.turn_taking.TurnTaking` (the user's speech: end of turn,
eager replies, barge-in) -> :class:`~.notifications.Notifications` (speaking unprompted)
-> :class:`~.links.DownstreamLinks` (the STT and dialogue streams) ->
:class:`~.session.Session` (lifecycle, the client's stream).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from services.orchestrator.audit import AuditLog
from services.orchestrator.downstream import Downstream, StreamWriter
from services.orchestrator.state import State, StateMachine
from services.orchestrator.turn import Turn
from voxmesh.ownership import OwnershipStore
from voxmesh.v1 import dialogue_pb2, stt_pb2
from voxmesh.v1 import orchestrator_pb2 as pb

log = logging.getLogger(__name__)

class SessionAbort(Exception):
    """Ends the session with a gRPC status (the client gets code and message).

    ``reason`` is a machine-readable cause the gateway turns into its own error code
    and close code (trailing metadata ``voxmesh-reason``), e.g. ``session_forbidden``.
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


def new_turn_id() -> str:
    """A fresh turn id."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class TurnPolicy:
    """How the session takes turns (see OrchestratorSettings for the meaning)."""

    eager_turns: bool = True
    barge_in_min_speech_ms: int = 1500
    llm_first_token_timeout_s: float = 15.0


class SessionCore:
    """State of one Orchestrator.Session stream, and its plumbing."""

    def __init__(self, downstream: Downstream, audit: AuditLog,
                 policy: TurnPolicy | None = None, owners: OwnershipStore | None = None) -> None:
        self.down = downstream
        self.audit = audit
        self.owners = owners or OwnershipStore()
        self.policy = policy or TurnPolicy()
        self.session_id = ""
        self.input_rate = 16000
        self.output_rate = 24000
        self.voice = ""
        self.speed = 0.0
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.state = StateMachine(self._on_state_change)
        self.turn: Turn | None = None
        self.next_turn_id = new_turn_id()
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
        self.resume_token = ""
        """The session's own secret; the dialogue service checks it on every (re)open."""
        self.llm_up = True
        self.stt_up = True
        self.stt_base_ms = 0.0
        """Input audio already sent when the current STT stream opened (its offsets are
        relative to that stream)."""
        self.notifications: list[dialogue_pb2.Notification] = []
        """Waiting for a safe moment: highest priority first, then in arrival order."""

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

    def _abort(self, code: grpc.StatusCode, message: str) -> SessionAbort:
        self.record("session.aborted", code=code.name, message=message)
        return SessionAbort(code, message)

    def _fatal(self, code: grpc.StatusCode, message: str) -> None:
        self.out.put_nowait(self._abort(code, message))

    async def _maybe_notify(self) -> None:
        """Speak a waiting notification if now is a safe moment (:mod:`.notifications`)."""
        raise NotImplementedError
