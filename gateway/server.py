"""The gateway's uvicorn server: a slowloris guard on request headers and a drain on SIGTERM.

uvicorn waits for request headers forever, so a client that trickles a byte now and
then (slowloris) holds a connection without ever reaching the app. The HTTP protocol
here answers 408 and closes a connection whose headers are not complete within
``handshake_timeout_s`` (that covers WebSocket handshakes, which are HTTP requests).
On SIGTERM, :class:`DrainingServer` tells each WebSocket client to reconnect before
uvicorn stops.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway import metrics

REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                   b"content-length: 33\r\nconnection: close\r\n\r\n"
                   b"request headers took too long\r\n\r\n")


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    headers_timeout_s = 10.0
    linger_s = 1.0
    """After the 408, input is read and dropped this long before the socket closes: closing
    with unread input would reset the connection and could destroy the 408 in flight."""
    _headers_timer: asyncio.TimerHandle | None = None
    _timed_out = False

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does, or drop input once the request has timed out."""
        if not self._timed_out:
            super().data_received(data)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the deadline of the first request."""
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """A keep-alive connection's next request gets its own deadline."""
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        """Headers are in: the app takes over (and with an upgrade, the WebSocket)."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline of a connection that is gone."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.headers_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _expired(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            metrics.HANDSHAKE_TIMEOUTS.inc()
            self._timed_out = True
            self.transport.write(REQUEST_TIMEOUT)
            if self.transport.can_write_eof():
                self.transport.write_eof()  # FIN after the 408; keep reading a moment
            self.loop.call_later(self.linger_s, self.transport.close)


def guarded_http(headers_timeout_s: float) -> type[GuardedHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this deadline."""
    return type("GuardedHttp", (GuardedHttpProtocol,), {"headers_timeout_s": headers_timeout_s})


class DrainingServer(uvicorn.Server):
    """A uvicorn server that runs ``drain`` before its own shutdown.

    Args:
        config: The uvicorn config.
        drain: Tells the clients to reconnect and waits (boundedly) for them to leave.
    """

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain, then let uvicorn close what is left (with 1012) and stop."""
        await self._drain()
        await super().shutdown(sockets)
