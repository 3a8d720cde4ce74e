"""The append-only, hash-chained session audit log: one Redis Stream per session.

``emit`` only puts the event on a bounded in-memory queue and returns; a single writer task
drains it in batches, seals each session's events into its hash chain (``seq`` and
``hash``, see :mod:`services.orchestrator.audit_chain`) and appends them with one
compare-and-append script call per session (:mod:`services.orchestrator.audit_append`), all
of a batch's calls in one round trip. Nothing on the audio path ever awaits Redis, and the
writer only ever appends (plain ``XADD *``): it never deletes, trims or rewrites an entry.

Many writers, one chain: a session's entries go in only if its stream still ends with the
``seq`` and ``hash`` they were sealed on; Redis runs the check and the XADDs as one script,
so concurrent writers are serialised. When the stream moved (another replica wrote the
session, or this process never did), the script writes nothing and answers the actual last
``seq`` and ``hash``; the writer seals that session's pending events again on top of them
and retries (a few rounds per batch, then again after a short pause; events are never
dropped for it). Any number of orchestrator replicas, in any order (a session moved
A -> B -> A, or two replicas writing one session at once), thus produce one valid chain.
The per-process chain-head cache only saves that extra round trip; it is never trusted.

Redis down: the batch being written and the queue stay buffered (bounded); the writer
retries with backoff and writes them, in order, on recovery. When a call's fate is unknown
(the connection failed after it was sent), the retry finds out from the stream itself: if
the stream moved from where the entries were sealed and holds their first ``seq`` with
their ``hash``, they were stored (a script appends a session's entries whole) and are
skipped, so nothing is written twice.

Redis version: the writer checks the server's version (HELLO) before its first write and
refuses a Redis older than 7.0 (:mod:`voxmesh.redis_version` says why): it keeps the
events buffered and logs the reason instead of writing where the checks would not hold.

Drops: an event that finds the queue full is dropped and counted (per session and in
``voxmesh_orchestrator_audit_dropped_total{reason="queue_full"}``). Dropped events never
get a ``seq``, so ``seq`` stays contiguous over what was written; instead, the next entry
of that session is an ``audit.dropped`` entry whose data carries ``count`` and the
timestamps of the first and last dropped event. A verifier sees a counted gap at exactly
the place events went missing.

Rejected sessions: Redis may refuse one session's stream for good while serving the others
(its key holds another type: WRONGTYPE; the ACL denies it: NOPERM). Each session has its
own script call, so the other sessions' entries are written; the refused session's events
are dropped (``reason="rejected"``) and logged once with Redis's answer. A refused call
wrote nothing, so nothing is retried and nothing can be written twice; the session's next
events try again, and if its stream accepts them they start with an ``audit.dropped``
entry counting what was lost. Errors about the server rather than the key (OOM, READONLY,
MISCONF, BUSY, ...) are treated like an outage: the whole batch is kept and retried.

What this does not do (see docs/audit.md): anyone holding the writer's Redis user can
still append entries of their own (the chain rule is public), and XADD's MAXLEN/MINID
options cannot be denied by an ACL; such trims are not prevented, they are detected and
counted by :mod:`services.orchestrator.audit_verify`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from services.orchestrator import metrics
from services.orchestrator.audit_append import (
    EMPTY,
    Appended,
    AppendRequest,
    Moved,
    Tip,
    compare_and_append,
)
from services.orchestrator.audit_chain import DROPPED_TYPE, ChainHead, seal
from voxmesh import redis_version

log = logging.getLogger(__name__)

STREAM_KEY = "voxmesh:session:{session_id}"

CAS_ROUNDS = 8
"""Compare-and-append rounds per batch before pausing (other writers keep moving the head)."""


def stream_key(session_id: str) -> str:
    """Redis key of a session's audit stream."""
    return STREAM_KEY.format(session_id=session_id)


_SERVER_STATE_ERRORS = (OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError,
                        MasterDownError)
