"""Verify a session's audit stream: hash chain, ``seq`` order, and every removed entry counted.

``python -m services.orchestrator.audit_verify SESSION_ID [--redis-url URL] [--json]``
prints a summary and exits 0 when the stream is intact, 1 when it was tampered with, does
not exist or cannot be vouched for, 2 when it could not be read. The ``voxmesh-auditor``
ACL user (deploy/redis/users.acl) has exactly the read access this needs.

Two sources are compared. The chain: every entry has the chained fields and nothing else,
each ``hash`` links the entry to the one holding the previous ``seq`` (the first to the
session's genesis value), and ``seq`` runs 1, 2, 3, ... in stream order. Redis's own
counters (XINFO STREAM, Redis >= 7): ``entries-added`` counts every XADD the stream ever
took and cannot be lowered by anyone who may not run XSETID, so ``entries-added - length``
is exactly how many entries were removed, by XDEL, XTRIM or XADD's MAXLEN/MINID alike. The
chain says where: ``seq`` missing before the first stored entry (``removed_head``), between
stored ones (``removed_middle``), an entry stored out of place (``reordered``, its original
slot removed); what the chain cannot place is removed at the end when the stream's
``last-generated-id`` is no longer stored (``removed_tail``), else somewhere unknown
(``removed``: e.g. entries rewritten with recomputed hashes). A stream that exists without
entries was ``emptied``. Every removal kind carries the number of entries lost.

On a Redis older than 7.0 (no ``entries-added``), or for a user who may not run XINFO
STREAM, removals at the end cannot be seen: the verifier then reports ``unverifiable``
and never INTACT. Events the writer itself had to drop are not tampering: they show up as
``audit.dropped`` entries, summed in :attr:`VerifyReport.dropped_events`.

A plain SHA-256 chain proves an entry was not changed, removed or inserted by anyone who
did not also recompute every later hash; the counters catch removal even then. What they
cannot catch: entries appended by someone holding a user that may XADD (the chain rule is
public), and an admin (who may XSETID, DEL and re-create) rebuilding a stream whole. See
docs/audit.md for who can do what.
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
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from services.orchestrator.audit import stream_key
from services.orchestrator.audit_chain import (
    DROPPED_TYPE,
    ENTRY_FIELDS,
    HASH_FIELD,
    genesis_hash,
    link_hash,
)
from voxmesh import redis_version
from voxmesh.config import OrchestratorSettings

_PAGE = 1000
"""Entries read per XRANGE."""

REMOVAL_KINDS = frozenset({"removed_head", "removed_middle", "removed_tail", "removed",
                           "emptied"})
"""Problems whose ``count`` is a number of entries lost."""
UNVERIFIED_KINDS = frozenset({"empty", "unverifiable"})
"""Problems that are not evidence of tampering, only of nothing to vouch for."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a stream.

    Attributes:
        seq: The first ``seq`` affected (the first missing one, for a removal), or None.
        entry_id: The stream id of the entry where it was found, or "".
        kind: ``removed_head``, ``removed_middle``, ``removed_tail``, ``removed``,
            ``emptied``, ``reordered``, ``duplicate``, ``forked``, ``skipped_seq``, ``hash``,
            ``malformed``, ``unchained_fields``, ``empty`` or ``unverifiable``.
        detail: One sentence for people.
        count: Entries concerned; for the removal kinds, how many were lost.
    """

    seq: int | None
    entry_id: str
    kind: str
    detail: str
    count: int = 1


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
    """The stream's XINFO ``entries-added``; None when it could not be read."""
    removed_entries: int | None = None
    """``entries-added - length``: entries ever removed from the stream, by any means."""
    server_version: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    @property
    def tampered(self) -> bool:
        """True when a problem is evidence of tampering (not just a missing stream)."""
        return any(p.kind not in UNVERIFIED_KINDS for p in self.problems)

    @property
    def lost_entries(self) -> int:
        """Entries lost, summed over the removal problems."""
        return sum(p.count for p in self.problems if p.kind in REMOVAL_KINDS)

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


