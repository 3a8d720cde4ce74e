"""One browser WebSocket relayed 1:1 onto one orchestrator ``Session`` gRPC stream.

A :class:`Relay` waits for ``session.start``, opens the stream, and then runs two
pumps: browser -> orchestrator and orchestrator -> browser, awaited with
FIRST_COMPLETED and cancelled in ``finally``. Each connection has its own tasks,
so a slow browser only slows its own stream (WebSocket writes and gRPC flow
control push back on that stream alone).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import grpc
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import metrics
from gateway.protocol import (
    ClientMessage,
    ErrorCode,
    PingMessage,
    ProtocolError,
    ServerEvent,
    SessionEndMessage,
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
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
END_GRACE_S = 10.0
"""How long the orchestrator may take to finish a session after ``session.end``."""


class ClientGone(Exception):
    """The browser closed the WebSocket or the connection dropped."""


@dataclass(frozen=True)
class StreamEnd:
    """How the orchestrator's response stream ended."""

    code: grpc.StatusCode
    details: str


class Relay:
    """Serves one WebSocket connection.

    Args:
        ws: The accepted-to-be WebSocket.
        stub: Orchestrator stub on the channel all connections share.
        max_frame_bytes: Larger frames are answered with ``frame_too_large``.
    """

    def __init__(self, ws: WebSocket, stub: orchestrator_pb2_grpc.OrchestratorStub,
                 max_frame_bytes: int) -> None:
        self.ws = ws
        self.stub = stub
        self.max_frame_bytes = max_frame_bytes
        self.session_id = ""
        self._send_lock = asyncio.Lock()  # the two pumps both write to the socket

    async def run(self) -> None:
        """Accept the WebSocket and relay it until either side ends."""
        await self.ws.accept()
        metrics.CONNECTIONS.inc()
        try:
            start = await self._await_start()
            if start is not None:
                await self._relay(start)
        except ClientGone:
            session_id_var.set(self.session_id)
            log.info("client went away")
        finally:
            metrics.CONNECTIONS.dec()

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
                    await self._send("pong", frame.pong())
                elif isinstance(frame, SessionStartMessage):
                    if frame.session_id:
                        self._set_session_id(frame.session_id)
                    return frame
                elif isinstance(frame, SessionEndMessage):
                    await self._close(CLOSE_NORMAL, "session ended")
                    return None
                else:
                    raise ProtocolError(ErrorCode.NOT_STARTED,
                                        f"{frame.type}: send session.start first")
            except ProtocolError as err:
                await self._send_error(err)

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
            await call.write(start.to_request())
            while True:
                try:
                    request = await self._next_request()
                except ProtocolError as err:
                    await self._send_error(err)
                    continue
                if request is None:
                    continue
                await call.write(request)
                if request.HasField("end"):
                    await call.done_writing()
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call is over; the response stream says why

    async def _next_request(self) -> pb.SessionRequest | None:
        """The next frame as a gRPC request; None for frames the gateway answers itself."""
        frame = await self._read_frame()
        if isinstance(frame, bytes):
            check_audio(frame)
            return pb.SessionRequest(audio=frame)
        if isinstance(frame, PingMessage):
            await self._send("pong", frame.pong())
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
                    self._set_session_id(event["session_id"])
                    log.info("session started",
                             extra={"agent": event["agent"], "resumed": event["resumed"]})
                elif kind == "error":
                    assert isinstance(event, dict)
                    metrics.ERRORS.labels(event["code"]).inc()
                await self._send(kind, event)
        except grpc.aio.AioRpcError as exc:
            return StreamEnd(exc.code(), exc.details() or "")
        return StreamEnd(grpc.StatusCode.OK, "")

    async def _finish(self, end: StreamEnd | None) -> None:
        """Tell the client how the stream ended and close the WebSocket."""
        session_id_var.set(self.session_id)  # set in the pump's context; this is another
        if end is None:
            log.warning("orchestrator did not end the session in time",
                        extra={"grace_seconds": END_GRACE_S})
            await self._close(CLOSE_INTERNAL, "orchestrator did not end the session")
        elif end.code is grpc.StatusCode.OK:
            log.info("session ended")
            await self._close(CLOSE_NORMAL, "session ended")
        else:
            name = end.code.name.lower()
            log.warning("orchestrator ended the session with an error",
                        extra={"code": name, "details": end.details})
            metrics.ERRORS.labels(name).inc()
            try:
                await self._send("error", error_event(name, end.details))
            except ClientGone:
                return
            await self._close(CLOSE_POLICY if end.code in _CLIENT_STATUSES else CLOSE_INTERNAL,
                              name)

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

    async def _send(self, kind: str, event: ServerEvent) -> None:
        async with self._send_lock:
            try:
                if isinstance(event, bytes):
                    await self.ws.send_bytes(event)
                else:
                    await self.ws.send_text(
                        json.dumps(event, separators=(",", ":"), ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise ClientGone from exc
        metrics.MESSAGES.labels("out", kind).inc()

    async def _send_error(self, err: ProtocolError) -> None:
        metrics.ERRORS.labels(err.code.value).inc()
        session_id_var.set(self.session_id)
        log.info("rejected a client frame", extra={"code": err.code.value})
        await self._send("error", error_event(err.code.value, err.message))

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            try:
                await self.ws.close(code, reason[:120])
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # already closed by the client

    def _set_session_id(self, session_id: str) -> None:
        self.session_id = session_id
        session_id_var.set(session_id)
