"""A Python client for the gateway's WebSocket protocol v1 (``/v1/realtime``).

Used by the end-to-end tests and the benchmarks; also a reference for anyone
writing a client (docs/protocol.md has the full protocol). A session needs a token:
:func:`fetch_token` buys one with the API key (``POST /v1/sessions``), and
:class:`RealtimeClient` does that itself when given the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect

FRAME_MS = 20


def http_base(url: str) -> str:
    """``scheme://host:port`` over HTTP(S) of a gateway URL (``ws://h:p/v1/realtime`` too)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def _post_sessions(base: str, api_key: str, user_id: str) -> dict[str, Any]:
    body = json.dumps({"user_id": user_id} if user_id else {}).encode()
    request = urllib.request.Request(
        f"{base}/v1/sessions", data=body, method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        result: dict[str, Any] = json.loads(reply.read())
    return result


async def fetch_token(url: str, api_key: str, user_id: str = "") -> str:
    """Buy a session token from the gateway at ``url`` (any URL on it).

    Args:
        url: The gateway, e.g. ``http://127.0.0.1:8080`` or its ``ws://`` realtime URL.
        api_key: The gateway's API key.
        user_id: A user to bind the token to (the session is then that user's).

    Raises:
        urllib.error.HTTPError: The gateway refused (401: wrong key).
    """
    reply = await asyncio.to_thread(_post_sessions, http_base(url), api_key, user_id)
    return str(reply["token"])


def with_token(url: str, token: str) -> str:
    """``url`` with ``?token=`` set (replacing any other query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode({"token": token}), ""))


@dataclass
class Received:
    """Everything a client received, in order, with arrival times (perf_counter seconds)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    audio: list[tuple[float, bytes]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        """Events of one type, in arrival order."""
        return [e for e in self.events if e["type"] == type_]

    def audio_bytes(self, since: float = 0.0) -> bytes:
        """All reply audio received at or after ``since``."""
        return b"".join(chunk for t, chunk in self.audio if t >= since)


class RealtimeClient:
    """One WebSocket session: send control messages and audio, collect what comes back.

    Args:
        url: The realtime URL, ``ws://host:port/v1/realtime`` (with ``?token=`` if you
            bought the token yourself).
        api_key: Buys a token on entering; defaults to ``VOXMESH_API_KEY``. Unused when
            ``url`` already carries a token.
        user_id: Binds the bought token to this user.
    """

    def __init__(self, url: str, api_key: str | None = None, user_id: str = "") -> None:
        self.url = url
        self.api_key = api_key if api_key is not None else os.environ.get("VOXMESH_API_KEY", "")
        self.user_id = user_id
        self.ws: ClientConnection | None = None
        self.received = Received()
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> RealtimeClient:
        url = self.url
        if self.api_key and "token=" not in urlsplit(url).query:
            url = with_token(url, await fetch_token(url, self.api_key, self.user_id))
        self.ws = await connect(url, max_size=2**22)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            now = time.perf_counter()
            if isinstance(message, bytes):
                self.received.audio.append((now, message))
            else:
                event = json.loads(message)
                event["_t"] = now
                self.received.events.append(event)
            self._changed.set()

    async def send(self, type_: str, **fields: Any) -> None:
        """Send one JSON control message."""
        assert self.ws is not None
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def start(self, agent: str = "assistant", sample_rate: int = 16000,
                    output_sample_rate: int = 24000, timeout_s: float = 30.0,
                    **fields: Any) -> dict[str, Any]:
        """Send session.start and wait for session.started."""
        await self.send("session.start", agent=agent, sample_rate=sample_rate,
                        output_sample_rate=output_sample_rate, **fields)
        return await self.wait_for(lambda e: e["type"] in ("session.started", "error"), timeout_s)

    async def stream_audio(self, pcm: bytes, sample_rate: int = 16000,
                           realtime: bool = True) -> list[float]:
        """Send PCM16 mono in 20 ms frames, paced like a microphone.

        Returns when each frame was sent (perf_counter seconds), one entry per frame.
        """
        assert self.ws is not None
        frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        sent_at: list[float] = []
        start = time.perf_counter()
        for i in range(0, len(pcm), frame_bytes):
            await self.ws.send(pcm[i : i + frame_bytes])
            sent_at.append(time.perf_counter())
            if realtime:
                due = start + len(sent_at) * FRAME_MS / 1000
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        return sent_at

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                       timeout_s: float = 30.0, after: int = 0) -> dict[str, Any]:
        """Wait for the first event (from index ``after``) matching ``predicate``."""
        deadline = time.perf_counter() + timeout_s
        while True:
            for event in self.received.events[after:]:
                if predicate(event):
                    return event
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                types = [e["type"] for e in self.received.events]
                raise TimeoutError(f"no matching event in {timeout_s} s; received {types}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
