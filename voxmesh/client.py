"""A Python client for the gateway's WebSocket protocol v1 (``/v1/realtime``).

Used by the end-to-end tests and the benchmarks; also a reference for anyone
writing a client (docs/protocol.md has the full protocol).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

FRAME_MS = 20


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
    """One WebSocket session: send control messages and audio, collect what comes back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.received = Received()
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> RealtimeClient:
        self.ws = await connect(self.url, max_size=2**22)
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
