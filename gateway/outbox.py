"""A bounded send queue per WebSocket, so a client that reads slowly cannot grow the gateway.

The relay's pumps never write to the socket themselves: they put frames into an
:class:`Outbox`, whose single writer task sends them in order. A socket write waits
while the transport's buffer is over its high-water mark (64 KiB), so a client that
stops reading leaves frames in the outbox; once more than ``max_bytes`` wait,
:meth:`Outbox.put` raises :class:`SlowClient` and the relay closes the connection.
Memory per connection is thus at most ``max_bytes`` plus the transport's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect


class SlowClient(Exception):
    """More than the outbox's ``max_bytes`` wait for a client that does not read them."""


class OutboxClosed(Exception):
    """The client is gone: the writer could not send."""


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Outbox:
    """Frames waiting to be sent on one WebSocket, at most ``max_bytes`` of them.

    Args:
        ws: The accepted WebSocket.
        max_bytes: Bytes (characters for text frames) that may wait; beyond that
            :meth:`put` raises :class:`SlowClient`.
    """

    def __init__(self, ws: WebSocket, max_bytes: int) -> None:
        self.ws = ws
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self.closing = False
        self.gone = False
        self._frames: deque[str | bytes | _Close] = deque()
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.create_task(self._write())

    def put(self, frame: str | bytes) -> None:
        """Queue one frame; dropped silently once a close is queued.

        Raises:
            OutboxClosed: The client is gone.
            SlowClient: The frame would take the outbox over ``max_bytes``.
        """
        if self.gone:
            raise OutboxClosed
        if self.closing:
            return  # events racing the close frame: the client will not read them anyway
        if self.queued_bytes + len(frame) > self.max_bytes:
            raise SlowClient(f"client too slow: over {self.max_bytes} bytes unsent")
        self.queued_bytes += len(frame)
        self._frames.append(frame)
        self._ready.set()

    def close(self, code: int, reason: str, *, discard: bool = False) -> None:
        """Queue the close frame after what is queued (or instead of it, with ``discard``)."""
        if self.closing:
            return
        if discard:
            self._frames.clear()
            self.queued_bytes = 0
        self.closing = True
        self._frames.append(_Close(code, reason[:120]))
        self._ready.set()

    async def finish(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the queued frames and the close to go out.

        Without a queued close (the client left), the writer is just stopped. A client
        that reads nothing for ``timeout_s`` has its TCP connection aborted.

        Returns:
            True when everything was sent (or there was nothing left to send).
        """
        writer = self._writer
        if writer is None:
            return True
        if not self.closing:
            writer.cancel()
        sent = True
        try:
            await asyncio.wait_for(asyncio.shield(writer), timeout_s)
        except TimeoutError:
            sent = False
            writer.cancel()
            abort_connection(self.ws)
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        return sent

    async def _write(self) -> None:
        try:
            while True:
                while not self._frames:
                    self._ready.clear()
                    await self._ready.wait()
                frame = self._frames.popleft()
                if isinstance(frame, _Close):
                    await self.ws.close(frame.code, frame.reason)
                    return
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame)
                self.queued_bytes -= len(frame)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.gone = True  # the client left; put() tells the pumps


def abort_connection(ws: WebSocket) -> bool:
    """Drop the TCP connection under ``ws`` at once, buffered data and all.

    ASGI has no abort; a closed transport would otherwise wait forever to flush to a
    peer that never reads. Works with uvicorn's WebSocket protocols, whose ``receive``
    is a method of the protocol holding the transport; elsewhere it does nothing.

    Returns:
        True when a transport was aborted.
    """
    protocol = getattr(ws._receive, "__self__", None)  # uvicorn's protocol object
    transport = getattr(protocol, "transport", None)
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
        return True
    return False
