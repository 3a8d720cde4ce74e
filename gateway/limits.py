"""Admission and rate limits of the gateway: origins, connections per IP/key, token buckets.

All counters are per gateway instance (in memory): with N instances behind a load
balancer a client can hold up to N times the per-IP and per-key connection limits.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def hostname(host_header: str) -> str:
    """The host name of a ``Host`` header value (``"[::1]:8080"`` -> ``"::1"``)."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def is_loopback_host(host_header: str) -> bool:
    """True when a ``Host`` header names this machine by a loopback name or address."""
    return hostname(host_header) in LOOPBACK_HOSTS


class OriginPolicy:
    """Which browser origins may open sessions.

    Args:
        allowed: Entries of ``VOXMESH_GATEWAY_ALLOWED_ORIGINS``: exact origins
            (``https://app.example.com``), ``self`` (the origin the request was sent to),
            ``localhost`` (any http(s) origin on a loopback host, any port) or ``*``.
    """

    def __init__(self, allowed: list[str]) -> None:
        self.any = "*" in allowed
        self.self_origin = "self" in allowed
        self.localhost = "localhost" in allowed
        self.exact = {o.rstrip("/").lower() for o in allowed
                      if o not in ("*", "self", "localhost")}

    def allows(self, origin: str | None, host_header: str, scheme: str = "http") -> bool:
        """Whether a request with this ``Origin`` (None: not a browser) may go on."""
        if origin is None or self.any:
            return True  # non-browser clients send no Origin; they still need a token
        origin = origin.rstrip("/").lower()
        if origin in self.exact:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https"):
            return False
        if self.localhost and (parts.hostname or "") in LOOPBACK_HOSTS:
            return True
        own = {f"{s}://{host_header.lower()}" for s in (scheme, "http", "https")}
        return self.self_origin and origin in own

    def lists(self, origin: str) -> bool:
        """True when ``origin`` is named exactly (not just allowed by ``self``/``*``)."""
        return origin.rstrip("/").lower() in self.exact


class ConnectionLimiter:
    """Counts open connections per name (an IP, a key id) and refuses those over ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def full(self, name: str) -> bool:
        """True when ``name`` already holds ``limit`` connections."""
        return self._open[name] >= self.limit

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Count one connection of ``name`` for the duration of the block."""
        self._open[name] += 1
        try:
            yield
        finally:
            self._open[name] -= 1
            if self._open[name] <= 0:
                del self._open[name]  # the map holds only names with open connections


class TokenBucket:
    """A token bucket: ``rate`` units per second, at most ``capacity`` saved up.

    Args:
        rate: Units added per second.
        capacity: Units the bucket holds; also its initial content.
    """

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._level = capacity
        self._at = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        """Take ``amount`` units if there are enough; False (and nothing taken) if not."""
        now = time.monotonic()
        self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
        self._at = now
        if amount > self._level:
            return False
        self._level -= amount
        return True


class SharedBuckets:
    """One :class:`TokenBucket` per name (an API key's id), shared by its connections.

    A bucket lives while some connection holds it, so the map stays as small as the
    set of names with open connections.

    Args:
        rate: Units per second of each bucket.
        capacity: Burst of each bucket.
    """

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._buckets: dict[str, TokenBucket] = {}
        self._holders: Counter[str] = Counter()

    @contextmanager
    def hold(self, name: str) -> Iterator[TokenBucket]:
        """The bucket of ``name`` for the duration of the block."""
        bucket = self._buckets.setdefault(name, TokenBucket(self.rate, self.capacity))
        self._holders[name] += 1
        try:
            yield bucket
        finally:
            self._holders[name] -= 1
            if self._holders[name] <= 0:
                del self._holders[name]
                del self._buckets[name]
