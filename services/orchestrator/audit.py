"""The append-only, hash-chained session audit log: one Redis Stream per session.

``emit`` only puts the event on a bounded in-memory queue and returns; a single
writer task drains it in batches, seals each event into the session's hash chain
(``seq`` and ``hash``, see :mod:`services.orchestrator.audit_chain`) and appends
the batch in one pipeline, each session's XADDs in their own MULTI/EXEC. Nothing on
the audio path ever awaits Redis, and the writer only ever appends: it never
deletes, trims or rewrites an entry.

Resuming a chain: the writer keeps each session's chain head (last ``seq`` and
``hash``) in memory. Before the first write of a session in this process (or after
its head was evicted from the bounded cache) it reads the stream's last entry with
XREVRANGE COUNT 1, so a session resumed after an orchestrator restart continues
its chain. One process writes a session's stream at a time.

Redis down: the batch being written and the queue stay buffered (bounded); the
writer retries with backoff and writes them, in order, on recovery. When a batch's
fate is unknown (the connection failed around EXEC), the writer re-reads each
session's last ``seq`` and skips entries already stored, so nothing is written twice.

Drops: an event that finds the queue full is dropped and counted (per session and
in ``voxmesh_orchestrator_audit_dropped_total{reason="queue_full"}``). Dropped events
never get a ``seq``, so ``seq`` stays contiguous over what was written; instead, the
next entry of that session is an ``audit.dropped`` entry whose data carries ``count``
and the timestamps of the first and last dropped event. A verifier sees a counted gap
at exactly the place events went missing.

Rejected sessions: Redis may refuse one session's stream for good while serving the
others (its key holds another type: WRONGTYPE; the ACL denies it: NOPERM). Because
each session has its own MULTI/EXEC, the other sessions' entries of the batch are
written; the refused session's events are dropped (``reason="rejected"``), logged once
with Redis's answer, and its chain head is forgotten. Nothing of a refused session was
stored, so nothing is retried and nothing can be written twice; its next events try
again, and if its stream accepts them they start with an ``audit.dropped`` entry
counting what was lost. Errors about the server rather than the key (OOM, READONLY,
MISCONF, ...) are treated like an outage: the whole batch is kept and retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ExecAbortError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from services.orchestrator import metrics
from services.orchestrator.audit_chain import (
    DROPPED_TYPE,
    HASH_FIELD,
    ChainHead,
    genesis_hash,
    seal,
)

log = logging.getLogger(__name__)

STREAM_KEY = "voxmesh:session:{session_id}"


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


def _session_error(replies: list[Any]) -> ResponseError | None:
    """The error that failed one session's MULTI/XADD.../EXEC replies, or None.

    EXECABORT only says an earlier command was refused while queued: report that one.
    """
    errors: list[ResponseError] = []
    for reply in replies:
        nested = reply if isinstance(reply, list) else [reply]
        errors.extend(r for r in nested if isinstance(r, ResponseError))
    return next((e for e in errors if not isinstance(e, ExecAbortError)),
                errors[0] if errors else None)


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
class _Sealed:
    """A batch with ``seq``/``hash`` assigned, until Redis confirms it."""

    entries: list[tuple[AuditEvent, dict[str, str]]] = field(default_factory=list)
    """(event, complete entry fields), in write order."""
    taken: int = 0
    """How many of them came off the queue (``task_done`` owed)."""
    uncertain: bool = False
    """A write attempt failed in a way that may have stored it: check before retrying."""


class AuditLog:
    """Batches audit events into per-session, hash-chained Redis Streams from a bounded queue.

    Args:
        redis_url: Where to write, e.g. ``redis://voxmesh-orchestrator:PASSWORD@redis:6379/0``;
            the user needs only the commands of the ``voxmesh-orchestrator`` ACL user
            (deploy/redis/users.acl).
        max_queue: Events buffered before new ones are dropped (and counted).
        batch_size: Most events per pipeline (one MULTI/EXEC per session in it).
        max_backoff_s: Longest pause between write attempts while Redis fails.
        max_sessions: Chain heads kept in memory; an evicted session's head is read
            back from its stream on its next write.
    """

    def __init__(self, redis_url: str, max_queue: int = 10_000, batch_size: int = 200, *,
                 max_backoff_s: float = 5.0, max_sessions: int = 10_000) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("audit max_queue and batch_size must be at least 1")
        # No client-side retries: a retried EXEC could append a batch twice; the writer
        # retries itself, and checks what was stored first.
        self._redis = aioredis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True,
            retry=Retry(NoBackoff(), 0))
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(max_queue)
        self._batch_size = batch_size
        self._max_backoff_s = max_backoff_s
        self._max_sessions = max(max_sessions, 2 * batch_size)
        self._writer: asyncio.Task[None] | None = None
        self._batch: list[AuditEvent] = []
        self._sealed: _Sealed | None = None
        self._heads: OrderedDict[str, ChainHead] = OrderedDict()
        self._drops: dict[str, _Drops] = {}
        self._rejected: OrderedDict[str, _Drops] = OrderedDict()
        """Sessions whose stream refused writes (logged once), with what it refused since
        the last ``audit.dropped`` entry was sealed for them."""
        self._dropped_total = 0

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
        sealed = len(self._sealed.entries) if self._sealed else 0
        return self._queue.qsize() + len(self._batch) + sealed

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

    async def _write_forever(self) -> None:
        backoff = 0.1
        while True:
            if self._sealed is None and not self._batch:
                self._batch.append(await self._queue.get())
                while len(self._batch) < self._batch_size and not self._queue.empty():
                    self._batch.append(self._queue.get_nowait())
                # The batch left room in the queue: gaps can be recorded now.
                self._queue_drop_markers()
            try:
                if self._sealed is None:
                    refused = await self._load_heads({e.session_id for e in self._batch})
                    self._sealed = self._seal(self._batch, refused)
                    self._batch = []
                await self._write(self._sealed)
            except (RedisError, OSError) as exc:
                metrics.AUDIT_WRITE_ERRORS.inc()
                log.warning("audit write failed; keeping %d events buffered: %s",
                            self.backlog, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            backoff = 0.1
            for _ in range(self._sealed.taken):
                self._queue.task_done()
            self._sealed = None
            metrics.AUDIT_BACKLOG.set(self.backlog)

    async def _last_entries(self, session_ids: list[str]) -> dict[str, Any]:
        """Each session's last stream entry (``[]`` when none) or the error refusing it.

        Raises:
            RedisError: Redis is down or cannot serve anyone right now.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.xrevrange(stream_key(session_id), count=1)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, RedisError) and not rejects_session(reply):
                raise reply
        return dict(zip(session_ids, replies, strict=True))

    async def _load_heads(self, session_ids: set[str]) -> dict[str, ResponseError]:
        """Read the chain head of each session this process has not written lately.

        Returns:
            The sessions whose stream Redis refuses to read, with its answer.
        """
        for session_id in session_ids & self._heads.keys():
            self._heads.move_to_end(session_id)  # so reading the others cannot evict it
        missing = sorted(session_ids - self._heads.keys())
        if not missing:
            return {}
        refused: dict[str, ResponseError] = {}
        for session_id, reply in (await self._last_entries(missing)).items():
            if isinstance(reply, ResponseError):
                refused[session_id] = reply
                continue
            head = ChainHead.start(session_id)
            if reply:
                _, fields = reply[0]
                try:
                    head = ChainHead(int(fields["seq"]), fields[HASH_FIELD])
                except (KeyError, ValueError):
                    log.error("audit stream of %s ends with an unchained entry; "
                              "starting a new chain there", session_id)
                    head = ChainHead(0, genesis_hash(session_id))
                metrics.AUDIT_CHAIN_RESUMES.inc()
            self._remember(session_id, head)
        return refused

    def _remember(self, session_id: str, head: ChainHead) -> None:
        self._heads[session_id] = head
        self._heads.move_to_end(session_id)
        while len(self._heads) > self._max_sessions:
            self._heads.popitem(last=False)

    def _seal(self, batch: list[AuditEvent], refused: dict[str, ResponseError]) -> _Sealed:
        sealed = _Sealed(taken=len(batch))
        for session_id, error in refused.items():
            self._reject(session_id, [e for e in batch if e.session_id == session_id], error)
        for event in batch:
            if event.session_id in refused:
                continue
            rejected = self._rejected.get(event.session_id)
            if rejected is not None and rejected.count:
                # The stream reads again: declare what it refused before anything newer.
                self._seal_one(sealed, rejected.marker(event.session_id))
                self._rejected[event.session_id] = _Drops()
            self._seal_one(sealed, event)
        return sealed

    def _seal_one(self, sealed: _Sealed, event: AuditEvent) -> None:
        head, entry = seal(self._heads[event.session_id], event.fields())
        self._remember(event.session_id, head)
        sealed.entries.append((event, entry))

    def _reject(self, session_id: str, events: list[AuditEvent], error: ResponseError) -> None:
        """Drop the events of a session whose stream Redis refuses (none of them is stored)."""
        self._heads.pop(session_id, None)  # what was sealed for it is void: read it again
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

    async def _write(self, sealed: _Sealed) -> None:
        if sealed.uncertain:
            await self._skip_stored(sealed)
        sealed.uncertain = True  # until the replies say otherwise
        groups: dict[str, list[tuple[AuditEvent, dict[str, str]]]] = {}
        for event, entry in sealed.entries:
            groups.setdefault(event.session_id, []).append((event, entry))
        if not groups:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id, group in groups.items():
                # One MULTI/EXEC per session: a session's entries are stored all or none
                # (so a retry can skip exactly what was stored), and one refused stream
                # cannot abort the others' entries.
                pipe.execute_command("MULTI")
                for _, entry in group:
                    pipe.xadd(stream_key(session_id), entry)  # type: ignore[arg-type]
                pipe.execute_command("EXEC")
            replies = await pipe.execute(raise_on_error=False)
        refused: dict[str, ResponseError] = {}
        i = 0
        for session_id, group in groups.items():
            error = _session_error(replies[i:i + len(group) + 2])
            i += len(group) + 2
            if error is not None:
                if not rejects_session(error):
                    raise error  # the batch is uncertain: the retry skips what was stored
                refused[session_id] = error
        for session_id, error in refused.items():
            self._reject(session_id, [event for event, _ in groups[session_id]], error)
        for session_id in groups.keys() - refused.keys():
            if self._rejected.pop(session_id, None) is not None:
                log.info("audit stream %s accepts writes again", stream_key(session_id))
        written = len(sealed.entries) - sum(len(groups[s]) for s in refused)
        sealed.entries = []
        sealed.uncertain = False
        metrics.AUDIT_EVENTS.inc(written)

    async def _skip_stored(self, sealed: _Sealed) -> None:
        """Drop entries an earlier, failed-looking attempt did store."""
        sessions = sorted({event.session_id for event, _ in sealed.entries})
        stored: dict[str, int] = {}
        for session_id, reply in (await self._last_entries(sessions)).items():
            if isinstance(reply, ResponseError):  # refused now, so it refused then too
                self._reject(session_id, [e for e, _ in sealed.entries
                                          if e.session_id == session_id], reply)
                sealed.entries = [(e, f) for e, f in sealed.entries if e.session_id != session_id]
            else:
                stored[session_id] = int(reply[0][1].get("seq", 0)) if reply else 0
        before = len(sealed.entries)
        sealed.entries = [(e, f) for e, f in sealed.entries if int(f["seq"]) > stored[e.session_id]]
        if len(sealed.entries) < before:
            log.info("audit batch was partly stored before the failure; skipping %d entries",
                     before - len(sealed.entries))
        sealed.uncertain = False

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
