"""Who a session belongs to, kept where every replica of every service can check it.

A session is owned by the principal that created it: the user its token vouched for,
or, for anonymous callers, the holder of a per-session secret (the *resume token*)
handed out once in ``session.started``. The owner record lives in Redis under
``voxmesh:owner:{session_id}``; it is written once (``SET NX``) and never changed, so
two replicas racing to create the same session cannot both win, and a replica needs
no cache to stay correct. Only a digest of the resume token is stored.

The orchestrator and the Dialogue service both check it before they read history,
deliver notifications or append to the audit log, so the gateway is not the only
door. Session tokens are single use: the orchestrator spends each token id once
(``voxmesh:token:{jti}``, expiring with the token). Refusals go to the security log,
a Redis Stream (``voxmesh:security``) kept apart from every session's audit stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SECURITY_STREAM = "voxmesh:security"
SECURITY_STREAM_MAXLEN = 100_000
KNOWN_OWNERS = 10_000
"""Owner records remembered per process: records never change, so a session this process
has already checked can be checked again while Redis is away."""
"""Refusals kept in the security log (approximate trimming: a flood cannot grow it forever)."""
_TIMEOUT_S = 2.0


def owner_key(session_id: str) -> str:
    """The Redis key of a session's owner record."""
    return f"voxmesh:owner:{session_id}"


def token_key(token_id: str) -> str:
    """The Redis key that marks a session token as spent."""
    return f"voxmesh:token:{token_id}"


