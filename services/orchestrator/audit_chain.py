"""The hash chain of a session's audit stream: entry fields, genesis and link rule.

Each stream entry holds the flat string fields of :data:`CHAINED_FIELDS` plus
``hash``. ``hash`` is the hex SHA-256 of the previous entry's ``hash``, a newline
and the canonical form of this entry: the JSON array of the chained field values,
exactly as stored (strings, in :data:`CHAINED_FIELDS` order, compact separators,
UTF-8). The first entry (``seq`` 1) chains from :func:`genesis_hash` of the session
id, so an entry cannot be moved to another session's stream unnoticed.

Hashing the stored strings (not re-serialised values) lets a verifier check an
entry without knowing how its ``data`` JSON was produced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

CHAIN_VERSION = "voxmesh-audit-v1"
"""Bumped if the link rule ever changes; part of the genesis value."""

CHAINED_FIELDS = ("ts_us", "seq", "type", "component", "turn_id", "correlation_id", "data")
"""Fields covered by the hash, in canonical order."""

HASH_FIELD = "hash"
ENTRY_FIELDS = frozenset((*CHAINED_FIELDS, HASH_FIELD))
"""Every field an entry has; anything else in an entry is not covered by the chain."""

DROPPED_TYPE = "audit.dropped"
"""Entry the writer adds when events of a session had to be dropped (buffer full)."""


def genesis_hash(session_id: str) -> str:
    """The value the first entry of ``session_id``'s stream chains from."""
    return hashlib.sha256(f"{CHAIN_VERSION}:genesis:{session_id}".encode()).hexdigest()


def link_hash(prev_hash: str, fields: Mapping[str, str]) -> str:
    """The ``hash`` of an entry with ``fields`` following an entry whose hash is ``prev_hash``.

    Raises:
        KeyError: a chained field is missing from ``fields``.
    """
    canonical = json.dumps([fields[name] for name in CHAINED_FIELDS],
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a session's chain ends: the last entry's ``seq`` and ``hash``."""

    seq: int
    hash: str

    @classmethod
    def start(cls, session_id: str) -> ChainHead:
        """The head of an empty stream."""
        return cls(0, genesis_hash(session_id))


def seal(head: ChainHead, fields: dict[str, str]) -> tuple[ChainHead, dict[str, str]]:
    """Give ``fields`` (all chained fields but ``seq``) the next ``seq`` and its ``hash``.

    Returns:
        The new head and the complete entry fields, ready for XADD.
    """
    entry = {**fields, "seq": str(head.seq + 1)}
    entry[HASH_FIELD] = link_hash(head.hash, entry)
    return ChainHead(head.seq + 1, entry[HASH_FIELD]), entry
