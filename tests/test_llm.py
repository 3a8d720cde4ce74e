"""The dialogue service as a real process, driven through its gRPC API.

The upstream is the scripted OpenAI-compatible server (the real ``openai`` client talks
to it over HTTP), so replies, delays and failures are known; one test runs the embedded
SmolLM2 llama.cpp server instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.llm.agents import AgentError, fill_placeholders, load_agent, load_agents
from services.llm.history import History
from services.llm.server import DialogueService
from services.llm.upstream import Upstream, UpstreamError
from tests.conftest import StackFactory
from tests.fake_openai import FakeOpenAI
from voxmesh.config import LlmSettings
from voxmesh.launcher import LaunchError, Stack, free_port
from voxmesh.v1 import dialogue_pb2 as pb
from voxmesh.v1 import dialogue_pb2_grpc

AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"
ANSWER = "Our service department opens at eight in the morning on Saturday."
STORY = " ".join(f"word{i}" for i in range(80))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=ANSWER) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fake(request: pytest.FixtureRequest) -> None:
    """Every test starts from the fake's defaults."""
    if "fake" in request.fixturenames:
        server: FakeOpenAI = request.getfixturevalue("fake")
        server.reply, server.fail_with_status = ANSWER, None
        server.first_token_delay_s, server.token_delay_s = 0.1, 0.01


@pytest.fixture(scope="module")
def traces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traces")


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, fake: FakeOpenAI, traces_dir: Path) -> Stack:
    return stack_factory(services=("llm",), llm_base_url=fake.base_url,
                         extra_env={"VOXMESH_TRACES": f"file:{traces_dir}/{{service}}.jsonl"})


class Conversation:
    """A Converse call with helpers to send turns and collect what comes back."""

    def __init__(self, call: Any, ready: pb.ConversationReady) -> None:
        self.call = call
        self.ready = ready

    async def send(self, **request: Any) -> None:
        await self.call.write(pb.ConverseRequest(**request))

    async def read(self, timeout_s: float = 30.0) -> pb.ConverseResponse:
        event = await asyncio.wait_for(self.call.read(), timeout_s)
        assert event is not grpc.aio.EOF, "the stream ended"
        return event

    async def until_done(self, turn_id: str,
                         deltas: list[str] | None = None) -> tuple[list[str], pb.TurnComplete]:
        deltas = [] if deltas is None else deltas
        while True:
            event = await self.read()
            kind = event.WhichOneof("event")
            if kind == "delta":
                assert event.delta.turn_id == turn_id
                deltas.append(event.delta.delta)
            elif kind == "done":
                assert event.done.turn_id == turn_id
                return deltas, event.done

    async def turn(self, turn_id: str, text: str) -> tuple[list[str], pb.TurnComplete]:
        await self.send(user_turn=pb.UserTurn(turn_id=turn_id, text=text))
        return await self.until_done(turn_id)


