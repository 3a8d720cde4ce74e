"""The immutable audit log: hash chain, verification, outages, drops and the Redis ACL.

Everything runs against a real redis-server started here with the shipped ACL file
(deploy/redis/users.acl, rendered by deploy/redis/render-acl.sh with test passwords),
so the writer always works through the ``voxmesh-orchestrator`` user and tampering
needs ``voxmesh-admin``, as in a deployment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.llm.memory import Memory
from services.orchestrator.audit import AuditEvent, AuditLog, now_us, stream_key
from services.orchestrator.audit_append import (
    APPEND_SHA,
    EMPTY,
    Appended,
    AppendRequest,
    Moved,
    Tip,
    compare_and_append,
)
from services.orchestrator.audit_chain import (
    DROPPED_TYPE,
    ChainHead,
    genesis_hash,
    link_hash,
    seal,
)
from services.orchestrator.audit_verify import verify
from tests.support import (
    REDIS_SERVER,
    RedisServer,
    emit_turn,
    new_session,
    verify_cli,
    write_session,
)
from voxmesh.launcher import free_port

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def running(server: RedisServer) -> RedisServer:
    """The server, started again if an earlier test left it stopped."""
    if server.process is None:
        server.start()
    return server


@pytest.fixture
async def auditor(running: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(running.url("auditor"), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def admin(running: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(running.url("admin"), decode_responses=True)
    yield client
    client.close()


Entries = list[tuple[str, dict[str, str]]]


async def read_stream(client: aioredis.Redis, session_id: str) -> Entries:
    return cast(Entries, await client.xrange(stream_key(session_id)))


def read_stream_sync(client: redis.Redis, key: str) -> Entries:
    return cast(Entries, client.xrange(key))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_for_len(client: aioredis.Redis, session_id: str, n: int,
                       timeout_s: float = 20.0) -> int:
    """Poll XLEN until it reaches ``n`` (a liveness deadline, not a speed check)."""
    deadline = time.monotonic() + timeout_s
    while (length := await client.xlen(stream_key(session_id))) < n:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return int(length)


async def wait_for_errors(before: float) -> None:
    """Wait until the writer has failed at least once more since ``before``."""
    deadline = time.monotonic() + 10
    while metric("voxmesh_orchestrator_audit_write_errors_total") <= before:
        assert time.monotonic() < deadline, "the writer never tried to write"
        await asyncio.sleep(0.02)


# -- the chain ---------------------------------------------------------------------------


async def test_chain_verifies_for_a_normal_session(
        running: RedisServer, auditor: aioredis.Redis) -> None:
    session_id = new_session()
    await write_session(running.url("orchestrator"), session_id, turns=3)

    entries = await read_stream(auditor, session_id)
    assert [int(f["seq"]) for _, f in entries] == list(range(1, 13))
    prev = genesis_hash(session_id)
    for _, fields in entries:
        assert fields["hash"] == link_hash(prev, fields)
        prev = fields["hash"]
    first, second = entries[0][1], entries[1][1]
    assert first["type"] == "state" and first["turn_id"] == "t0"
    assert second["correlation_id"] == "c0" and second["component"] == "stt"
    assert json.loads(second["data"])["text"] == "Grüße, what's the time?"
    assert int(second["ts_us"]) >= int(first["ts_us"]) > 1_600_000_000 * 10**6

    report = await verify(auditor, session_id)
    assert report.ok, report.problems
    assert (report.entries, report.last_seq, report.head_hash) == (12, 12, prev)
    assert report.entries_added == 12
    rc, out = await verify_cli(running.url("auditor"), session_id)
    assert rc == 0 and "INTACT" in out, out


async def test_a_missing_session_does_not_verify(
        running: RedisServer, auditor: aioredis.Redis) -> None:
    report = await verify(auditor, new_session())
    assert not report.ok and report.problems[0].kind == "empty"


async def test_chain_continues_after_an_orchestrator_restart(
        running: RedisServer, auditor: aioredis.Redis) -> None:
    session_id = new_session()
    resumes = metric("voxmesh_orchestrator_audit_chain_resumes_total")
    await write_session(running.url("orchestrator"), session_id, turns=2)
    await write_session(running.url("orchestrator"), session_id, turns=1)  # a new process

    report = await verify(auditor, session_id)
    assert report.ok, report.problems
    assert report.last_seq == 12
    assert metric("voxmesh_orchestrator_audit_chain_resumes_total") == resumes + 1


async def test_the_append_script_writes_only_on_the_expected_head(
        running: RedisServer, admin: redis.Redis) -> None:
    """Compare-and-append as the orchestrator's user, the script not cached (NOSCRIPT, then
    EVAL): a wrong head writes nothing and answers the actual one."""
    session_id = new_session()
    key = stream_key(session_id)
    admin.script_flush()
    client = aioredis.from_url(running.url("orchestrator"), decode_responses=True)
    try:
        head, entries = ChainHead.start(session_id), []
        for i in range(3):
            event = AuditEvent(session_id, "event", "orchestrator", "", now_us(), {"i": i})
            head, entry = seal(head, event.fields())
            entries.append(entry)
        first = await compare_and_append(client, [AppendRequest(key, EMPTY, entries[:2])])
        assert first == [Appended(2)]
        assert admin.script_exists(APPEND_SHA) == [True]  # EVAL cached it
        tip = Tip(entries[1]["seq"], entries[1]["hash"])
        stale = await compare_and_append(client, [AppendRequest(key, EMPTY, entries[2:])])
        assert stale == [Moved(tip)] and admin.xlen(key) == 2
        assert await compare_and_append(client, [AppendRequest(key, tip, entries[2:])]) == [
            Appended(1)]
    finally:
        await client.aclose()
    stored = [fields for _, fields in read_stream_sync(admin, key)]
    assert stored == entries
    assert admin.xinfo_stream(key)["entries-added"] == 3  # nothing but the three XADDs


# -- outages and drops -------------------------------------------------------------------


async def test_events_emitted_while_redis_is_down_are_written_in_order(
        running: RedisServer, auditor: aioredis.Redis) -> None:
    session_id = new_session()
    log = AuditLog(running.url("orchestrator"), max_backoff_s=0.2)
    log.start()
    try:
        await emit_turn(log, session_id, 0)
        assert await wait_for_len(auditor, session_id, 4) == 4
        errors = metric("voxmesh_orchestrator_audit_write_errors_total")

        running.stop()
        for turn in range(1, 6):
            await emit_turn(log, session_id, turn)
        await wait_for_errors(errors)
        assert log.backlog == 20 and log.dropped == 0

        running.start()
        client = aioredis.from_url(running.url("auditor"), decode_responses=True)
        try:
            assert await wait_for_len(client, session_id, 24) == 24
            report = await verify(client, session_id)
            entries = await read_stream(client, session_id)
        finally:
            await client.aclose()
    finally:
        await log.close()
    assert report.ok, report.problems
    assert [f["turn_id"] for _, f in entries] == [f"t{t}" for t in range(6) for _ in range(4)]
    assert [f["type"] for _, f in entries[4:8]] == [
        "state", "transcript.final", "llm.done", "latency"]


async def test_overflow_is_counted_and_recorded_as_a_gap(running: RedisServer) -> None:
    session_id = new_session()
    log = AuditLog(running.url("orchestrator"), max_queue=5, batch_size=2, max_backoff_s=0.2)
    log.start()
    dropped_before = metric("voxmesh_orchestrator_audit_dropped_total", reason="queue_full")
    try:
        await emit_turn(log, session_id, 0)  # seq 1..4
        client = aioredis.from_url(running.url("auditor"), decode_responses=True)
        assert await wait_for_len(client, session_id, 4) == 4
        await client.aclose()
        errors = metric("voxmesh_orchestrator_audit_write_errors_total")

        running.stop()
        log.emit(session_id, "outage.first")  # the writer holds this one
        await wait_for_errors(errors)
        for i in range(12):  # 5 fit in the queue, 7 are dropped
            log.emit(session_id, "outage.burst", i=i)
        assert (log.backlog, log.dropped) == (6, 7)
        assert metric("voxmesh_orchestrator_audit_dropped_total",
                      reason="queue_full") == dropped_before + 7

        running.start()
        client = aioredis.from_url(running.url("auditor"), decode_responses=True)
        try:
            assert await wait_for_len(client, session_id, 11) == 11
            log.emit(session_id, "after.recovery")
            assert await wait_for_len(client, session_id, 12) == 12
            report = await verify(client, session_id)
            entries = await read_stream(client, session_id)
        finally:
            await client.aclose()
    finally:
        await log.close()
    assert report.ok, report.problems
    assert report.dropped_events == 7 and report.drop_markers == [(11, 7)]
    types = [f["type"] for _, f in entries]
    assert types[4:] == ["outage.first", *["outage.burst"] * 5, DROPPED_TYPE, "after.recovery"]
    assert [json.loads(f["data"])["i"] for _, f in entries[5:10]] == [0, 1, 2, 3, 4]
    marker = json.loads(entries[10][1]["data"])
    assert marker["count"] == 7 and marker["first_ts_us"] <= marker["last_ts_us"]


class ReplyLosingProxy:
    """A TCP proxy to Redis that can forward one append (EVALSHA/EVAL) and lose its reply."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lose_next_append_reply = False
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ReplyLosingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        append_sent = asyncio.Event()

        async def up() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)
                await server_w.drain()
                if self.lose_next_append_reply and b"EVAL" in data:
                    self.lose_next_append_reply = False
                    append_sent.set()

        async def down() -> None:
            while data := await server_r.read(65536):
                if append_sent.is_set():
                    await asyncio.sleep(0.3)  # Redis has run the script; its reply is lost
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (client_w, server_w):
            writer.close()


