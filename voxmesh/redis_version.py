"""The one Redis version VoxMesh supports (7.0 or later), and how each part checks it.

The audit log's guarantees need Redis 7: the writer appends through a ``#!lua`` script
(compare-and-append, :mod:`services.orchestrator.audit_append`), and the verifier counts
removed entries with XINFO STREAM's ``entries-added`` counter, which Redis 6 does not keep
(on 6.x a deleted tail is invisible). Rather than weaker checks on older servers, every
part refuses them: the orchestrator at start-up, the verifier per stream, ``voxmesh up``
before it starts a redis-server.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

MIN_VERSION = (7, 0)
"""The oldest Redis the audit log's guarantees hold on."""

WHY = ("the audit log needs Redis >= 7.0: its tamper checks count removed entries with "
       "XINFO STREAM's entries-added counter and its writers append through a Redis 7 "
       "script; Redis 6 has neither, so a deleted tail would go unseen")


class RedisVersionError(RuntimeError):
    """The Redis server (or binary) is older than :data:`MIN_VERSION`; says which and why."""


def parse(version: str) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``; anything unreadable -> ``()`` (older than all)."""
    parts = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in parts.group(0).split(".")) if parts else ()


def supported(version: str) -> bool:
    """Whether ``version`` is at least :data:`MIN_VERSION`."""
    return parse(version) >= MIN_VERSION


def require(version: str, where: str) -> None:
    """Raise :class:`RedisVersionError` naming ``where`` unless ``version`` is supported."""
    if not supported(version):
        raise RedisVersionError(f"{where} is Redis {version or 'of unknown version'}; {WHY}")


async def server_version(client: Any) -> str:
    """The version a connected Redis reports in its HELLO reply.

    HELLO (not INFO) because every VoxMesh ACL user may run it; INFO is a dangerous
    command the writers' users do not get.

    Args:
        client: A ``redis.asyncio.Redis``.

    Raises:
        redis.exceptions.RedisError: Redis could not be asked.
    """
    reply = await client.execute_command("HELLO")
    if isinstance(reply, list | tuple):  # RESP2: a flat list of names and values
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    fields = {_text(k): v for k, v in reply.items()}
    return _text(fields.get("version", ""))


def binary_version(path: str) -> str:
    """The version a ``redis-server`` binary prints (``Redis server v=7.0.15 ...``), or ""."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except OSError:
        return ""
    found = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return found.group(1) if found else ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
