"""Conversation memory in Redis: a session outlives its stream and the LLM service.

Real Redis (started by the stack), real dialogue service processes, and the scripted
OpenAI-compatible fake, so the history each turn sends upstream can be checked exactly.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from services.llm.history import TURN_ID, History, trim_turns
from services.llm.memory import history_key
from tests.conftest import StackFactory
from tests.fake_openai import FakeOpenAI, ToolCallReply
from tests.test_audit import RedisServer
from tests.test_llm import Conversation, assistant_messages, conversation, user_messages
from voxmesh.launcher import Stack
from voxmesh.v1 import dialogue_pb2 as pb

HISTORY_TURNS = 3
ANSWER = "We open at eight."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=ANSWER, first_token_delay_s=0.01, token_delay_s=0.0) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeOpenAI) -> None:
    fake.reply, fake.fail_with_status = ANSWER, None


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, fake: FakeOpenAI) -> Stack:
    return stack_factory(services=("llm",), llm_base_url=fake.base_url,
                         extra_env={"VOXMESH_LLM_HISTORY_TURNS": str(HISTORY_TURNS)})


def new_session() -> str:
    return f"mem-{uuid.uuid4().hex}"


async def ended(conv: Conversation) -> None:
    """Half-close and read to the end: every request sent has been handled."""
    await conv.call.done_writing()
    while (event := await asyncio.wait_for(conv.call.read(), 30)) is not grpc.aio.EOF:
        assert event.WhichOneof("event") != "done", "no turn was pending"


async def stored(stack: Stack, session_id: str) -> tuple[list[dict[str, Any]], int]:
    """The session's history as kept in Redis, and its TTL in seconds."""
    client = aioredis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        key = history_key(session_id)
        items = await client.lrange(key, 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in items], await client.ttl(key)
    finally:
        await client.aclose()


async def test_a_second_stream_continues_the_session(stack: Stack, fake: FakeOpenAI) -> None:
    session = new_session()
    async with conversation(stack.addr("llm"), session_id=session) as conv:
        _, done = await conv.turn("t1", "When do you open?")
    assert done.status == pb.TURN_STATUS_COMPLETED

    async with conversation(stack.addr("llm"), session_id=session) as conv:
        _, done = await conv.turn("t1", "And on Sunday?")  # clients may reuse turn ids
    body = fake.requests[-1]

    assert done.status == pb.TURN_STATUS_COMPLETED
    assert body["messages"][0]["role"] == "system"
    assert sum(m["role"] == "system" for m in body["messages"]) == 1
    assert user_messages(body) == ["When do you open?", "And on Sunday?"]
    assert assistant_messages(body) == [ANSWER]
    assert all(TURN_ID not in m for m in body["messages"])  # storage tags stay private
    _, ttl = await stored(stack, session)
    assert 0 < ttl <= 86400


async def test_another_session_sees_none_of_it(stack: Stack, fake: FakeOpenAI) -> None:
    session = new_session()
    async with conversation(stack.addr("llm"), session_id=session) as conv:
        await conv.turn("t1", "My name is Ada.")
    async with conversation(stack.addr("llm"), session_id=new_session()) as conv:
        await conv.turn("t1", "What is my name?")

    assert user_messages(fake.requests[-1]) == ["What is my name?"]
    assert assistant_messages(fake.requests[-1]) == []


async def test_heard_trimming_persists_across_streams(stack: Stack, fake: FakeOpenAI) -> None:
    session = new_session()
    fake.reply = "first words and then a long tail that nobody heard"
    async with conversation(stack.addr("llm"), session_id=session) as conv:
        await conv.turn("h1", "Hello?")
        await conv.send(heard=pb.HeardReport(turn_id="h1", heard_text="first words",
                                             is_complete=False))
        await conv.turn("h2", "Sorry, what?")
        await conv.send(heard=pb.HeardReport(turn_id="h2", heard_text="", is_complete=False))
        await ended(conv)

    async with conversation(stack.addr("llm"), session_id=session) as conv:
        await conv.turn("h3", "Once more?")
    body = fake.requests[-1]

    assert user_messages(body) == ["Hello?", "Sorry, what?", "Once more?"]
    assert assistant_messages(body) == ["first words"]
    assert "nobody heard" not in json.dumps(body["messages"][1:])
    h2 = [e for e in (await stored(stack, session))[0] if e[TURN_ID] == "h2"]
    assert [e["role"] for e in h2] == ["user"]  # the unheard reply left Redis too


async def test_history_survives_a_restart_of_the_service(
        stack_factory: StackFactory, fake: FakeOpenAI) -> None:
    first = stack_factory(services=("llm",), llm_base_url=fake.base_url)
    session = new_session()
    async with conversation(first.addr("llm"), session_id=session) as conv:
        await conv.turn("t1", "I drive a red hatchback.")
    llm = next(p for p in first.procs if p.name == "llm")
    llm.popen.terminate()
    assert llm.popen.wait(timeout=30) is not None

    second = stack_factory(services=("llm",), redis_url=first.redis_url,
                           llm_base_url=fake.base_url)
    async with conversation(second.addr("llm"), session_id=session) as conv:
        _, done = await conv.turn("t2", "What colour is my car?")

    assert done.status == pb.TURN_STATUS_COMPLETED
    assert user_messages(fake.requests[-1]) == ["I drive a red hatchback.",
                                                "What colour is my car?"]
    assert assistant_messages(fake.requests[-1]) == [ANSWER]


