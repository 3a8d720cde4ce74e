"""WebSocket protocol v1: the browser's messages, validated, and their gRPC translations.

Client text frames are JSON objects tagged by ``type`` and parsed into a pydantic
discriminated union; binary frames are microphone audio. Server events come from
``SessionResponse`` messages of the orchestrator, one JSON object (or one binary
audio frame) per message. docs/protocol.md is the reference for both directions.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from gateway.auth import Claims
from voxmesh.audio import SUPPORTED_SAMPLE_RATES
from voxmesh.v1 import orchestrator_pb2 as pb
from voxmesh.variables import MAX_VARIABLE_CHARS, MAX_VARIABLES, VARIABLE_VALUE_PATTERN

PROTOCOL_VERSION = 1


class ErrorCode(StrEnum):
    """Codes of the ``error`` events the gateway itself sends; the connection stays open."""

    INVALID_MESSAGE = "invalid_message"
    """A text frame that is not a JSON object with a ``type``, or is out of place."""
    UNKNOWN_TYPE = "unknown_type"
    """A ``type`` this protocol version does not define."""
    INVALID_FIELD = "invalid_field"
    """A field has the wrong type or an unacceptable value."""
    NOT_STARTED = "not_started"
    """Audio or a control message arrived before ``session.start``."""
    FRAME_TOO_LARGE = "frame_too_large"
    """A frame larger than the gateway's ``max_frame_bytes``."""
    INVALID_AUDIO = "invalid_audio"
    """A binary frame that is not whole PCM16 samples."""
    RATE_LIMITED = "rate_limited"
    """More frames per second than the gateway's ``max_messages_per_s``; the frame is dropped."""
    AUDIO_TOO_FAST = "audio_too_fast"
    """Audio faster than real time times ``audio_rate_margin``; the frame is dropped."""
    UNAUTHORIZED = "unauthorized"
    """A ``session.reauth`` token that is invalid, expired or for another user."""


class CloseCode:
    """WebSocket close codes of the gateway (4xxx: application codes, RFC 6455 7.4.2)."""

    NORMAL = 1000
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    RESTART = 1012
    UNAUTHORIZED = 4401
    """Missing, malformed, badly signed, expired or already used token; or a live
    session whose token expired without ``session.reauth`` within the grace period."""
    FORBIDDEN_ORIGIN = 4403
    """The page's ``Origin`` is not in ``allowed_origins``."""
    UNKNOWN_SESSION = 4404
    """``session.start`` named a ``session_id`` that does not exist (or expired)."""
    SESSION_FORBIDDEN = 4409
    """``session.start`` named another caller's session (wrong user or resume token)."""
    START_TIMEOUT = 4408
    """No ``session.start`` within ``start_timeout_s``, or no frame at all from a started
    session within ``idle_timeout_s`` (the reason says which)."""
    SLOW_CLIENT = 4413
    """The client read too slowly: more than ``send_queue_bytes`` waited for it."""
    TOO_MANY_CONNECTIONS = 4429
    """The client's IP or key already holds its maximum of connections."""


class ProtocolError(Exception):
    """A client frame the gateway rejects; becomes an ``error`` event, never a close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _supported_rate(rate: int) -> int:
    if rate not in SUPPORTED_SAMPLE_RATES:
        raise PydanticCustomError(
            "sample_rate", "input should be one of {rates}",
            {"rates": ", ".join(map(str, SUPPORTED_SAMPLE_RATES))},
        )
    return rate


SampleRate = Annotated[int, AfterValidator(_supported_rate)]
"""A sample rate in Hz that every VoxMesh service accepts."""


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "input should contain more than whitespace")
    return text


class _ClientMessage(BaseModel):
    # Strict: "16000" is not 16000. Unknown fields are ignored so newer clients still work.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")]
"""A prompt placeholder's name, as agents write them (``username``)."""
VariableValue = Annotated[str, StringConstraints(max_length=MAX_VARIABLE_CHARS,
                                                 pattern=VARIABLE_VALUE_PATTERN)]
"""A client value for a placeholder: plain words only. It reaches the prompt quoted, as
data; quotes, backslashes, newlines, braces and markup cannot occur in it."""