async def test_a_batch_whose_reply_was_lost_is_not_written_twice(
        running: RedisServer, auditor: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.orchestrator.audit")
    session_id = new_session()
    url = running.url("orchestrator").replace(f":{running.port}/", ":{port}/")
    async with ReplyLosingProxy(running.port) as proxy:
        log = AuditLog(url.format(port=proxy.port), max_backoff_s=0.2)
        log.start()
        try:
            await emit_turn(log, session_id, 0)
            assert await wait_for_len(auditor, session_id, 4) == 4
            errors = metric("voxmesh_orchestrator_audit_write_errors_total")
            proxy.lose_next_append_reply = True
            await emit_turn(log, session_id, 1)
            await wait_for_errors(errors)
            await emit_turn(log, session_id, 2)
            assert await wait_for_len(auditor, session_id, 12) == 12
        finally:
            await log.close()
    await asyncio.sleep(0.2)
    assert await auditor.xlen(stream_key(session_id)) == 12
    report = await verify(auditor, session_id)
    assert report.ok and report.last_seq == 12, report.problems
    assert "partly stored before the failure; skipping 4 entries" in caplog.text


@pytest.fixture
def narrow_user(admin: redis.Redis) -> Iterator[tuple[str, str]]:
    """A writer user like voxmesh-orchestrator whose ACL covers only ``audit-*`` sessions."""
    name, password = f"voxmesh-narrow-{uuid.uuid4().hex[:6]}", secrets.token_hex(8)
    admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", "resetchannels",
                          "~voxmesh:session:audit-*", "-@all", "+ping", "+hello", "+select",
                          "+xadd", "+xrange", "+xrevrange", "+xlen", "+evalsha", "+eval")
    yield name, password
    admin.execute_command("ACL", "DELUSER", name)