async def test_only_the_last_turns_are_kept_with_their_tool_steps(
        stack: Stack, fake: FakeOpenAI) -> None:
    session = new_session()
    lookup = ToolCallReply([{"name": "list_service_types", "arguments": {}}])

    def reply(messages: list[dict[str, Any]]) -> str | ToolCallReply:
        return lookup if messages[-1]["role"] == "user" else "We do oil changes."

    for i in range(HISTORY_TURNS + 2):
        fake.reply = reply if i % 2 else ANSWER
        async with conversation(stack.addr("llm"), agent="booking", session_id=session) as conv:
            _, done = await conv.turn(f"t{i}", f"question {i}")
        assert done.status == pb.TURN_STATUS_COMPLETED, done.error_message

    entries, _ = await stored(stack, session)
    kept = [e["content"] for e in entries if e["role"] == "user"]
    assert kept == [f"question {i}" for i in range(2, HISTORY_TURNS + 2)]
    assert entries[0]["role"] == "user"
    call_ids = {c["id"] for e in entries for c in e.get("tool_calls") or []}
    tool_ids = [e["tool_call_id"] for e in entries if e["role"] == "tool"]
    assert tool_ids and set(tool_ids) == call_ids  # each result with its call, no orphan
    assert [e["content"] for e in entries if e[TURN_ID] == "t3" and e["role"] == "assistant"
            and not e.get("tool_calls")] == ["We do oil changes."]


async def test_a_dialogue_goes_on_when_redis_goes_down(
        stack_factory: StackFactory, fake: FakeOpenAI,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """History falls back to memory; ownership checked before the outage still holds (so
    the stream may even reopen here), but a session this replica never saw is refused:
    nobody can vouch for its owner while Redis is away."""
    redis_server = RedisServer(tmp_path_factory.mktemp("redis"))
    redis_server.start()
    try:
        down = stack_factory(services=("llm",), llm_base_url=fake.base_url,
                             redis_url=redis_server.url("llm"))
        session = new_session()
        async with conversation(down.addr("llm"), session_id=session) as conv:
            _, first = await conv.turn("t1", "Hello?")
            redis_server.stop()
            _, second = await conv.turn("t2", "Anyone there?")
        assert first.status == second.status == pb.TURN_STATUS_COMPLETED
        assert user_messages(fake.requests[-1]) == ["Hello?", "Anyone there?"]  # in memory
        async with conversation(down.addr("llm"), session_id=session) as conv:
            _, third = await conv.turn("t3", "Still there?")
        assert third.status == pb.TURN_STATUS_COMPLETED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async with conversation(down.addr("llm"), session_id=new_session()):
                pass
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "session store unavailable" in (refused.value.details() or "")
    finally:
        redis_server.stop()
    url = f"http://127.0.0.1:{down.metrics_ports['llm']}/metrics"
    text = await asyncio.to_thread(fetch_text, url)
    errors = next(line for line in text.splitlines()
                  if line.startswith("voxmesh_llm_memory_errors_total "))
    assert float(errors.split()[1]) >= 2  # a save at the turn boundary, the reopen's load


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def tool_step(call_id: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "list_service_types", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "[]"}]


def test_trimming_keeps_whole_turns_and_drops_orphans() -> None:
    history = History("Be brief.", max_turns=10)
    for i in range(4):
        history.add_user(f"t{i}", f"q{i}")
        history.add_tool_step(f"t{i}", tool_step(f"call{i}"))
        history.set_reply(f"t{i}", f"a{i}")
    entries = history.entries()

    kept = trim_turns(entries, 2)
    assert [e[TURN_ID] for e in kept] == ["t2"] * 4 + ["t3"] * 4
    assert [e["role"] for e in kept[:4]] == ["user", "assistant", "tool", "assistant"]
    # Stored lists that begin mid-turn (a tool result first) lose the orphans on load.
    orphaned = entries[2:]
    assert trim_turns(orphaned, 10)[0] == entries[4]
    assert trim_turns(entries[1:3], 10) == []

    restored = History("Be brief.", max_turns=2)
    restored.restore(orphaned)
    messages = restored.messages()
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant", "tool",
                                                          "assistant"] * 2
    assert [m.get("tool_call_id") for m in messages if m["role"] == "tool"] == ["call2", "call3"]
    assert all(TURN_ID not in m for m in messages)
    restored.add_user("t2", "a reused id appends")  # the restored t2 is not replaced
    assert [m["content"] for m in restored.messages() if m["role"] == "user"] == [
        "q3", "a reused id appends"]