class SessionStartMessage(_ClientMessage):
    """``session.start``: opens the session; must be the first message, sent once."""

    type: Literal["session.start"]
    agent: str = Field("", max_length=64, description="Agent name; empty = the default agent.")
    sample_rate: SampleRate = Field(16000, description="Microphone audio rate, Hz.")
    output_sample_rate: SampleRate = Field(24000, description="Reply audio rate, Hz.")
    session_id: str | None = Field(None, max_length=128, description="Session to resume.")
    resume_token: str | None = Field(
        None, max_length=128, description="The session's resume token (session.started).")
    variables: dict[VariableName, VariableValue] = Field(
        default_factory=dict, max_length=MAX_VARIABLES)
    user_id: str = Field("", max_length=128, description="Must be empty or the token's user.")

    def to_request(self, claims: Claims) -> pb.SessionRequest:
        """The gRPC request that starts the orchestrator's session.

        Args:
            claims: The connection's token: its user is the session's user (never the
                message's), and its id is spent by the orchestrator.
        """
        return pb.SessionRequest(start=pb.SessionStart(
            session_id=self.session_id or "", agent=self.agent,
            input_sample_rate_hertz=self.sample_rate,
            output_sample_rate_hertz=self.output_sample_rate, variables=self.variables,
            user_id=claims.user_id, resume_token=self.resume_token or "",
            token_id=claims.token_id, token_expires_at=claims.expires_at))


class SessionReauthMessage(_ClientMessage):
    """``session.reauth``: a fresh token for the live session before its token expires."""

    type: Literal["session.reauth"]
    token: str = Field(min_length=1, max_length=4096)


class InputTextMessage(_ClientMessage):
    """``input_text``: a typed user turn."""

    type: Literal["input_text"]
    text: Annotated[str, AfterValidator(_not_blank)] = Field(min_length=1, max_length=4000)

    def to_request(self) -> pb.SessionRequest:
        """The gRPC request carrying the typed turn."""
        return pb.SessionRequest(input_text=pb.InputText(text=self.text))


class InterruptMessage(_ClientMessage):
    """``interrupt``: stop the agent's reply now (barge-in)."""

    type: Literal["interrupt"]

    def to_request(self) -> pb.SessionRequest:
        """The gRPC interrupt request."""
        return pb.SessionRequest(interrupt=pb.Interrupt())


class PlaybackMessage(_ClientMessage):
    """``playback``: how much of a turn's reply audio the client has played."""

    type: Literal["playback"]
    turn_id: str = Field(min_length=1, max_length=128)
    played_ms: int = Field(ge=0, le=2**32 - 1)
    done: bool = False

    def to_request(self) -> pb.SessionRequest:
        """The gRPC playback report."""
        return pb.SessionRequest(playback=pb.PlaybackReport(
            turn_id=self.turn_id, played_ms=self.played_ms, is_done=self.done))


class PingMessage(_ClientMessage):
    """``ping``: answered by the gateway with ``pong``; never reaches the orchestrator."""

    type: Literal["ping"]
    id: str | int | None = None

    def pong(self) -> dict[str, Any]:
        """The reply, echoing ``id`` when the ping had one."""
        return {"type": "pong"} if self.id is None else {"type": "pong", "id": self.id}


class SessionEndMessage(_ClientMessage):
    """``session.end``: the client is done; the orchestrator finishes and the socket closes."""

    type: Literal["session.end"]

    def to_request(self) -> pb.SessionRequest:
        """The gRPC end-of-session request."""
        return pb.SessionRequest(end=pb.EndSession())


ClientMessage = Annotated[
    SessionStartMessage | InputTextMessage | InterruptMessage | PlaybackMessage | PingMessage
    | SessionEndMessage | SessionReauthMessage,
    Field(discriminator="type"),
]
"""Any client text frame, told apart by its ``type``."""

_client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES: tuple[str, ...] = (
    "session.start", "input_text", "interrupt", "playback", "ping", "session.end",
    "session.reauth")


def _describe(error: ErrorDetails) -> str:
    loc = ".".join(str(part) for part in error["loc"][1:])  # [0] is the union tag
    msg = error["msg"]
    msg = msg[:1].lower() + msg[1:]
    return f"{loc}: {msg}" if loc else msg