@pytest.mark.parametrize("refusal", ["wrongtype", "noperm"])
async def test_a_refused_stream_loses_only_its_own_events(
        running: RedisServer, auditor: aioredis.Redis, admin: redis.Redis,
        narrow_user: tuple[str, str], caplog: pytest.LogCaptureFixture, refusal: str) -> None:
    """One session's stream refused for good (its key holds a string: WRONGTYPE; the ACL
    denies it: NOPERM) costs that session's events, not the others' in the same batches."""
    caplog.set_level(logging.INFO, logger="services.orchestrator.audit")
    good = [new_session(), new_session()]
    url = running.url("orchestrator")
    if refusal == "wrongtype":
        bad = new_session()
        admin.set(stream_key(bad), "not a stream")
    else:
        bad = f"denied-{uuid.uuid4().hex[:12]}"
        user, password = narrow_user
        url = f"redis://{user}:{password}@127.0.0.1:{running.port}/0"
    rejected = metric("voxmesh_orchestrator_audit_dropped_total", reason="rejected")
    errors = metric("voxmesh_orchestrator_audit_write_errors_total")
    log = AuditLog(url, max_backoff_s=0.2)
    log.start()
    try:
        for turn in range(2):  # each round is one batch mixing the three sessions
            for session_id in (good[0], bad, good[1]):
                await emit_turn(log, session_id, turn)
            for session_id in good:
                assert await wait_for_len(auditor, session_id, 4 * (turn + 1)) == 4 * (turn + 1)
        assert (log.dropped, log.backlog) == (8, 0)
        assert metric("voxmesh_orchestrator_audit_dropped_total",
                      reason="rejected") == rejected + 8
        # Refused is not down: no retries, so nothing stalls behind it.
        assert metric("voxmesh_orchestrator_audit_write_errors_total") == errors

        # Repaired: the session's next entry declares what was lost, then goes on.
        if refusal == "wrongtype":
            admin.delete(stream_key(bad))
        else:
            admin.execute_command("ACL", "SETUSER", narrow_user[0], "~voxmesh:session:denied-*")
        log.emit(bad, "after.repair")
        assert await wait_for_len(auditor, bad, 2) == 2
    finally:
        await log.close()

    for session_id in good:
        report = await verify(auditor, session_id)
        assert report.ok and report.last_seq == 8 and report.dropped_events == 0, report.problems
        entries = await read_stream(auditor, session_id)
        assert [f["turn_id"] for _, f in entries] == ["t0"] * 4 + ["t1"] * 4
    report = await verify(auditor, bad)
    assert report.ok, report.problems
    assert report.dropped_events == 8 and report.drop_markers == [(1, 8)]
    assert [f["type"] for _, f in await read_stream(auditor, bad)] == [
        DROPPED_TYPE, "after.repair"]
    refused = [r.getMessage() for r in caplog.records if "refuses writes" in r.getMessage()]
    assert len(refused) == 1 and stream_key(bad) in refused[0]
    assert ("WRONGTYPE" if refusal == "wrongtype" else "no permissions") in refused[0]
    assert f"audit stream {stream_key(bad)} accepts writes again" in caplog.text