@dataclass(frozen=True, slots=True)
class _Counters:
    """XINFO STREAM, read before the entries (one snapshot)."""

    length: int
    entries_added: int
    last_generated_id: str
    last_entry_id: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _entries(client: aioredis.Redis, key: str,
                   last_id: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    start = "-"
    while True:
        page = await client.xrange(key, min=start, max=last_id, count=_PAGE) or []
        for entry_id, raw in page:
            yield _text(entry_id), {_text(k): _text(v) for k, v in (raw or {}).items()}
        if len(page) < _PAGE:
            return
        start = f"({_text(page[-1][0])}"


async def _counters(client: aioredis.Redis, report: VerifyReport) -> _Counters | None:
    """The stream's counters; None when they cannot be had (a problem then says why)."""
    report.server_version = await redis_version.server_version(client)
    try:
        info = await client.xinfo_stream(stream_key(report.session_id))
    except NoPermissionError as exc:
        report.problems.append(Problem(
            None, "", "unverifiable", f"XINFO STREAM refused ({exc}): entries removed at the "
            "end of the stream cannot be counted; verify as the voxmesh-auditor user", 0))
        return None
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            report.problems.append(Problem(1, "", "empty", "no stream for this session"))
        else:
            report.problems.append(Problem(1, "", "malformed",
                                           f"the session's key is not a stream: {exc}"))
        return None
    fields = {_text(k): v for k, v in info.items()}
    if not redis_version.supported(report.server_version) or "entries-added" not in fields:
        report.problems.append(Problem(
            None, "", "unverifiable",
            f"Redis {report.server_version} keeps no entries-added counter: entries removed "
            f"at the end of the stream cannot be seen ({redis_version.WHY})", count=0))
        return None
    last = fields.get("last-entry")
    report.entries_added = int(fields["entries-added"])
    return _Counters(int(fields["length"]), report.entries_added,
                     _text(fields.get("last-generated-id", "")),
                     _text(last[0]) if last else "")


async def verify(client: aioredis.Redis, session_id: str) -> VerifyReport:
    """Check the audit stream of ``session_id``; read-only (HELLO, XINFO STREAM, XRANGE).

    Raises:
        RedisError: Redis could not be read.
    """
    report = VerifyReport(session_id)
    counters = await _counters(client, report)
    if counters is None and any(p.kind != "unverifiable" for p in report.problems):
        return report  # no stream, or not a stream
    if counters is not None and counters.entries_added == 0:
        report.problems.append(Problem(1, "", "empty", "the session's stream never held an entry"))
        return report
    if counters is not None and counters.length == 0:
        report.removed_entries = counters.entries_added
        report.problems.append(Problem(
            1, "", "emptied", f"the stream exists but holds no entries: all "
            f"{counters.entries_added} entries it ever took were removed",
            count=counters.entries_added))
        return report
    walk = _ChainWalk(session_id)
    async for entry_id, fields in _entries(client, stream_key(session_id),
                                           counters.last_entry_id if counters else "+"):
        walk.add(report, entry_id, fields)
    walk.finish(report)
    if counters is not None:
        _count_removals(report, walk, counters)
    return report


class _ChainWalk:
    """Checks entries in stream order; a link whose predecessor comes later is checked at
    the end, so a moved entry is told apart from an altered one."""

    def __init__(self, session_id: str) -> None:
        self.genesis = genesis_hash(session_id)
        self.hashes: dict[int, str] = {}
        """seq -> stored ``hash`` of its first occurrence."""
        self.expected = 1
        self.out_of_order = 0
        self.deferred: list[tuple[str, dict[str, str], bool]] = []
        """(entry id, fields, stored out of order) whose predecessor was not stored before."""
        self.missing = 0
        """``seq`` below the highest stored one that no entry holds (set by :meth:`finish`)."""

    def add(self, report: VerifyReport, entry_id: str, fields: dict[str, str]) -> None:
        report.entries += 1
        missing = ENTRY_FIELDS - fields.keys()
        if missing:
            report.problems.append(Problem(self.expected, entry_id, "malformed",
                                           f"entry lacks {', '.join(sorted(missing))}"))
            return
        if not fields["seq"].isdecimal() or int(fields["seq"]) < 1:
            report.problems.append(Problem(self.expected, entry_id, "malformed",
                                           f"seq {fields['seq']!r} is not a positive number"))
            return
        seq = int(fields["seq"])
        extra = fields.keys() - ENTRY_FIELDS
        if extra:
            report.problems.append(Problem(
                seq, entry_id, "unchained_fields",
                f"fields not covered by the chain: {', '.join(sorted(extra))}"))
        if seq in self.hashes:
            if self.hashes[seq] == fields[HASH_FIELD]:
                report.problems.append(Problem(seq, entry_id, "duplicate",
                                               f"seq {seq} is stored a second time"))
            else:
                report.problems.append(Problem(
                    seq, entry_id, "forked", f"a second, different entry holds seq {seq}: "
                    "the chain was forked (two writers sealed on one head) or forged"))
            return
        in_order = seq >= self.expected
        if in_order:
            self.expected = seq + 1
            report.last_seq, report.head_hash = seq, fields[HASH_FIELD]
        else:
            self.out_of_order += 1
        self.hashes[seq] = fields[HASH_FIELD]
        if fields.get("type") == DROPPED_TYPE:
            count = _dropped_count(fields.get("data", ""))
            report.dropped_events += count
            report.drop_markers.append((seq, count))
        prev = self._prev(seq)
        if prev is None:
            self.deferred.append((entry_id, fields, not in_order))
        else:
            self._link(report, entry_id, fields, prev, not in_order)

    def _prev(self, seq: int) -> str | None:
        return self.genesis if seq == 1 else self.hashes.get(seq - 1)

    def _link(self, report: VerifyReport, entry_id: str, fields: Mapping[str, str], prev: str,
              moved: bool) -> None:
        seq = int(fields["seq"])
        if link_hash(prev, fields) != fields[HASH_FIELD]:
            report.problems.append(Problem(
                seq, entry_id, "hash", f"hash does not match: seq {seq} (or the hash of seq "
                f"{seq - 1}) was altered or forged"))
        elif moved:
            report.problems.append(Problem(
                seq, entry_id, "reordered", f"seq {seq} (content intact) is stored after a "
                "higher seq: it was removed from its place and added again"))

    def finish(self, report: VerifyReport) -> None:
        """Check the deferred links; report the ``seq`` the stream lacks."""
        for entry_id, fields, moved in self.deferred:
            prev = self._prev(int(fields["seq"]))
            if prev is not None:  # else its predecessor is missing: reported just below
                self._link(report, entry_id, fields, prev, moved)
        missing = sorted(set(range(1, self.expected)) - self.hashes.keys())
        for first, last in _runs(missing):
            count = last - first + 1
            span = str(first) if count == 1 else f"{first}..{last}"
            if first == 1:
                report.problems.append(Problem(
                    1, "", "removed_head", f"seq {span} missing before the first stored entry: "
                    f"{_n_entries(count)} removed from the head (XTRIM, XADD MAXLEN/MINID or XDEL)",
                    count))
            else:
                report.problems.append(Problem(
                    first, "", "removed_middle", f"seq {span} missing: {_n_entries(count)} removed",
                    count))
        self.missing = len(missing)


def _n_entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted numbers, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _count_removals(report: VerifyReport, walk: _ChainWalk, counters: _Counters) -> None:
    """Hold the chain's account of removals against Redis's own count."""
    if report.entries != counters.length:
        report.problems.append(Problem(
            None, "", "unverifiable", f"the stream changed while it was read ({report.entries} "
            f"entries read, {counters.length} counted): verify it again", count=0))
        return
    removed = counters.entries_added - counters.length
    report.removed_entries = removed
    # A moved entry's original slot was removed; a missing seq was removed (or never stored).
    rest = removed - walk.missing - walk.out_of_order
    if counters.last_generated_id != counters.last_entry_id:
        count = max(rest, 1)
        report.problems.append(Problem(
            report.last_seq + 1, "", "removed_tail",
            f"{_n_entries(count)} removed from the end (the newest entry the stream took, "
            f"{counters.last_generated_id}, is gone; {counters.entries_added} ever added, "
            f"{counters.length} stored)", count))
    elif rest > 0:
        report.problems.append(Problem(
            None, "", "removed",
            f"{_n_entries(rest)} removed that the chain cannot place ({counters.entries_added} "
            f"ever added, {counters.length} stored): e.g. entries rewritten with recomputed "
            "hashes, or entries without a seq", rest))
    elif rest < 0:
        report.problems.append(Problem(
            None, "", "skipped_seq",
            f"{-rest} of the missing seq were never stored (Redis counts fewer removals): "
            "entries were added with seq numbers skipped", -rest))


def _dropped_count(data: str) -> int:
    try:
        count = json.loads(data).get("count", 0)
    except (ValueError, AttributeError):
        return 0
    return count if isinstance(count, int) else 0


def summary(report: VerifyReport) -> str:
    """A few lines for people: the verdict first."""
    lines = [f"session {report.session_id}: {report.entries} entries, last seq "
             f"{report.last_seq}, head {report.head_hash[:16] or '-'}"]
    first = report.first_problem
    if first is None:
        lines.append("INTACT")
    elif report.tampered:
        first = min((p for p in report.problems if p.kind not in UNVERIFIED_KINDS),
                    key=lambda p: (p.seq is None, p.seq or 0))
        lost = (f"; {_n_entries(report.lost_entries)} lost in all" if report.lost_entries
                else "")
        lines.append(f"TAMPERED: first bad seq {report.first_bad_seq}: {first.kind}: "
                     f"{first.detail}{lost}")
    else:
        lines.append(f"NOT VERIFIED: {first.kind}: {first.detail}")
    lines += [f"  {p.kind} at seq {p.seq} (id {p.entry_id or '-'}, {p.count}): {p.detail}"
              for p in report.problems]
    if report.dropped_events:
        markers = ", ".join(f"seq {seq} ({count})" for seq, count in report.drop_markers)
        lines.append(f"note: the writer dropped {report.dropped_events} events "
                     f"(buffer full or refused), recorded at {markers}")
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
        print(json.dumps({**asdict(report), "ok": report.ok, "tampered": report.tampered,
                          "lost_entries": report.lost_entries,
                          "first_bad_seq": report.first_bad_seq}, indent=2))
    else:
        print(summary(report))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m services.orchestrator.audit_verify``."""
    parser = argparse.ArgumentParser(
        prog="python -m services.orchestrator.audit_verify",
        description="Verify the hash chain of a session's audit log and count removed "
                    "entries. Exit 0: intact; 1: tampered, missing or not verifiable "
                    "(Redis < 7); 2: Redis could not be read.")
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