_SERVER_STATE_CODES = frozenset({"MISCONF", "BUSY", "NOREPLICAS", "LOADING"})
"""Error codes about the server's state, not the key: every session would get them."""


def rejects_session(error: BaseException) -> bool:
    """Whether ``error``, answered to one session's command, is about that session's key
    (WRONGTYPE, NOPERM, ...) rather than about the server being unable to write now."""
    if not isinstance(error, ResponseError) or isinstance(error, _SERVER_STATE_ERRORS):
        return False
    return str(error).split(" ", 1)[0] not in _SERVER_STATE_CODES


def now_us() -> int:
    """Wall-clock time in microseconds since the epoch, the unit of ``ts_us``."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event of a session, before the writer gives it a ``seq`` and ``hash``."""

    session_id: str
    type: str
    component: str
    turn_id: str
    ts_us: int
    data: dict[str, Any]
    correlation_id: str = ""

    def fields(self) -> dict[str, str]:
        """Stream entry fields but ``seq``/``hash``; ``data`` is JSON so entries stay flat."""
        return {
            "ts_us": str(self.ts_us),
            "type": self.type,
            "component": self.component,
            "turn_id": self.turn_id,
            "correlation_id": self.correlation_id,
            "data": json.dumps(self.data, separators=(",", ":"), ensure_ascii=False,
                               sort_keys=True, default=str),
        }


@dataclass(slots=True)
class _Drops:
    """Events of one session dropped since its last ``audit.dropped`` entry."""

    count: int = 0
    first_ts_us: int = 0
    last_ts_us: int = 0

    def add(self, ts_us: int) -> None:
        self.first_ts_us = self.first_ts_us or ts_us
        self.last_ts_us = ts_us
        self.count += 1

    def merge(self, count: int, first_ts_us: int, last_ts_us: int) -> None:
        """Take in the drops an ``audit.dropped`` entry that was not written declared."""
        self.count += count
        if first_ts_us and (not self.first_ts_us or first_ts_us < self.first_ts_us):
            self.first_ts_us = first_ts_us
        self.last_ts_us = max(self.last_ts_us, last_ts_us)

    def marker(self, session_id: str) -> AuditEvent:
        """The ``audit.dropped`` event declaring these drops."""
        return AuditEvent(session_id, DROPPED_TYPE, "audit", "", now_us(),
                          {"count": self.count, "first_ts_us": self.first_ts_us,
                           "last_ts_us": self.last_ts_us})


@dataclass(slots=True)
class _Group:
    """One session's events of a batch, sealed on the tip its stream is believed to end with."""

    session_id: str
    events: list[AuditEvent] = field(default_factory=list)
    expected: Tip = EMPTY
    """The stream's last entry these entries were sealed on."""
    entries: list[dict[str, str]] = field(default_factory=list)
    """Complete entry fields, in write order."""
    uncertain: bool = False
    """An attempt failed in a way that may have stored the entries: check before resealing."""

    def seal(self, expected: Tip, head: ChainHead) -> None:
        """(Re)give the events their ``seq`` and ``hash``, following ``head``."""
        self.expected, self.entries = expected, []
        for event in self.events:
            head, entry = seal(head, event.fields())
            self.entries.append(entry)

    @property
    def last(self) -> ChainHead:
        """The chain head once these entries are stored."""
        return ChainHead(int(self.entries[-1]["seq"]), self.entries[-1]["hash"])


@dataclass(slots=True)
class _Pending:
    """A batch until Redis has taken (or for good refused) every session's entries."""

    groups: dict[str, _Group] = field(default_factory=dict)
    taken: int = 0
    """How many events came off the queue (``task_done`` owed)."""

    @property
    def size(self) -> int:
        return sum(len(group.events) for group in self.groups.values())