def parse_client_text(text: str) -> ClientMessage:
    """Parse one client text frame.

    Args:
        text: The frame's payload.

    Returns:
        The validated message.

    Raises:
        ProtocolError: The frame is not valid protocol v1; the message names the problem.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"expected a JSON object, got {type(data).__name__}")
    if "type" not in data:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "type: field required")
    if data["type"] not in CLIENT_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"type: unknown message type {data['type']!r} (expected one of "
            f"{', '.join(CLIENT_TYPES)})")
    try:
        return _client_message.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD,
                            "; ".join(_describe(e) for e in exc.errors())) from None


def check_audio(frame: bytes) -> None:
    """Raise :class:`ProtocolError` unless ``frame`` is whole PCM16 samples."""
    if not frame:
        raise ProtocolError(ErrorCode.INVALID_AUDIO, "audio: empty binary frame")
    if len(frame) % 2:
        raise ProtocolError(ErrorCode.INVALID_AUDIO,
                            f"audio: {len(frame)} bytes is not whole PCM16 samples")


# -- server -> client --------------------------------------------------------------------

_STATES = {
    pb.SESSION_STATE_IDLE: "idle",
    pb.SESSION_STATE_LISTENING: "listening",
    pb.SESSION_STATE_THINKING: "thinking",
    pb.SESSION_STATE_SPEAKING: "speaking",
    pb.SESSION_STATE_INTERRUPTED: "interrupted",
}
_ROLES = {pb.ROLE_USER: "user", pb.ROLE_ASSISTANT: "assistant"}

ServerEvent = dict[str, Any] | bytes
"""A JSON event for a text frame, or reply audio for a binary frame."""


class _ServerMessage(BaseModel):
    model_config = ConfigDict(frozen=True)


class NotificationEvent(_ServerMessage):
    """``notification``: the agent is about to speak a proactive notification.

    Its text and audio follow as a reply whose ``turn_id`` is ``notification_id``.
    """

    type: Literal["notification"] = "notification"
    notification_id: str
    text: str
    priority: str = Field(description='"high" or "normal".')
    source: str = Field(description='What produced it, e.g. "escalation".')


class AgentChangedEvent(_ServerMessage):
    """``agent.changed``: another agent answers from this turn on (a handoff)."""

    type: Literal["agent.changed"] = "agent.changed"
    turn_id: str | None
    from_agent: str
    to_agent: str
    reason: str


def _turn(turn_id: str) -> str | None:
    return turn_id or None


def to_client(response: pb.SessionResponse) -> tuple[str, ServerEvent] | None:
    """Translate one orchestrator event for the browser.

    Args:
        response: One message of the orchestrator's response stream.

    Returns:
        ``(type, event)``: the event's type (``"audio"`` for reply audio) and the JSON
        object or the audio bytes; None for an event this version does not know.
    """
    kind = response.WhichOneof("event")
    event: dict[str, Any]
    if kind == "audio":
        return "audio", response.audio.audio
    if kind == "started":
        m = response.started
        event = {"type": "session.started", "session_id": m.session_id, "agent": m.agent,
                 "resumed": m.is_resumed, "resume_token": m.resume_token or None}
    elif kind == "state":
        event = {"type": "state", "state": _STATES.get(response.state.state, "idle"),
                 "turn_id": _turn(response.state.turn_id)}
    elif kind == "voice_activity":
        va = response.voice_activity
        event = {"type": "speech_started" if va.is_speaking else "speech_stopped",
                 "offset_ms": va.offset_ms}
    elif kind == "transcript":
        t = response.transcript
        event = {"type": "transcript", "role": _ROLES.get(t.role, "user"), "text": t.text,
                 "final": t.is_final, "turn_id": _turn(t.turn_id)}
    elif kind == "response_text":
        event = {"type": "response.text", "turn_id": response.response_text.turn_id,
                 "delta": response.response_text.delta}
    elif kind == "response_done":
        event = {"type": "response.done", "turn_id": response.response_done.turn_id,
                 "status": response.response_done.status}
    elif kind == "playback_stop":
        event = {"type": "playback_stop", "turn_id": response.playback_stop.turn_id}
    elif kind == "latency":
        lat = response.latency
        event = {"type": "latency", "turn_id": lat.turn_id, "stt_ms": lat.stt_ms,
                 "llm_ms": lat.llm_ms, "tts_ms": lat.tts_ms, "total_ms": lat.total_ms}
    elif kind == "error":
        event = error_event(response.error.code, response.error.message)
    elif kind == "notification":
        n = response.notification
        event = NotificationEvent(notification_id=n.notification_id, text=n.text,
                                  priority=n.priority or "normal", source=n.source).model_dump()
    elif kind == "agent_changed":
        a = response.agent_changed
        event = AgentChangedEvent(turn_id=_turn(a.turn_id), from_agent=a.from_agent,
                                  to_agent=a.to_agent, reason=a.reason).model_dump()
    else:
        return None
    return event["type"], event


def error_event(code: str, message: str) -> dict[str, Any]:
    """An ``error`` event."""
    return {"type": "error", "code": code, "message": message}
