"""Admission and rate limits of the gateway: origins, connections per IP/key/user, token
buckets, and each key's frame budget shared fairly by its connections.

All counters are per gateway instance (in memory): with N instances behind a load
balancer a client can hold up to N times the per-IP, per-key and per-user connection limits.
"""

from __future__ import annotations

import ipaddress
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


def is_loopback_peer(address: str) -> bool:
    """True when a peer address (after trusted-proxy resolution) is on this machine.

    Names are not addresses: a forwarded ``localhost`` or garbage is not loopback.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    return ip.is_loopback


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


class FairShare:
    """One connection's claim on its key's frame budget; made by :meth:`FairShares.hold`.

    Attributes:
        budget: The key's budget this share belongs to.
    """

    def __init__(self, budget: KeyBudget, level: float, now: float) -> None:
        self.budget = budget
        self._level = level
        self._at = now

    @property
    def rate(self) -> float:
        """Frames per second guaranteed to this connection: the key's rate over its
        connections."""
        return self.budget.rate / max(1, len(self.budget.shares))

    @property
    def capacity(self) -> float:
        """The burst of :attr:`rate`: the key's burst over its connections."""
        return self.budget.capacity / max(1, len(self.budget.shares))

    def take(self) -> bool:
        """Spend one frame: from this connection's share, else from what the key's other
        connections leave unused; False (nothing spent) when neither has one."""
        return self.budget.take(self)

    def refill(self, now: float) -> None:
        """Credit the time since the last refill at the current :attr:`rate`."""
        self._level = min(self.capacity, self._level + (now - self._at) * self.rate)
        self._at = now

    def spend(self, now: float) -> bool:
        """Take one frame from this share alone; False when it has none."""
        self.refill(now)
        if self._level < 1:
            return False
        self._level -= 1
        return True


class KeyBudget:
    """The frame budget of one key: ``rate`` per second, burst ``capacity``, split fairly.

    Each of the key's ``n`` connections is guaranteed ``rate / n`` frames per second (burst
    ``capacity / n``), recomputed as connections come and go, whatever the others send.
    What a connection leaves unused goes to a spare pool that refills at ``rate`` and is
    drained by every frame sent within a share as well: a connection over its share may
    borrow only what the key as a whole has not used, so a flood on some connections never
    takes the share of another, and over time the key's total stays within ``rate``.
    """

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.shares: set[FairShare] = set()
        self._spare = capacity  # from -capacity (debt of frames sent within shares) to capacity
        self._at = time.monotonic()

    def take(self, share: FairShare) -> bool:
        """See :meth:`FairShare.take`."""
        if share.spend(self._refill_spare()):
            self._spare = max(-self.capacity, self._spare - 1)
            return True
        if self._spare >= 1:  # borrow what the key's connections together left unused
            self._spare -= 1
            return True
        return False

    def join(self) -> FairShare:
        """A share for a new connection.

        Its burst starts at most at what the key has to spare (at least one frame, for its
        ``session.start``), so that reconnecting over and over mints no fresh bursts.
        """
        now = self._settle()
        level = min(self.capacity / (len(self.shares) + 1), max(1.0, self._spare))
        share = FairShare(self, level, now)
        self.shares.add(share)
        return share

    def leave(self, share: FairShare) -> None:
        """Forget a closed connection; the others' shares grow."""
        self._settle()
        self.shares.discard(share)

    def _refill_spare(self) -> float:
        now = time.monotonic()
        self._spare = min(self.capacity, self._spare + (now - self._at) * self.rate)
        self._at = now
        return now

    def _settle(self) -> float:
        """Credit every share at the current rate before the number of shares changes."""
        now = self._refill_spare()
        for share in self.shares:
            share.refill(now)
        return now


class FairShares:
    """A :class:`KeyBudget` per name (an API key's id), alive while it has connections.

    Args:
        rate: Frames per second of each key, all its connections together.
        capacity: Burst of each key.
    """

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._budgets: dict[str, KeyBudget] = {}

    @contextmanager
    def hold(self, name: str) -> Iterator[FairShare]:
        """A fair share of ``name``'s budget for the duration of the block."""
        budget = self._budgets.setdefault(name, KeyBudget(self.rate, self.capacity))
        share = budget.join()
        try:
            yield share
        finally:
            budget.leave(share)
            if not budget.shares:
                del self._budgets[name]  # the map holds only keys with open connections