def digest(secret: str) -> str:
    """What is stored of a resume token: its SHA-256, never the token itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_resume_token() -> str:
    """A fresh per-session secret (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is asking for a session.

    Attributes:
        user_id: The user a token vouched for (from the token only, never the client).
        resume_token: The session's own secret, presented to resume an anonymous session.
    """

    user_id: str = ""
    resume_token: str = ""


@dataclass(frozen=True)
class Owner:
    """A session's owner record: its user, or the digest of its resume token."""

    user_id: str
    secret_digest: str

    def admits(self, principal: Principal) -> bool:
        """True when ``principal`` is this session's owner.

        A user's session opens for that user. An anonymous session opens only with its
        resume token. A record with neither (made by a caller that presented neither,
        only possible on the Dialogue service directly) admits only such callers.
        """
        if self.user_id:
            return hmac.compare_digest(self.user_id.encode(), principal.user_id.encode())
        if principal.user_id:
            return False  # a user cannot take over an anonymous session
        if not self.secret_digest:
            return not principal.resume_token
        return hmac.compare_digest(self.secret_digest, digest(principal.resume_token))

    def to_json(self) -> str:
        return json.dumps({"user_id": self.user_id, "secret": self.secret_digest,
                           "created_s": round(time.time(), 3)})

    @classmethod
    def from_json(cls, raw: str) -> Owner | None:
        try:
            data = json.loads(raw)
            return cls(str(data["user_id"]), str(data["secret"]))
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def of(cls, principal: Principal) -> Owner:
        """The record a new session created by ``principal`` gets."""
        secret = digest(principal.resume_token) if principal.resume_token else ""
        return cls(principal.user_id, secret)


class Verdict(Enum):
    """The answer to "may this principal have this session?"."""

    CREATED = "created"
    """The session did not exist; it now belongs to the principal."""
    OWNER = "owner"
    """It exists and the principal owns it."""
    DENIED = "denied"
    """It exists and belongs to someone else (or its record is unreadable)."""
    UNKNOWN = "unknown"
    """No such session."""


class OwnershipUnavailable(Exception):
    """The ownership store cannot be reached: nothing can be decided, so nothing opens."""


class OwnershipStore:
    """Owner records, spent tokens and the security log.

    Args:
        redis_url: The shared Redis every replica uses; empty keeps them in this process
            (one replica only: tests and a single local process).
    """

    def __init__(self, redis_url: str = "") -> None:
        self._redis: aioredis.Redis | None = (
            aioredis.Redis.from_url(redis_url, socket_timeout=_TIMEOUT_S,
                                    socket_connect_timeout=_TIMEOUT_S, decode_responses=True)
            if redis_url else None)
        self._local: dict[str, str] = {}
        self._known: OrderedDict[str, Owner] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    def _remember(self, session_id: str, owner: Owner) -> None:
        self._known[session_id] = owner
        self._known.move_to_end(session_id)
        if len(self._known) > KNOWN_OWNERS:
            self._known.popitem(last=False)

    async def _set_once(self, key: str, value: str, expire_at: int | None = None) -> bool:
        """SET NX; True when this call wrote it."""
        if self._redis is None:
            if key in self._local:
                return False
            self._local[key] = value
            return True
        try:
            written = await self._redis.set(key, value, nx=True, exat=expire_at)
        except (RedisError, OSError) as exc:
            raise OwnershipUnavailable(f"session store unavailable ({type(exc).__name__})") \
                from None
        return bool(written)

    async def _get(self, key: str) -> str | None:
        if self._redis is None:
            return self._local.get(key)
        try:
            value = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise OwnershipUnavailable(f"session store unavailable ({type(exc).__name__})") \
                from None
        return None if value is None else str(value)

    async def create(self, session_id: str, principal: Principal) -> bool:
        """Record ``principal`` as the owner of a new session; False if it exists."""
        owner = Owner.of(principal)
        created = await self._set_once(owner_key(session_id), owner.to_json())
        if created:
            self._remember(session_id, owner)
        return created

    async def check(self, session_id: str, principal: Principal) -> Verdict:
        """Whether ``principal`` may reopen an existing session.

        Raises:
            OwnershipUnavailable: Redis is away and this process never saw the session.
        """
        try:
            raw = await self._get(owner_key(session_id))
        except OwnershipUnavailable:
            known = self._known.get(session_id)
            if known is None:
                raise
            return Verdict.OWNER if known.admits(principal) else Verdict.DENIED
        if raw is None:
            return Verdict.UNKNOWN
        owner = Owner.from_json(raw)
        if owner is None:  # unreadable: refuse rather than guess
            return Verdict.DENIED
        self._remember(session_id, owner)
        return Verdict.OWNER if owner.admits(principal) else Verdict.DENIED

    async def claim(self, session_id: str, principal: Principal) -> Verdict:
        """Create the session for ``principal``, or check that it is theirs."""
        try:
            if await self.create(session_id, principal):
                return Verdict.CREATED
        except OwnershipUnavailable:
            if session_id not in self._known:
                raise
        return await self.check(session_id, principal)

    async def spend_token(self, token_id: str, expires_at: int) -> bool:
        """Mark a token as used; False when it was used before (a replay)."""
        expire = max(int(expires_at), int(time.time()) + 1)
        return await self._set_once(token_key(token_id), "1", expire_at=expire)

    def report(self, event: str, **fields: Any) -> None:
        """Append a refusal to the security log; never blocks, never raises.

        The log line always goes out; the Redis entry is written in the background
        (a Redis outage costs the entry, counted in the warning, not the refusal).
        """
        log.warning("access refused", extra={"security_event": event, **fields})
        if self._redis is None:
            return
        entry = {"event": event, "at_s": f"{time.time():.3f}",
                 **{k: str(v)[:256] for k, v in fields.items()}}
        task = asyncio.get_running_loop().create_task(self._append(entry))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _append(self, entry: dict[str, str]) -> None:
        assert self._redis is not None
        try:
            await self._redis.xadd(SECURITY_STREAM, entry,  # type: ignore[arg-type]
                                   maxlen=SECURITY_STREAM_MAXLEN, approximate=True)
        except (RedisError, OSError) as exc:
            log.warning("security log entry lost", extra={"error": type(exc).__name__})

    async def aclose(self) -> None:
        """Finish pending security-log writes and close the connection."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
