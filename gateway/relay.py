"""One browser WebSocket relayed 1:1 onto one orchestrator ``Session`` gRPC stream.

A :class:`Relay` waits for ``session.start``, opens the stream, and then runs two
pumps: browser -> orchestrator and orchestrator -> browser, awaited with
FIRST_COMPLETED and cancelled in ``finally``. Each connection has its own tasks
and its own bounded :class:`~gateway.outbox.Outbox`, so a slow browser only slows
its own stream, and one that stops reading is closed with 4413 once
``send_queue_bytes`` wait for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import grpc
from starlette.websockets import WebSocket

from gateway import metrics
from gateway.auth import Claims, TokenError, TokenIssuer
from gateway.limits import FairShare, TokenBucket
from gateway.outbox import Outbox, OutboxClosed, SlowClient
from gateway.protocol import (
    ClientMessage,
    CloseCode,
    ErrorCode,
    PingMessage,
    ProtocolError,
    ServerEvent,
    SessionEndMessage,
    SessionReauthMessage,
    SessionStartMessage,
    check_audio,
    error_event,
    parse_client_text,
    to_client,
)
from voxmesh.logs import session_id_var
from voxmesh.telemetry import grpc_metadata_with_context
from voxmesh.v1 import orchestrator_pb2 as pb
from voxmesh.v1 import orchestrator_pb2_grpc

log = logging.getLogger(__name__)

# gRPC statuses caused by what the client asked for: close 1008 (policy); others close 1011.
_CLIENT_STATUSES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAUTHENTICATED,
})
CLOSE_NORMAL = CloseCode.NORMAL
CLOSE_POLICY = CloseCode.POLICY
CLOSE_INTERNAL = CloseCode.INTERNAL
END_GRACE_S = 10.0
"""How long the orchestrator may take to finish a session after ``session.end``."""
# Errors a flooding client provokes on every frame are sent at most this often per code.
THROTTLED_ERRORS = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.AUDIO_TOO_FAST})
THROTTLE_S = 1.0


class ClientGone(Exception):
    """The browser closed the WebSocket or the connection dropped."""


@dataclass(frozen=True)
class Limits:
    """Per-connection limits (``VOXMESH_GATEWAY_*`` settings of the same names)."""

    max_frame_bytes: int = 64 * 1024
    max_messages_per_s: float = 150.0
    message_burst: int = 300
    audio_rate_margin: float = 1.5
    audio_burst_s: float = 2.0
    start_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    """A started session that sends no frame at all (audio, message or ping) this long ends."""
    send_queue_bytes: int = 1024 * 1024
    close_grace_s: float = 20.0
    """How long a closing connection may take to read what is left before it is aborted."""
    token_grace_s: float = 30.0
    """A live session whose token expired ends this long after expiry unless the client
    sent ``session.reauth`` with a fresh token."""


@dataclass(frozen=True)
class StreamEnd:
    """How the orchestrator's response stream ended."""

    code: grpc.StatusCode
    details: str
    reason: str = ""
    """The orchestrator's machine-readable cause (trailing metadata ``voxmesh-reason``)."""


# Refusals of the orchestrator that have their own error code and close code.
_REASON_CLOSE_CODES = {
    "session_forbidden": CloseCode.SESSION_FORBIDDEN,
    "unknown_session": CloseCode.UNKNOWN_SESSION,
    "token_reused": CloseCode.UNAUTHORIZED,
}


