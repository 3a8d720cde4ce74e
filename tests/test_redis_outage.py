"""Redis goes away mid-session and comes back: the conversation never notices.

The whole speech path is real (STT, dialogue service, TTS, orchestrator processes; the
LLM is the scripted OpenAI-compatible server), and so is Redis: a redis-server with the
shipped ACL users and an AOF, stopped for good (SIGTERM) after the first turn and started
again on the same port and data directory before the third. The user's spoken second
turn gets its spoken answer while Redis is down; afterwards the audit stream holds every
turn's events in order with an intact hash chain and nothing dropped, and the dialogue
service's saved history holds all three turns.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis

from services.llm.memory import history_key
from services.orchestrator.audit_verify import verify
from tests.fake_openai import FakeOpenAI
from tests.support import REDIS_SERVER, RedisServer, speak
from tests.test_e2e import wait_for_audit
from tests.test_e2e_turns import session
from voxmesh.launcher import Stack
from voxmesh.v1 import orchestrator_pb2 as pb

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")]

ANSWER = "We open at eight on Saturday."
TYPED = ("Hello, my name is Ada.", "Thanks, see you then.")
SPOKEN = "What time do you open on Saturday?"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=ANSWER, first_token_delay_s=0.05, token_delay_s=0.02) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(stack_factory: Any, fake_llm: FakeOpenAI, redis_server: RedisServer) -> Stack:
    """Each service logs in as its own ACL user; the test reads as the admin."""
    return cast(Stack, stack_factory(
        services=("stt", "tts", "llm", "orchestrator"), llm_base_url=fake_llm.base_url,
        redis_url=redis_server.url("admin"),
        extra_env={"VOXMESH_ORCHESTRATOR_REDIS_URL": redis_server.url("orchestrator"),
                   "VOXMESH_LLM_REDIS_URL": redis_server.url("llm")}))


def orchestrator_metric(stack: Stack, name: str) -> float:
    url = f"http://{stack.host}:{stack.metrics_ports['orchestrator']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def wait_for_metric(stack: Stack, name: str, minimum: float,
                          timeout_s: float = 20.0) -> float:
    """Poll the orchestrator's /metrics until ``name`` reaches ``minimum`` (liveness only)."""
    for _ in range(int(timeout_s / 0.2)):
        value = await asyncio.to_thread(orchestrator_metric, stack, name)
        if value >= minimum:
            return value
        await asyncio.sleep(0.2)
    return value


async def test_a_session_talks_through_a_redis_outage_and_its_audit_chain_is_whole(
        stack: Stack, redis_server: RedisServer, fake_llm: FakeOpenAI) -> None:
    question = speak(SPOKEN, 16000, tail_silence_ms=1500)
    async with session(stack) as s:
        await s.send(input_text=pb.InputText(text=TYPED[0]))
        first = await s.wait_for("response_done")
        before = await wait_for_audit(stack, s.session_id, "response.done")

        await asyncio.to_thread(redis_server.stop)
        outage_mark = len(s.events)
        await s.stream(question)
        second = await s.wait_for("response_done", lambda e: e.turn_id != first.turn_id)
        during = s.events[outage_mark:]
        # The orchestrator noticed and holds the audit events for later.
        errors = await wait_for_metric(stack, "voxmesh_orchestrator_audit_write_errors_total", 1)
        backlog = orchestrator_metric(stack, "voxmesh_orchestrator_audit_backlog")

        await asyncio.to_thread(redis_server.start)
        await s.send(input_text=pb.InputText(text=TYPED[1]))
        third = await s.wait_for("response_done",
                                 lambda e: e.turn_id not in (first.turn_id, second.turn_id))

    # The spoken turn during the outage went as usual, answer audio included.
    assert errors >= 1 and backlog > 0
    assert [first.status, second.status, third.status] == ["completed"] * 3
    kinds = [e.WhichOneof("event") for e in during]
    assert "error" not in kinds, [e.error for e in during if e.WhichOneof("event") == "error"]
    heard = [e.transcript.text for e in during if e.WhichOneof("event") == "transcript"
             and e.transcript.role == pb.ROLE_USER and e.transcript.is_final]
    assert heard and "saturday" in heard[-1].lower()
    states = [e.state.state for e in during
              if e.WhichOneof("event") == "state" and e.state.turn_id == second.turn_id]
    assert states == [pb.SESSION_STATE_THINKING, pb.SESSION_STATE_SPEAKING,
                      pb.SESSION_STATE_LISTENING]
    audio = [e.audio for e in during if e.WhichOneof("event") == "audio"]
    assert audio and all(a.turn_id == second.turn_id for a in audio)
    assert sum(len(a.audio) for a in audio) > 16000  # over a third of a second at 24 kHz
    assert any(e.WhichOneof("event") == "latency" for e in during)

    # Every turn's events reached the audit stream, in order, chained, nothing dropped.
    entries = await wait_for_audit(stack, s.session_id, "session.end", timeout_s=30)
    client = aioredis.Redis.from_url(redis_server.url("auditor"), decode_responses=True)
    try:
        report = await verify(client, s.session_id)
    finally:
        await client.aclose()
    assert report.ok, report.problems
    assert report.dropped_events == 0 and report.entries == len(entries)
    assert [int(e["seq"]) for e in entries] == list(range(1, len(entries) + 1))
    turn_ids = [first.turn_id, second.turn_id, third.turn_id]
    assert [e["turn_id"] for e in entries if e["type"] == "turn.start"] == turn_ids
    assert [(e["turn_id"], e["data"]["status"]) for e in entries
            if e["type"] == "response.done"] == [(t, "completed") for t in turn_ids]
    outage = [e["type"] for e in entries if e["turn_id"] == second.turn_id]
    for kind in ("transcript.final", "end_of_turn", "turn.start", "llm.done", "latency",
                 "response.done"):
        assert kind in outage, outage
    assert entries[:len(before)] == before  # what was stored survived the restart

    # The dialogue service's saved conversation caught up too (it saves the whole history).
    admin = redis.Redis.from_url(redis_server.url("admin"), decode_responses=True)
    try:
        saved = cast(list[str], admin.lrange(history_key(s.session_id), 0, -1))
    finally:
        admin.close()
    users = [m["content"] for m in map(json.loads, saved) if m["role"] == "user"]
    assert len(users) == 3 and users[0] == TYPED[0] and users[2] == TYPED[1]
    assert "saturday" in users[1].lower()