class AuditLog:
    """Batches audit events into per-session, hash-chained Redis Streams from a bounded queue.

    Args:
        redis_url: Where to write, e.g. ``redis://voxmesh-orchestrator:PASSWORD@redis:6379/0``;
            the user needs only the commands of the ``voxmesh-orchestrator`` ACL user
            (deploy/redis/users.acl). Redis 7.0 or later.
        max_queue: Events buffered before new ones are dropped (and counted).
        batch_size: Most events per write round trip (one script call per session in it).
        max_backoff_s: Longest pause between write attempts while Redis fails.
        max_sessions: Chain heads cached in memory; a session not cached costs one extra
            round trip on its next write (the script answers its actual head).
    """

    def __init__(self, redis_url: str, max_queue: int = 10_000, batch_size: int = 200, *,
                 max_backoff_s: float = 5.0, max_sessions: int = 10_000) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("audit max_queue and batch_size must be at least 1")
        # No client-side retries: the writer retries itself, and checks what was stored first.
        self._redis = aioredis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True,
            retry=Retry(NoBackoff(), 0))
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(max_queue)
        self._batch_size = batch_size
        self._max_backoff_s = max_backoff_s
        self._max_sessions = max(max_sessions, 2 * batch_size)
        self._writer: asyncio.Task[None] | None = None
        self._batch: list[AuditEvent] = []
        self._pending: _Pending | None = None
        self._heads: OrderedDict[str, ChainHead] = OrderedDict()
        self._drops: dict[str, _Drops] = {}
        self._rejected: OrderedDict[str, _Drops] = OrderedDict()
        """Sessions whose stream refused writes (logged once), with what it refused since
        the last ``audit.dropped`` entry was sealed for them."""
        self._dropped_total = 0
        self._server_version = ""
        """The Redis version, once checked (see :meth:`check_server`)."""

    # -- the audio-path side: synchronous, never blocks -----------------------------------

    def emit(self, session_id: str, type: str, component: str = "orchestrator",
             turn_id: str = "", correlation_id: str = "", **data: Any) -> None:
        """Queue an event without waiting; drop and count it if the buffer is full.

        Args:
            session_id: The session; its stream is ``voxmesh:session:{session_id}``.
            type: Event type, e.g. ``state`` or ``transcript.final``.
            component: Who produced it (``orchestrator``, ``client``, ``stt``, ...).
            turn_id: The turn it belongs to, or "".
            correlation_id: Ties entries of one request together across services, or "".
            **data: JSON-serialisable details (stored as the ``data`` field).
        """
        event = AuditEvent(session_id, type, component, turn_id, now_us(), data, correlation_id)
        if session_id in self._drops and not self._queue.full():
            # The gap is recorded before anything that happened after it.
            self._queue.put_nowait(self._drop_marker(session_id))
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drops.setdefault(session_id, _Drops()).add(event.ts_us)
            self._dropped_total += 1
            metrics.AUDIT_DROPPED.labels("queue_full").inc()
        metrics.AUDIT_BACKLOG.set(self.backlog)

    @property
    def backlog(self) -> int:
        """Events buffered in memory and not yet confirmed written."""
        pending = self._pending.size if self._pending else 0
        return self._queue.qsize() + len(self._batch) + pending

    @property
    def dropped(self) -> int:
        """Events dropped by this instance: the buffer was full, or Redis refused them."""
        return self._dropped_total

    def _drop_marker(self, session_id: str) -> AuditEvent:
        return self._drops.pop(session_id).marker(session_id)

    def _queue_drop_markers(self) -> None:
        """Record the gaps of sessions that have emitted nothing since their drops."""
        for session_id in list(self._drops):
            if self._queue.full():
                return
            self._queue.put_nowait(self._drop_marker(session_id))

    # -- the writer task -----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._writer = asyncio.create_task(self._write_forever(), name="audit-writer")

    async def check_server(self) -> str:
        """Check the Redis version once; called at start-up, and by the writer before writing.

        Returns:
            The server's version.

        Raises:
            RedisVersionError: the server is older than 7.0 (the message says why it matters).
            RedisError: Redis could not be asked.
        """
        if not self._server_version:
            version = await redis_version.server_version(self._redis)
            redis_version.require(version, "the audit log's Redis")
            self._server_version = version
        return self._server_version

    async def _write_forever(self) -> None:
        backoff = 0.1
        while True:
            if self._pending is None and not self._batch:
                self._batch.append(await self._queue.get())
                while len(self._batch) < self._batch_size and not self._queue.empty():
                    self._batch.append(self._queue.get_nowait())
                # The batch left room in the queue: gaps can be recorded now.
                self._queue_drop_markers()
            if self._pending is None:
                self._pending = self._seal(self._batch)
                self._batch = []
            try:
                await self.check_server()
                await self._append(self._pending)
            except (RedisError, OSError, redis_version.RedisVersionError) as exc:
                metrics.AUDIT_WRITE_ERRORS.inc()
                log.warning("audit write failed; keeping %d events buffered: %s",
                            self.backlog, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            backoff = 0.1
            if self._pending.groups:
                continue  # other writers kept moving these sessions' heads: go again
            for _ in range(self._pending.taken):
                self._queue.task_done()
            self._pending = None
            metrics.AUDIT_BACKLOG.set(self.backlog)

    def _seal(self, batch: list[AuditEvent]) -> _Pending:
        """Group a batch by session (order kept) and seal each on its cached head."""
        pending = _Pending(taken=len(batch))
        for event in batch:
            group = pending.groups.get(event.session_id)
            if group is None:
                group = pending.groups[event.session_id] = _Group(event.session_id)
                rejected = self._rejected.get(event.session_id)
                if rejected is not None and rejected.count:
                    # Declare what the stream refused before anything newer; if it refuses
                    # again, _reject takes the count back.
                    group.events.append(rejected.marker(event.session_id))
                    self._rejected[event.session_id] = _Drops()
            group.events.append(event)
        for session_id, group in pending.groups.items():
            head = self._heads.get(session_id)
            if head is None:  # a guess: a wrong one costs a round trip, never a fork
                group.seal(EMPTY, ChainHead.start(session_id))
            else:
                self._heads.move_to_end(session_id)
                group.seal(Tip.of(head), head)
        return pending

    async def _append(self, pending: _Pending) -> None:
        """Compare-and-append every session of ``pending``, resealing on the heads Redis
        answers, until all are stored or refused (or :data:`CAS_ROUNDS` rounds passed).

        Raises:
            RedisError: Redis is down or cannot write now; the rest stays in ``pending``.
        """
        for _ in range(CAS_ROUNDS):
            groups = list(pending.groups.values())
            if not groups:
                return
            try:
                replies = await compare_and_append(self._redis, [
                    AppendRequest(stream_key(g.session_id), g.expected, g.entries)
                    for g in groups])
            except (RedisError, OSError):
                for group in groups:
                    group.uncertain = True
                raise
            outage: ResponseError | None = None
            for group, reply in zip(groups, replies, strict=True):
                if isinstance(reply, Appended):
                    self._stored(pending, group)
                elif isinstance(reply, Moved):
                    await self._moved(pending, group, reply.tip)
                elif rejects_session(reply):
                    del pending.groups[group.session_id]
                    self._reject(group.session_id, group.events, reply)
                else:
                    outage = reply  # nothing of this call was written: retry it as it is
            if outage is not None:
                raise outage
        if pending.groups:
            log.info("audit chain heads of %d sessions kept moving; trying again",
                     len(pending.groups))
            await asyncio.sleep(random.uniform(0.0, 0.05))  # let the other writers through

    def _stored(self, pending: _Pending, group: _Group) -> None:
        del pending.groups[group.session_id]
        self._remember(group.session_id, group.last)
        metrics.AUDIT_EVENTS.inc(len(group.entries))
        if self._rejected.pop(group.session_id, None) is not None:
            log.info("audit stream %s accepts writes again", stream_key(group.session_id))

    async def _moved(self, pending: _Pending, group: _Group, tip: Tip) -> None:
        """The stream does not end where ``group`` was sealed: skip it if an attempt whose
        reply was lost stored it, else seal it again on the stream's actual last entry."""
        session_id = group.session_id
        if group.uncertain and await self._holds(group, tip):
            del pending.groups[session_id]
            log.info("audit batch was partly stored before the failure; skipping %d entries "
                     "of %s", len(group.entries), stream_key(session_id))
            self._remember(session_id, group.last)
            return
        group.uncertain = False
        cached = self._heads.get(session_id)
        if cached is None and tip != EMPTY:
            metrics.AUDIT_CHAIN_RESUMES.inc()
        elif cached is not None:
            metrics.AUDIT_CHAIN_CONFLICTS.inc()
            if tip == EMPTY:
                log.error("audit stream %s lost every entry (seq %d and earlier) since this "
                          "process wrote it; starting its chain again at seq 1",
                          stream_key(session_id), cached.seq)
        head = tip.chain_head(session_id)
        if head is None:
            log.error("audit stream %s ends with an unchained entry (seq %r); starting a new "
                      "chain there", stream_key(session_id), tip.seq)
            head = ChainHead.start(session_id)
        self._remember(session_id, head)
        group.seal(tip, head)

    async def _holds(self, group: _Group, tip: Tip) -> bool:
        """Whether the stream, now ending at ``tip``, holds ``group``'s first entry.

        A script appends a session's entries whole, so its first one tells for all.
        """
        first = group.entries[0]
        if (tip.seq, tip.hash) == (group.entries[-1]["seq"], group.entries[-1]["hash"]):
            return True
        head = tip.chain_head(group.session_id)
        if head is None or head.seq < int(first["seq"]):
            return False
        end = "+"
        while True:  # back from the end, past what other writers added since
            page = cast(list[tuple[str, dict[str, str]]], await self._redis.xrevrange(
                stream_key(group.session_id), max=end, min="-", count=100))
            for _, fields in page:
                seq = fields.get("seq", "")
                if seq == first["seq"]:
                    return bool(fields.get("hash") == first["hash"])
                if seq.isdecimal() and int(seq) < int(first["seq"]):
                    return False
            if len(page) < 100:
                return False
            end = f"({page[-1][0]}"

    def _remember(self, session_id: str, head: ChainHead) -> None:
        self._heads[session_id] = head
        self._heads.move_to_end(session_id)
        while len(self._heads) > self._max_sessions:
            self._heads.popitem(last=False)

    def _reject(self, session_id: str, events: list[AuditEvent], error: ResponseError) -> None:
        """Drop the events of a session whose stream Redis refuses (none of them is stored)."""
        self._heads.pop(session_id, None)
        rejected = self._rejected.get(session_id)
        if rejected is None:
            log.error("audit stream %s refuses writes (%s); dropping its events until it "
                      "accepts them", stream_key(session_id), error)
            rejected = self._rejected[session_id] = _Drops()
            while len(self._rejected) > self._max_sessions:
                self._rejected.popitem(last=False)
        self._rejected.move_to_end(session_id)
        count = 0
        for event in events:
            if event.type == DROPPED_TYPE and event.component == "audit":
                # A gap marker: its events were counted already; keep declaring them.
                rejected.merge(event.data["count"], event.data["first_ts_us"],
                               event.data["last_ts_us"])
            else:
                rejected.add(event.ts_us)
                count += 1
        self._dropped_total += count
        metrics.AUDIT_DROPPED.labels("rejected").inc(count)

    async def close(self, timeout_s: float = 3.0) -> None:
        """Flush what is buffered (up to ``timeout_s``), then stop the writer."""
        if self._writer is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        await self._queue.join()
                        if not self._drops:
                            break
                        self._queue_drop_markers()
            except TimeoutError:
                log.warning("audit log closed with %d events unwritten and %d gaps unrecorded",
                            self.backlog, len(self._drops))
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._redis.aclose()