@asynccontextmanager
async def conversation(addr: str, agent: str = "", variables: dict[str, str] | None = None,
                       session_id: str = "", user_id: str = "") -> AsyncIterator[Conversation]:
    """A Converse stream; a fresh session (no stored history) unless ``session_id`` is given."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = dialogue_pb2_grpc.DialogueStub(channel).Converse()
        try:
            await call.write(pb.ConverseRequest(config=pb.DialogueConfig(
                session_id=session_id or f"test-{uuid.uuid4().hex}", agent=agent,
                variables=variables or {}, user_id=user_id)))
            first = await asyncio.wait_for(call.read(), 30)
            assert first is not grpc.aio.EOF and first.WhichOneof("event") == "ready"
            yield Conversation(call, first.ready)
        finally:
            call.cancel()


def user_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def assistant_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "assistant"]


async def test_a_turn_streams_the_reply_with_the_agent_prompt(
        stack: Stack, fake: FakeOpenAI) -> None:
    question = "When does the service department open on Saturday?"
    async with conversation(stack.addr("llm"), variables={"username": "Ada"}) as conv:
        deltas, done = await conv.turn("t1", question)

    assert conv.ready.agent == "assistant" and conv.ready.model == "smollm2"
    assert "Maple Motors" in conv.ready.greeting
    # Streamed a sentence at a time: each is checked for invented figures before it goes.
    assert deltas == [ANSWER]
    assert done.status == pb.TURN_STATUS_COMPLETED and done.text == ANSWER
    assert done.first_token_ms >= 100  # the fake's first-token delay
    body = fake.requests[-1]
    assert body["stream"] is True and body["model"] == "smollm2"
    system = body["messages"][0]
    assert system["role"] == "system"
    assert "Maple Motors" in system["content"] and "555-0142" in system["content"]
    assert "Ada" in system["content"] and "{{" not in system["content"]
    assert body["messages"][-1] == {"role": "user", "content": question}


async def test_cancel_stops_the_reply_and_closes_the_upstream_request(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply, fake.token_delay_s = STORY, 0.05
    closed_before = fake.closed_early
    async with conversation(stack.addr("llm")) as conv:
        await conv.send(user_turn=pb.UserTurn(turn_id="long", text="Tell me a story."))
        deltas: list[str] = []
        while not deltas:  # one checked piece of the run-on story
            event = await conv.read()
            assert event.WhichOneof("event") == "delta"
            deltas.append(event.delta.delta)
        await conv.send(cancel=pb.CancelTurn(turn_id="long"))
        deltas, done = await conv.until_done("long", deltas)
        # A cancel for a finished or unknown turn is a no-op; the stream goes on.
        await conv.send(cancel=pb.CancelTurn(turn_id="long"))
        await conv.send(cancel=pb.CancelTurn(turn_id="never-sent"))
        fake.reply, fake.token_delay_s = ANSWER, 0.01
        _, after = await conv.turn("next", "And the hours?")

    assert done.status == pb.TURN_STATUS_CANCELLED
    assert done.text == "".join(deltas) and STORY.startswith(done.text)
    assert 0 < len(done.text) < len(STORY) / 2
    assert after.status == pb.TURN_STATUS_COMPLETED and after.text == ANSWER
    # The HTTP request itself was aborted: the fake saw its client go away mid-stream.
    deadline = time.monotonic() + 10
    while fake.closed_early == closed_before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert fake.closed_early == closed_before + 1


async def test_client_going_away_stops_the_generation(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply, fake.token_delay_s = STORY, 0.05
    closed_before, completed_before = fake.closed_early, fake.completed
    async with conversation(stack.addr("llm")) as conv:
        await conv.send(user_turn=pb.UserTurn(turn_id="gone", text="Tell me a story."))
        assert (await conv.read()).WhichOneof("event") == "delta"
    # The call is cancelled on leaving the block; the upstream request must follow.
    deadline = time.monotonic() + 10
    while fake.closed_early == closed_before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert fake.closed_early == closed_before + 1 and fake.completed == completed_before


async def test_a_new_turn_cancels_the_running_one(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply, fake.token_delay_s = STORY, 0.05
    async with conversation(stack.addr("llm")) as conv:
        await conv.send(user_turn=pb.UserTurn(turn_id="a", text="Tell me a story."))
        assert (await conv.read()).WhichOneof("event") == "delta"
        fake.reply = ANSWER
        await conv.send(user_turn=pb.UserTurn(turn_id="b", text="Never mind, the hours?"))
        events: list[pb.ConverseResponse] = []
        while not events or events[-1].WhichOneof("event") != "done" or (
                events[-1].done.turn_id != "b"):
            events.append(await conv.read())

    done_a = next(e.done for e in events if e.WhichOneof("event") == "done")
    assert done_a.turn_id == "a" and done_a.status == pb.TURN_STATUS_CANCELLED
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED
    assert user_messages(fake.requests[-1]) == ["Tell me a story.", "Never mind, the hours?"]


async def test_heard_report_replaces_the_reply_in_history(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = "first words and then a long tail that nobody heard"
    async with conversation(stack.addr("llm")) as conv:
        _, done = await conv.turn("h1", "Hello?")
        assert done.status == pb.TURN_STATUS_COMPLETED
        await conv.send(heard=pb.HeardReport(turn_id="h1", heard_text="first words",
                                             is_complete=False))
        await conv.turn("h2", "Sorry, what?")
        second = fake.requests[-1]
        # Nothing of h2 was heard: its reply leaves the history altogether.
        await conv.send(heard=pb.HeardReport(turn_id="h2", heard_text="", is_complete=False))
        await conv.turn("h3", "Once more?")
        third = fake.requests[-1]

    assert assistant_messages(second) == ["first words"]
    assert not any("nobody heard" in m["content"] for m in second["messages"][1:])
    assert user_messages(third) == ["Hello?", "Sorry, what?", "Once more?"]
    assert assistant_messages(third) == ["first words"]


async def test_unknown_agent_and_misplaced_config_are_rejected(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.addr("llm")) as channel:
        stub = dialogue_pb2_grpc.DialogueStub(channel)
        call = stub.Converse()
        await call.write(pb.ConverseRequest(config=pb.DialogueConfig(agent="nope")))
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await call.read()
        call = stub.Converse()
        await call.write(pb.ConverseRequest(user_turn=pb.UserTurn(turn_id="x", text="hi")))
        with pytest.raises(grpc.aio.AioRpcError) as no_config:
            await call.read()
        call = stub.Converse()
        await call.write(pb.ConverseRequest(config=pb.DialogueConfig()))
        assert (await call.read()).WhichOneof("event") == "ready"
        await call.write(pb.ConverseRequest(config=pb.DialogueConfig()))
        with pytest.raises(grpc.aio.AioRpcError) as twice:
            await call.read()

    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.value.details() == (
        "unknown agent 'nope' (known: assistant, booking, concierge, escalation, faq, router)")
    assert no_config.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config" in (no_config.value.details() or "")
    assert twice.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config: already received" in (twice.value.details() or "")


async def test_second_agent_and_empty_text(stack: Stack, fake: FakeOpenAI) -> None:
    async with conversation(stack.addr("llm"), agent="concierge") as conv:
        _, empty = await conv.turn("e1", "   ")
        _, ok = await conv.turn("e2", "Book a test drive.")

    assert conv.ready.agent == "concierge" and conv.ready.voice == "jf_alpha"
    assert empty.status == pb.TURN_STATUS_FAILED
    assert empty.error_message == "user_turn.text is empty"
    assert ok.status == pb.TURN_STATUS_COMPLETED
    assert "concierge" in fake.requests[-1]["messages"][0]["content"]
    assert user_messages(fake.requests[-1]) == ["Book a test drive."]


async def test_rate_limit_fails_the_turn_and_the_stream_goes_on(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.fail_with_status = 429
    async with conversation(stack.addr("llm")) as conv:
        sent_before = len(fake.requests)
        deltas, failed = await conv.turn("r1", "Hello?")
        attempts = len(fake.requests) - sent_before
        fake.fail_with_status = None
        _, ok = await conv.turn("r2", "Hello again?")

    assert failed.status == pb.TURN_STATUS_FAILED and not deltas
    assert failed.error_message == "upstream rate limited (429)"
    assert attempts == 1  # an HTTP status is never retried
    assert ok.status == pb.TURN_STATUS_COMPLETED and ok.text == ANSWER


async def test_upstream_errors_are_precise() -> None:
    refused = Upstream(LlmSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0))
    with FakeOpenAI(first_token_delay_s=2.0) as slow:
        timing_out = Upstream(LlmSettings(base_url=slow.base_url, timeout_seconds=0.5))
        errors = []
        for upstream in (refused, timing_out):
            with pytest.raises(UpstreamError) as err:
                async with upstream.reply([{"role": "user", "content": "hi"}]) as pieces:
                    async for _ in pieces:
                        pass
            errors.append((err.value.kind, err.value.message))
            await upstream.aclose()

    assert errors == [("unavailable", "upstream unavailable: connection refused"),
                      ("timeout", "upstream timeout after 0.5 s")]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def metric(text: str, name: str, default: float | None = None) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    if match is None and default is not None:
        return default  # a labelled series appears with its first sample
    assert match, f"{name} not exported"
    return float(match.group(1))


async def test_metrics_count_turns_and_sessions(stack: Stack) -> None:
    port = stack.metrics_ports["llm"]
    before = await asyncio.to_thread(scrape, port)
    async with conversation(stack.addr("llm")) as conv:
        await conv.turn("m1", "Hello?")
        during = await asyncio.to_thread(scrape, port)
    completed = 'voxmesh_llm_turns_total{status="completed"}'

    assert metric(during, completed) == metric(before, completed, default=0.0) + 1
    assert metric(during, "voxmesh_llm_first_token_seconds_count") == (
        metric(before, "voxmesh_llm_first_token_seconds_count") + 1)
    assert metric(during, "voxmesh_llm_active_sessions") >= 1


async def test_turn_span_joins_the_callers_trace(stack: Stack, traces_dir: Path) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with conversation(stack.addr("llm")) as conv:
        await conv.send(user_turn=pb.UserTurn(turn_id="traced", text="Hello?", trace_context={
            "traceparent": f"00-{trace_id}-{parent_id}-01"}))
        _, done = await conv.until_done("traced")

    path = traces_dir / "llm.jsonl"
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        spans = [s for s in map(json.loads, lines)
                 if s["attributes"].get("voxmesh.turn_id") == "traced"]
        if spans or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(spans) == 1, "llm.turn span not exported"
    span = spans[0]
    assert span["name"] == "llm.turn"
    assert span["context"]["trace_id"] == f"0x{trace_id}"
    assert span["parent_id"] == f"0x{parent_id}"
    assert span["attributes"]["voxmesh.agent"] == "assistant"
    assert span["attributes"]["voxmesh.model"] == "smollm2"
    assert span["attributes"]["voxmesh.status"] == "completed"
    assert span["attributes"]["voxmesh.first_token_ms"] == done.first_token_ms >= 100


def test_history_keeps_the_last_turns_after_the_system_prompt() -> None:
    history = History("Be brief.", max_turns=2)
    for i in range(3):
        history.add_user(f"t{i}", f"question {i}")
        history.set_reply(f"t{i}", f"answer {i}")
    history.set_reply("t0", "dropped turns stay dropped")

    assert history.messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question 1"}, {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "question 2"}, {"role": "assistant", "content": "answer 2"},
    ]


async def test_load_without_an_endpoint_names_the_variable() -> None:
    service = DialogueService(LlmSettings(base_url=""))
    with pytest.raises(RuntimeError, match="VOXMESH_LLM_BASE_URL is not set"):
        await service.load()


def test_placeholders_are_filled_and_unknown_ones_left_empty() -> None:
    template = "Hi {{username}}, from {{ city }}{{missing}}!"
    assert fill_placeholders(template, {"username": "Ada", "city": "Oslo"}) == "Hi Ada, from Oslo!"
    assert fill_placeholders(template, {}) == "Hi , from !"
    agents = load_agents(AGENTS_DIR)
    assert set(agents) >= {"assistant", "concierge"}
    assert "555-0142" in agents["assistant"].prompt({})


def test_bad_agent_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: typo\nsystem_prompt: Be brief.\nspeeed: 1.2\n")
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: missing\nvoice: af_heart\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")

    with pytest.raises(AgentError, match=r"typo\.yaml:3: field 'speeed': Extra inputs"):
        load_agent(typo)
    with pytest.raises(AgentError, match=r"missing\.yaml:1: field 'system_prompt': Field required"):
        load_agent(missing)
    with pytest.raises(AgentError, match=r"broken\.yaml:2: invalid YAML"):
        load_agent(broken)


def test_service_refuses_to_start_with_a_bad_agent(
        stack_factory: StackFactory, fake: FakeOpenAI, tmp_path: Path) -> None:
    (tmp_path / "assistant.yaml").write_text(
        "name: assistant\nsystem_prompt: Be brief.\nspeed: -1\n")
    with pytest.raises(LaunchError) as err:
        stack_factory(services=("llm",), llm_base_url=fake.base_url,
                      extra_env={"VOXMESH_LLM_AGENTS_DIR": str(tmp_path)})
    message = str(err.value)
    assert "exited" in message
    assert f"{tmp_path / 'assistant.yaml'}:3: field 'speed'" in message


async def test_embedded_smollm2_answers(stack_factory: StackFactory) -> None:
    stack = stack_factory(services=("llm",))  # starts the llama.cpp server
    firsts = []
    async with conversation(stack.addr("llm"), variables={"username": "Ada"}) as conv:
        for i, question in enumerate(["Hello, are you open on Saturday?",
                                      "What is your phone number?"]):
            deltas, done = await conv.turn(f"s{i}", question)
            assert done.status == pb.TURN_STATUS_COMPLETED, done.error_message
            assert any(d.strip() for d in deltas) and done.text == "".join(deltas)
            firsts.append(done.first_token_ms)
    print(f"SmolLM2 first token ms: {firsts}; last reply: {done.text!r}")
