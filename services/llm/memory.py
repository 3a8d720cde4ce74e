"""Conversation memory in Redis, so a session survives its stream and this service.

One Redis list per session, ``voxmesh:history:{session_id}``, one JSON chat message per
entry (the system prompt is not stored). Each save replaces the whole list in one
transaction and refreshes its TTL: at most ``history_turns`` turns, so it stays small,
and a trimmed or corrected history can never be half written. Redis being down never
fails a dialogue: failures are logged and counted, and the stream goes on with its
in-memory history.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.llm import metrics

log = logging.getLogger(__name__)

_TIMEOUT_S = 1.0
"""Socket timeouts: a hung Redis delays a turn boundary by at most about this."""


def history_key(session_id: str) -> str:
    """The Redis key of a session's history."""
    return f"voxmesh:history:{session_id}"


def agent_key(session_id: str) -> str:
    """The Redis key of the agent a session was handed to."""
    return f"voxmesh:agent:{session_id}"


def notifications_key(session_id: str) -> str:
    """The Redis hash of a session's undelivered notifications (id -> JSON)."""
    return f"voxmesh:notify:{session_id}"


class Memory:
    """Loads and saves per-session histories; every method swallows Redis errors."""

    def __init__(self, url: str, ttl_s: int) -> None:
        """Connect lazily to ``url``; saved histories expire ``ttl_s`` after the last write."""
        self.url = url
        self.ttl_s = ttl_s
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S,
            decode_responses=True)

    async def load(self, session_id: str) -> list[dict[str, Any]]:
        """The stored messages of ``session_id``; empty when none, or Redis failed."""
        if not session_id:
            return []
        try:
            raw = await self._client.lrange(history_key(session_id), 0, -1)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            self._failed("load", exc)
            return []
        out: list[dict[str, Any]] = []
        for item in raw:
            try:
                message = json.loads(item)
            except ValueError:
                continue  # a corrupt entry costs one message, not the conversation
            if isinstance(message, dict):
                out.append(message)
        return out

    async def save(self, session_id: str, entries: list[dict[str, Any]]) -> bool:
        """Replace the stored messages of ``session_id``; False when Redis failed."""
        if not session_id:
            return True
        key = history_key(session_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if entries:
                    pipe.rpush(key, *(json.dumps(e, ensure_ascii=False) for e in entries))
                    pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("save", exc)
            return False
        return True

    async def load_agent(self, session_id: str) -> str:
        """The agent ``session_id`` was last handed to; "" when none, or Redis failed."""
        if not session_id:
            return ""
        try:
            return str(await self._client.get(agent_key(session_id)) or "")
        except (RedisError, OSError) as exc:
            self._failed("load_agent", exc)
            return ""

    async def save_agent(self, session_id: str, agent: str) -> bool:
        """Remember the agent ``session_id`` talks to now; False when Redis failed."""
        if not session_id:
            return True
        try:
            await self._client.set(agent_key(session_id), agent, ex=self.ttl_s)
        except (RedisError, OSError) as exc:
            self._failed("save_agent", exc)
            return False
        return True

    async def save_notification(self, session_id: str, notification_id: str,
                                payload: dict[str, Any]) -> bool:
        """Keep an undelivered notification; False when Redis failed."""
        key = notifications_key(session_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, notification_id, json.dumps(payload, ensure_ascii=False))
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("save_notification", exc)
            return False
        return True

    async def load_notifications(self, session_id: str) -> list[dict[str, Any]]:
        """The undelivered notifications of ``session_id``; empty when none, or Redis failed."""
        try:
            raw = await self._client.hgetall(notifications_key(session_id))  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            self._failed("load_notifications", exc)
            return []
        out = []
        for value in raw.values():
            try:
                out.append(json.loads(value))
            except ValueError:
                continue
        return [n for n in out if isinstance(n, dict)]

    async def delete_notification(self, session_id: str, notification_id: str) -> bool:
        """Forget a delivered notification; False when Redis failed."""
        try:
            await self._client.hdel(notifications_key(session_id),  # type: ignore[misc]
                                    notification_id)
        except (RedisError, OSError) as exc:
            self._failed("delete_notification", exc)
            return False
        return True

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    @staticmethod
    def _failed(op: str, exc: Exception) -> None:
        metrics.MEMORY_ERRORS.inc()
        log.warning("conversation memory unavailable; going on without it",
                    extra={"op": op, "error": repr(exc)})