async def test_a_stream_replaced_under_the_writer_is_refused_by_the_append(
        running: RedisServer, auditor: aioredis.Redis, admin: redis.Redis) -> None:
    """The chain head is cached, so the refusal comes from the append script itself."""
    good, bad = new_session(), new_session()
    rejected = metric("voxmesh_orchestrator_audit_dropped_total", reason="rejected")
    log = AuditLog(running.url("orchestrator"), max_backoff_s=0.2)
    log.start()
    try:
        await emit_turn(log, bad, 0)
        assert await wait_for_len(auditor, bad, 4) == 4
        admin.delete(stream_key(bad))
        admin.set(stream_key(bad), "not a stream")
        await emit_turn(log, bad, 1)
        await emit_turn(log, good, 1)
        assert await wait_for_len(auditor, good, 4) == 4
        await emit_turn(log, good, 2)  # the writer is not stuck behind the refused batch
        assert await wait_for_len(auditor, good, 8) == 8
    finally:
        await log.close()
    assert log.dropped == 4
    assert metric("voxmesh_orchestrator_audit_dropped_total", reason="rejected") == rejected + 4
    assert (await verify(auditor, good)).ok
    assert admin.get(stream_key(bad)) == "not a stream"


async def test_emit_never_waits_for_redis() -> None:
    """Redis unreachable: emit returns at once; the queue is bounded and the rest counted."""
    log = AuditLog(f"redis://127.0.0.1:{free_port()}/0", max_queue=100, batch_size=10,
                   max_backoff_s=0.2)
    errors = metric("voxmesh_orchestrator_audit_write_errors_total")
    log.start()
    try:
        log.emit("s-down", "first")
        await wait_for_errors(errors)
        for i in range(10_000):
            log.emit("s-down", "event", i=i)
        assert log.backlog == 101
        assert log.dropped == 10_000 - 100
    finally:
        await log.close(timeout_s=0.1)


# -- the ACL -----------------------------------------------------------------------------

DESTRUCTIVE = [
    ["XDEL", "voxmesh:session:s", "1-1"], ["XTRIM", "voxmesh:session:s", "MAXLEN", "0"],
    ["XTRIM", "voxmesh:session:s", "MINID", "9-9"],
    ["DEL", "voxmesh:session:s"], ["UNLINK", "voxmesh:session:s"],
    ["RENAME", "voxmesh:session:s", "voxmesh:session:t"],
    ["RENAMENX", "voxmesh:session:s", "voxmesh:session:t"],
    ["MOVE", "voxmesh:session:s", "1"], ["SWAPDB", "0", "1"],
    ["MIGRATE", "127.0.0.1", "1", "voxmesh:session:s", "0", "10"],
    ["EXPIRE", "voxmesh:session:s", "1"], ["PEXPIREAT", "voxmesh:session:s", "1"],
    # XSETID can also rewrite the entries-added counter the verifier counts removals with.
    ["XSETID", "voxmesh:session:s", "9-9"],
    ["XSETID", "voxmesh:session:s", "9-9", "ENTRIESADDED", "1", "MAXDELETEDID", "0-0"],
    ["RESTORE", "voxmesh:session:s", "0", "x", "REPLACE"],
    ["COPY", "voxmesh:session:t", "voxmesh:session:s", "REPLACE"],
    ["SORT", "voxmesh:session:t", "STORE", "voxmesh:session:s"],
    ["SET", "voxmesh:session:s", "x"], ["OBJECT", "ENCODING", "voxmesh:session:s"],
    ["FLUSHALL"], ["FLUSHDB"], ["ACL", "SETUSER", "x"], ["CONFIG", "SET", "appendonly", "no"],
    ["SHUTDOWN"], ["DEBUG", "SLEEP", "0"], ["SCRIPT", "FLUSH"],
    ["FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() end)"],
]


