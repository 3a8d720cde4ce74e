"""Verify a session's audit stream: hash chain, contiguous ``seq``, nothing deleted.

``python -m services.orchestrator.audit_verify SESSION_ID [--redis-url URL] [--json]``
prints a summary and exits 0 when the stream is intact, 1 when it was tampered with
(or does not exist), 2 when it could not be read. The ``voxmesh-auditor`` ACL user
(deploy/redis/users.acl) has exactly the read access this needs.

What is checked, in stream order: every entry has the chained fields and nothing
else; ``seq`` runs 1, 2, 3, ... without gaps or going back; each ``hash`` links the
entry to the one before (the first to the session's genesis value). When the
server allows XINFO STREAM, its ``entries-added`` counter must equal the number of
entries, which also catches entries deleted or trimmed at the end of the stream.
Events the writer itself had to drop are not tampering: they show up as
``audit.dropped`` entries, summed in :attr:`VerifyReport.dropped_events`.

A plain SHA-256 chain proves an entry was not changed, removed or inserted by
anyone who did not also recompute every later hash; an admin who rebuilds the
whole stream can forge it. Keep admin credentials apart from the orchestrator's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from services.orchestrator.audit import stream_key
from services.orchestrator.audit_chain import (
    DROPPED_TYPE,
    ENTRY_FIELDS,
    HASH_FIELD,
    genesis_hash,
    link_hash,
)
from voxmesh.config import OrchestratorSettings

_PAGE = 1000
"""Entries read per XRANGE."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a stream.

    Attributes:
        seq: The first ``seq`` affected (a missing one, for a gap), or None.
        entry_id: The stream id of the entry where it was found, or "".
        kind: ``gap``, ``reordered``, ``hash``, ``malformed``, ``unchained_fields``,
            ``deleted`` or ``empty``.
        detail: One sentence for people.
    """

    seq: int | None
    entry_id: str
    kind: str
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """The outcome of :func:`verify`."""

    session_id: str
    entries: int = 0
    """Entries read from the stream."""
    last_seq: int = 0
    head_hash: str = ""
    """``hash`` of the last entry: publish it elsewhere to anchor the chain."""
    problems: list[Problem] = field(default_factory=list)
    dropped_events: int = 0
    """Events the writer declared dropped (buffer full), summed over its markers."""
    drop_markers: list[tuple[int, int]] = field(default_factory=list)
    """(seq of the ``audit.dropped`` entry, events it counts)."""
    entries_added: int | None = None
    """The stream's XINFO ``entries-added``; None when XINFO was not allowed."""

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        """The lowest ``seq`` any problem affects; None when intact."""
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    @property
    def first_problem(self) -> Problem | None:
        """The problem at :attr:`first_bad_seq` (or the first found)."""
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq is None, p.seq or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _entries(client: aioredis.Redis, key: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    start = "-"
    while True:
        page = await client.xrange(key, min=start, count=_PAGE) or []
        for entry_id, raw in page:
            yield _text(entry_id), {_text(k): _text(v) for k, v in (raw or {}).items()}
        if len(page) < _PAGE:
            return
        start = f"({_text(page[-1][0])}"


async def verify(client: aioredis.Redis, session_id: str) -> VerifyReport:
    """Check the audit stream of ``session_id``; read-only (XRANGE, XINFO STREAM).

    Raises:
        RedisError: Redis could not be read.
    """
    report = VerifyReport(session_id)
    prev_hash, expected = genesis_hash(session_id), 1
    async for entry_id, fields in _entries(client, stream_key(session_id)):
        report.entries += 1
        problem = _check(entry_id, fields, prev_hash, expected)
        if problem is not None:
            report.problems.append(problem)
        try:
            seq = int(fields["seq"])
        except (KeyError, ValueError):
            continue  # reported as malformed; the next entry is judged against the last good one
        if seq >= expected:  # an entry out of order is not what later entries chain from
            prev_hash, expected = fields.get(HASH_FIELD, ""), seq + 1
            report.last_seq, report.head_hash = seq, prev_hash
        if fields.get("type") == DROPPED_TYPE:
            count = _dropped_count(fields.get("data", ""))
            report.dropped_events += count
            report.drop_markers.append((seq, count))
    if report.entries == 0:
        report.problems.append(Problem(1, "", "empty", "the stream has no entries"))
        return report
    await _check_counters(client, report)
    return report


def _check(entry_id: str, fields: Mapping[str, str], prev_hash: str,
           expected: int) -> Problem | None:
    missing = ENTRY_FIELDS - fields.keys()
    if missing:
        return Problem(expected, entry_id, "malformed",
                       f"entry lacks {', '.join(sorted(missing))}")
    try:
        seq = int(fields["seq"])
    except ValueError:
        return Problem(expected, entry_id, "malformed", f"seq {fields['seq']!r} is not a number")
    if seq > expected:
        missing_range = str(expected) if seq == expected + 1 else f"{expected}..{seq - 1}"
        return Problem(expected, entry_id, "gap",
                       f"seq {missing_range} missing (next stored entry is seq {seq})")
    if seq < expected:
        return Problem(seq, entry_id, "reordered",
                       f"seq {seq} stored after seq {expected - 1}")
    if link_hash(prev_hash, fields) != fields[HASH_FIELD]:
        return Problem(seq, entry_id, "hash",
                       f"hash does not match: seq {seq} (or the hash of seq {seq - 1}) "
                       "was altered")
    extra = fields.keys() - ENTRY_FIELDS
    if extra:
        return Problem(seq, entry_id, "unchained_fields",
                       f"fields not covered by the chain: {', '.join(sorted(extra))}")
    return None


def _dropped_count(data: str) -> int:
    try:
        count = json.loads(data).get("count", 0)
    except (ValueError, AttributeError):
        return 0
    return count if isinstance(count, int) else 0


async def _check_counters(client: aioredis.Redis, report: VerifyReport) -> None:
    """Compare the stream's lifetime XADD count with what is there now."""
    try:
        info = await client.xinfo_stream(stream_key(report.session_id))
    except ResponseError:
        return  # XINFO not allowed for this user, or an old server: chain checks only
    added = {_text(k): v for k, v in info.items()}.get("entries-added")
    if added is None:
        return
    report.entries_added = int(added)
    missing = report.entries_added - report.entries
    if missing > 0:
        seq = report.last_seq + 1 if report.ok else None
        report.problems.append(Problem(
            seq, "", "deleted",
            f"{missing} entries were deleted or trimmed ({report.entries_added} ever added, "
            f"{report.entries} stored)"))


def summary(report: VerifyReport) -> str:
    """A few lines for people: the verdict first."""
    lines = [f"session {report.session_id}: {report.entries} entries, last seq "
             f"{report.last_seq}, head {report.head_hash[:16] or '-'}"]
    if report.ok:
        lines.append("INTACT")
    else:
        first = report.first_problem
        assert first is not None
        lines.append(f"TAMPERED: first bad seq {report.first_bad_seq}: {first.kind}: "
                     f"{first.detail}")
        lines += [f"  {p.kind} at seq {p.seq} (id {p.entry_id or '-'}): {p.detail}"
                  for p in report.problems]
    if report.dropped_events:
        markers = ", ".join(f"seq {seq} ({count})" for seq, count in report.drop_markers)
        lines.append(f"note: the writer dropped {report.dropped_events} events "
                     f"(buffer full), recorded at {markers}")
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> int:
    client = aioredis.from_url(args.redis_url, decode_responses=True,
                               socket_timeout=5, socket_connect_timeout=5)
    try:
        report = await verify(client, args.session_id)
    except (RedisError, OSError) as exc:
        print(f"cannot read the audit stream: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok,
                          "first_bad_seq": report.first_bad_seq}, indent=2))
    else:
        print(summary(report))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m services.orchestrator.audit_verify``."""
    parser = argparse.ArgumentParser(
        prog="python -m services.orchestrator.audit_verify",
        description="Verify the hash chain of a session's audit log. Exit 0: intact; "
                    "1: tampered or missing; 2: Redis could not be read.")
    parser.add_argument("session_id")
    parser.add_argument("--redis-url", default=None,
                        help="e.g. redis://voxmesh-auditor:PASSWORD@host:6379/0 "
                             "(default: VOXMESH_ORCHESTRATOR_REDIS_URL)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.redis_url is None:
        args.redis_url = OrchestratorSettings().redis_url
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