class Relay:
    """Serves one WebSocket connection.

    Args:
        ws: The accepted-to-be WebSocket (already admitted: origin, token, connection caps).
        stub: Orchestrator stub on the channel all connections share.
        limits: This connection's limits.
        claims: The token that opened the connection: its user is the session's user.
        tokens: Verifies the fresh tokens of ``session.reauth``.
    """

    def __init__(self, ws: WebSocket, stub: orchestrator_pb2_grpc.OrchestratorStub,
                 limits: Limits, key_frames: FairShare | None = None, *,
                 claims: Claims, tokens: TokenIssuer) -> None:
        self.ws = ws
        self.stub = stub
        self.limits = limits
        self.max_frame_bytes = limits.max_frame_bytes
        self.session_id = ""
        self.outbox = Outbox(ws, limits.send_queue_bytes)
        self.ended = asyncio.Event()
        """Set when :meth:`run` has returned."""
        self._frames = TokenBucket(limits.max_messages_per_s, limits.message_burst)
        self._key_frames = key_frames  # this connection's fair share of its key's budget
        self._audio: TokenBucket | None = None  # sized by session.start's sample rate
        self._last_error: dict[ErrorCode, float] = {}
        self.claims = claims
        self._tokens = tokens

    async def run(self) -> None:
        """Accept the WebSocket and relay it until either side ends."""
        await self.ws.accept()
        metrics.CONNECTIONS.inc()
        self.outbox.start()
        try:
            try:
                async with asyncio.timeout(self.limits.start_timeout_s):
                    start = await self._await_start()
            except TimeoutError:
                log.info("no session.start in time", extra={"code": "start_timeout"})
                self._close(CloseCode.START_TIMEOUT,
                                  f"no session.start within {self.limits.start_timeout_s:g} s")
                return
            if start is not None:
                await self._relay(start)
        except ClientGone:
            session_id_var.set(self.session_id)
            log.info("client went away")
        except SlowClient as exc:
            session_id_var.set(self.session_id)
            metrics.SLOW_CLIENTS.inc()
            log.warning("closing a client that does not read", extra={
                "code": "slow_client", "queued_bytes": self.outbox.queued_bytes})
            self.outbox.close(CloseCode.SLOW_CLIENT, str(exc), discard=True)
        finally:
            try:
                await self.outbox.finish(self.limits.close_grace_s)
            finally:
                metrics.CONNECTIONS.dec()
                self.ended.set()

    def drain(self) -> None:
        """Tell the client that this gateway is going away and close with 1012."""
        try:
            self._send("session.draining", {"type": "session.draining",
                                            "session_id": self.session_id or None})
        except (ClientGone, SlowClient):
            pass  # the close below still goes out, or the client is already gone
        self._close(CloseCode.RESTART, "service restart: reconnect and resume the session")

    # -- before session.start --------------------------------------------------------------

    async def _await_start(self) -> SessionStartMessage | None:
        """Read frames until a valid ``session.start``; None if the client ended first."""
        while True:
            try:
                frame = await self._read_frame()
                if isinstance(frame, bytes):
                    raise ProtocolError(ErrorCode.NOT_STARTED,
                                        "audio: send session.start before any audio")
                if isinstance(frame, PingMessage):
                    self._send("pong", frame.pong())
                elif isinstance(frame, SessionStartMessage):
                    if frame.user_id and frame.user_id != self.claims.user_id:
                        metrics.REJECTIONS.labels("user_id_mismatch").inc()
                        raise ProtocolError(
                            ErrorCode.INVALID_FIELD,
                            "user_id: the session's user comes from its token, and this "
                            "token is for " + ("another user" if self.claims.user_id
                                               else "no user (an anonymous session)"))
                    if frame.session_id:
                        self._set_session_id(frame.session_id)
                    rate = frame.sample_rate * 2  # bytes of PCM16 per second
                    self._audio = TokenBucket(rate * self.limits.audio_rate_margin,
                                              rate * self.limits.audio_burst_s)
                    return frame
                elif isinstance(frame, SessionEndMessage):
                    self._close(CLOSE_NORMAL, "session ended")
                    return None
                else:
                    raise ProtocolError(ErrorCode.NOT_STARTED,
                                        f"{frame.type}: send session.start first")
            except ProtocolError as err:
                self._send_error(err)

    # -- the session -----------------------------------------------------------------------

    async def _relay(self, start: SessionStartMessage) -> None:
        call = self.stub.Session(metadata=grpc_metadata_with_context())
        upstream = asyncio.create_task(self._client_to_orchestrator(call, start))
        downstream = asyncio.create_task(self._orchestrator_to_client(call))
        try:
            done, _ = await asyncio.wait({upstream, downstream},
                                         return_when=asyncio.FIRST_COMPLETED)
            if upstream in done:
                upstream.result()  # raises ClientGone: nobody is left to tell anything
                # The client ended its input (or the call failed): let the orchestrator finish.
                await asyncio.wait({downstream}, timeout=END_GRACE_S)
            end = downstream.result() if downstream.done() else None
        finally:
            for task in (upstream, downstream):
                task.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            call.cancel()
        await self._finish(end)

    async def _client_to_orchestrator(self, call: grpc.aio.StreamStreamCall,
                                      start: SessionStartMessage) -> None:
        """Forward browser frames; returns after ``session.end`` or when the call is over."""
        try:
            await call.write(start.to_request(self.claims))
            while True:
                wait_s = min(self.limits.idle_timeout_s, self._auth_left_s())
                try:
                    async with asyncio.timeout(max(0.0, wait_s)):
                        request = await self._next_request()
                except ProtocolError as err:
                    self._send_error(err)
                    continue
                except TimeoutError:
                    if self._auth_left_s() <= 0:
                        await self._end_expired(call)
                        return
                    log.info("idle session closed", extra={"code": "idle_timeout"})
                    self._close(CloseCode.START_TIMEOUT,
                                f"idle: no frame within {self.limits.idle_timeout_s:g} s")
                    await call.write(pb.SessionRequest(end=pb.EndSession()))
                    await call.done_writing()
                    return
                if request is None:
                    continue
                await call.write(request)
                if request.HasField("end"):
                    await call.done_writing()
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call is over; the response stream says why

    def _auth_left_s(self) -> float:
        """Seconds until the session must end for want of a valid token."""
        return self.claims.expires_at + self.limits.token_grace_s - time.time()

    async def _end_expired(self, call: grpc.aio.StreamStreamCall) -> None:
        """The token expired and no fresh one came: end the session and close 4401."""
        log.info("session token expired", extra={"code": "token_expired"})
        metrics.REJECTIONS.labels("token_expired").inc()
        self._send("error", error_event(
            "token_expired", "session token expired and no session.reauth came within "
            f"{self.limits.token_grace_s:g} s; resume with a new token"))
        self._close(CloseCode.UNAUTHORIZED, "token expired")
        await call.write(pb.SessionRequest(end=pb.EndSession()))
        await call.done_writing()

    def _reauth(self, token: str) -> None:
        """Take a fresh token for the live session (same user); answer or raise."""
        try:
            claims = self._tokens.verify(token)
        except TokenError as exc:
            metrics.REJECTIONS.labels("bad_reauth").inc()
            raise ProtocolError(ErrorCode.UNAUTHORIZED, f"session.reauth: {exc}") from None
        if claims.user_id != self.claims.user_id:
            metrics.REJECTIONS.labels("bad_reauth").inc()
            raise ProtocolError(ErrorCode.UNAUTHORIZED,
                                "session.reauth: the token is for another user")
        if claims.expires_at > self.claims.expires_at:
            self.claims = claims
        self._send("session.reauthenticated", {"type": "session.reauthenticated",
                                               "token_expires_at": self.claims.expires_at})

    async def _next_request(self) -> pb.SessionRequest | None:
        """The next frame as a gRPC request; None for frames the gateway answers itself."""
        frame = await self._read_frame()
        if isinstance(frame, bytes):
            check_audio(frame)
            if self._audio is not None and not self._audio.take(len(frame)):
                raise ProtocolError(
                    ErrorCode.AUDIO_TOO_FAST,
                    f"audio: faster than {self.limits.audio_rate_margin:g}x real time "
                    f"(burst {self.limits.audio_burst_s:g} s); frame dropped")
            return pb.SessionRequest(audio=frame)
        if isinstance(frame, PingMessage):
            self._send("pong", frame.pong())
            return None
        if isinstance(frame, SessionReauthMessage):
            self._reauth(frame.token)
            return None
        if isinstance(frame, SessionStartMessage):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                "session.start: the session has already started")
        return frame.to_request()

    async def _orchestrator_to_client(self, call: grpc.aio.StreamStreamCall) -> StreamEnd:
        """Forward orchestrator events until the stream ends; returns how it ended."""
        try:
            async for response in call:
                translated = to_client(response)
                if translated is None:
                    log.debug("dropped an event this protocol version does not know")
                    continue
                kind, event = translated
                if kind == "session.started":
                    assert isinstance(event, dict)
                    event["token_expires_at"] = self.claims.expires_at
                    self._set_session_id(event["session_id"])
                    log.info("session started",
                             extra={"agent": event["agent"], "resumed": event["resumed"]})
                elif kind == "error":
                    assert isinstance(event, dict)
                    metrics.ERRORS.labels(event["code"]).inc()
                self._send(kind, event)
        except grpc.aio.AioRpcError as exc:
            reason = dict(exc.trailing_metadata() or ()).get("voxmesh-reason", "")
            return StreamEnd(exc.code(), exc.details() or "", str(reason))
        return StreamEnd(grpc.StatusCode.OK, "")

    async def _finish(self, end: StreamEnd | None) -> None:
        """Tell the client how the stream ended and close the WebSocket."""
        session_id_var.set(self.session_id)  # set in the pump's context; this is another
        if end is None:
            log.warning("orchestrator did not end the session in time",
                        extra={"grace_seconds": END_GRACE_S})
            self._close(CLOSE_INTERNAL, "orchestrator did not end the session")
        elif end.code is grpc.StatusCode.OK:
            log.info("session ended")
            self._close(CLOSE_NORMAL, "session ended")
        else:
            name = end.reason or end.code.name.lower()
            log.warning("orchestrator ended the session with an error",
                        extra={"code": name, "details": end.details})
            metrics.ERRORS.labels(name).inc()
            try:
                self._send("error", error_event(name, end.details))
            except ClientGone:
                return
            close_code = _REASON_CLOSE_CODES.get(end.reason) or (
                CLOSE_POLICY if end.code in _CLIENT_STATUSES else CLOSE_INTERNAL)
            self._close(close_code, name)

    # -- frames ----------------------------------------------------------------------------

    async def _read_frame(self) -> bytes | ClientMessage:
        """The next client frame: audio bytes (not yet checked) or a parsed text message."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise ClientGone
        data: bytes | None = message.get("bytes")
        text: str | None = message.get("text")
        size = len(data) if data is not None else len((text or "").encode())
        try:
            if not self._frames.take():
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {self.limits.max_messages_per_s:g} frames per second "
                    f"(burst {self.limits.message_burst}); frame dropped")
            if self._key_frames is not None and not self._key_frames.take():
                share = self._key_frames
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"over this connection's fair share of its key: {share.rate:.4g} frames "
                    f"per second (burst {share.capacity:.4g}), the key's "
                    f"{share.budget.rate:g} split over its {len(share.budget.shares)} "
                    "connections, and none to spare; frame dropped")
            if size > self.max_frame_bytes:
                raise ProtocolError(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"frame of {size} bytes is larger than the limit of "
                    f"{self.max_frame_bytes} bytes")
            if data is not None:
                metrics.MESSAGES.labels("in", "audio").inc()
                return data
            frame = parse_client_text(text or "")
        except ProtocolError:
            metrics.MESSAGES.labels("in", "invalid").inc()
            raise
        metrics.MESSAGES.labels("in", frame.type).inc()
        return frame

    def _send(self, kind: str, event: ServerEvent) -> None:
        """Queue one event for the client.

        Raises:
            ClientGone: The client left.
            SlowClient: The client's outbox is full.
        """
        frame = event if isinstance(event, bytes) else json.dumps(
            event, separators=(",", ":"), ensure_ascii=False)
        try:
            self.outbox.put(frame)
        except OutboxClosed:
            raise ClientGone from None
        metrics.MESSAGES.labels("out", kind).inc()

    def _send_error(self, err: ProtocolError) -> None:
        metrics.ERRORS.labels(err.code.value).inc()
        if err.code in THROTTLED_ERRORS:
            now = time.monotonic()
            if now - self._last_error.get(err.code, -THROTTLE_S) < THROTTLE_S:
                return  # a flood gets one error a second, not one per frame
            self._last_error[err.code] = now
        session_id_var.set(self.session_id)
        log.info("rejected a client frame", extra={"code": err.code.value})
        self._send("error", error_event(err.code.value, err.message))

    def _close(self, code: int, reason: str) -> None:
        self.outbox.close(code, reason)

    def _set_session_id(self, session_id: str) -> None:
        self.session_id = session_id
        session_id_var.set(session_id)