def dry_run(admin: redis.Redis, user: str, command: list[str]) -> bool:
    """True when ``user`` would be allowed to run ``command`` (ACL DRYRUN)."""
    return str(admin.execute_command("ACL", "DRYRUN", f"voxmesh-{user}", *command)) == "OK"


@pytest.mark.parametrize("user", ["orchestrator", "llm", "auditor"])
def test_only_the_admin_can_destroy_audit_streams(admin: redis.Redis, user: str) -> None:
    allowed = [c for c in DESTRUCTIVE if dry_run(admin, user, c)]
    assert allowed == []
    assert all(dry_run(admin, "admin", c) for c in DESTRUCTIVE[:3])


def test_orchestrator_user_appends_and_reads_audit_streams_only(running: RedisServer) -> None:
    client = redis.Redis.from_url(running.url("orchestrator"), decode_responses=True)
    try:
        key = stream_key(new_session())
        entry_id = client.xadd(key, {"a": "1"})
        assert cast(Entries, client.xrevrange(key, count=1))[0][0] == entry_id
        assert read_stream_sync(client, key)[0][1] == {"a": "1"} and client.xlen(key) == 1
        for command in (["XDEL", key, entry_id], ["XTRIM", key, "MAXLEN", "0"], ["DEL", key],
                        ["FLUSHALL"], ["XADD", "voxmesh:history:x", "*", "a", "1"],
                        ["GET", "voxmesh:agent:x"], ["XSETID", key, "0-1", "ENTRIESADDED", "1"]):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        # It may run scripts (the compare-and-append), but they run with its own ACL.
        for body in ("redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)",
                     f"redis.call('XDEL', KEYS[1], '{entry_id}')", "redis.call('DEL', KEYS[1])",
                     "redis.call('XSETID', KEYS[1], '0-1', 'ENTRIESADDED', 1)"):
            with pytest.raises(redis.exceptions.ResponseError, match="can't run this command"):
                client.eval(body, 1, key)
        assert client.xlen(key) == 1
    finally:
        client.close()


def test_llm_user_cannot_touch_audit_streams(running: RedisServer, admin: redis.Redis) -> None:
    key = stream_key(new_session())
    admin.xadd(key, {"a": "1"})
    client = redis.Redis.from_url(running.url("llm"), decode_responses=True)
    try:
        for command in (["XRANGE", key, "-", "+"], ["XADD", key, "*", "a", "2"], ["DEL", key],
                        ["XDEL", key, "0-1"], ["GET", key], ["FLUSHALL"]):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()
    assert admin.xlen(key) == 1


def test_auditor_user_only_reads(running: RedisServer, auditor_sync: redis.Redis) -> None:
    key = stream_key(new_session())
    with pytest.raises(redis.exceptions.NoPermissionError):
        auditor_sync.xadd(key, {"a": "1"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        auditor_sync.get("voxmesh:history:x")
    assert auditor_sync.xlen(key) == 0 and auditor_sync.xrange(key) == []


@pytest.fixture
def auditor_sync(running: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(running.url("auditor"), decode_responses=True)
    yield client
    client.close()


def test_default_user_is_disabled(running: RedisServer) -> None:
    client = redis.Redis(port=running.port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
    finally:
        client.close()


async def test_llm_memory_works_as_the_llm_user(running: RedisServer) -> None:
    """Every command services/llm/memory.py sends is allowed to voxmesh-llm."""
    memory = Memory(running.url("llm"), ttl_s=60)
    session_id = new_session()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    try:
        assert await memory.save(session_id, messages)
        assert await memory.load(session_id) == messages
        assert await memory.save_agent(session_id, "sales")
        assert await memory.load_agent(session_id) == "sales"
        assert await memory.save_notification(session_id, "n1", {"text": "ready"})
        assert await memory.load_notifications(session_id) == [{"text": "ready"}]
        assert await memory.delete_notification(session_id, "n1")
        assert await memory.load_notifications(session_id) == []
    finally:
        await memory.aclose()
