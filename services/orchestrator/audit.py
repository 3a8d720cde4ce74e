"""The append-only session audit log: one Redis Stream per session.

``emit`` only puts the event on a bounded in-memory queue; a single writer
task drains it in batches through a Redis pipeline. Nothing on the audio path
ever awaits Redis. If Redis is down, events stay buffered (bounded) and are
written on recovery; events that do not fit are dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from services.orchestrator import metrics

log = logging.getLogger(__name__)

STREAM_KEY = "voxmesh:session:{session_id}"


def stream_key(session_id: str) -> str:
    """Redis key of a session's audit stream."""
    return STREAM_KEY.format(session_id=session_id)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of a session's audit log."""

    session_id: str
    type: str
    component: str
    turn_id: str
    ts_us: int
    data: dict[str, Any]

    def fields(self) -> dict[FieldT, EncodableT]:
        """Stream entry fields; ``data`` is JSON so entries stay flat and greppable."""
        return {
            "ts_us": str(self.ts_us),
            "type": self.type,
            "component": self.component,
            "turn_id": self.turn_id,
            "data": json.dumps(self.data, separators=(",", ":"), ensure_ascii=False),
        }


class AuditLog:
    """Batches audit events into per-session Redis Streams from a bounded queue."""

    def __init__(self, redis_url: str, max_queue: int = 10_000, batch_size: int = 200) -> None:
        self._redis = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(max_queue)
        self._batch_size = batch_size
        self._writer: asyncio.Task[None] | None = None
        self._pending: list[AuditEvent] = []

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._writer = asyncio.create_task(self._write_forever(), name="audit-writer")

    def emit(self, session_id: str, type: str, component: str = "orchestrator",
             turn_id: str = "", **data: Any) -> None:
        """Queue an event without waiting; drop and count it if the buffer is full."""
        event = AuditEvent(session_id, type, component, turn_id, time.time_ns() // 1000, data)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            metrics.AUDIT_DROPPED.inc()
        metrics.AUDIT_BACKLOG.set(self._queue.qsize() + len(self._pending))

    async def _write_forever(self) -> None:
        backoff = 0.1
        while True:
            if not self._pending:
                self._pending.append(await self._queue.get())
            while len(self._pending) < self._batch_size and not self._queue.empty():
                self._pending.append(self._queue.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event in self._pending:
                        pipe.xadd(stream_key(event.session_id), event.fields())
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("audit write failed; keeping %d events buffered: %s",
                            len(self._pending), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            metrics.AUDIT_EVENTS.inc(len(self._pending))
            for _ in self._pending:
                self._queue.task_done()
            self._pending.clear()
            metrics.AUDIT_BACKLOG.set(self._queue.qsize())

    async def close(self, timeout_s: float = 3.0) -> None:
        """Flush what is queued (up to ``timeout_s``), then stop the writer."""
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except TimeoutError:
                log.warning("audit log closed with %d events unwritten", self._queue.qsize())
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self._redis.aclose()
