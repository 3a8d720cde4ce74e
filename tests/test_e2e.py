"""A spoken turn end to end: browser protocol -> gateway -> orchestrator -> STT/LLM/TTS -> back.

Every part is real: service processes on loopback, faster-whisper tiny.en, Silero VAD,
the TTS models, a real Redis. The LLM upstream is the scripted OpenAI-compatible server
(the real ``openai`` client talks to it over HTTP) so the reply text is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from services.llm.router import CLASSIFIER_HEADER
from tests.fake_openai import FakeOpenAI, ToolCallReply
from tests.support import normalize_words, rms, speak, word_error_rate
from voxmesh.client import RealtimeClient
from voxmesh.launcher import Stack, free_port
from voxmesh.v1 import audio_pb2, orchestrator_pb2, orchestrator_pb2_grpc, stt_pb2, stt_pb2_grpc

pytestmark = pytest.mark.e2e

QUESTION = "What time does the service department open on Saturday?"
ANSWER = "Our service department opens at eight in the morning on Saturday."
STORY = (
    "Maple Motors was founded many years ago by two brothers who loved old cars. "
    "They started in a small garage on Harbor Road with one lift and a lot of patience. "
    "Over the years the shop grew, and today it has twelve service bays and a showroom. "
    "Every customer still gets a cup of coffee and a friendly hello at the front desk."
)


ESCALATION_REPLY = "I am finding someone from our team for you now."


def scripted_reply(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    """The fake LLM's answers: routing JSON for the router's classifier, an escalation at
    the escalation desk, a long story on request, else the opening hours."""
    system = str(messages[0].get("content", "")) if messages else ""
    if system.startswith(CLASSIFIER_HEADER):
        return json.dumps({"intent": "test_drive", "confidence": 0.95})
    if system.startswith("You are the escalation desk"):
        if messages[-1]["role"] == "tool":
            return ESCALATION_REPLY
        return ToolCallReply([{"name": "escalate_to_human", "arguments": {
            "reason": "wants a manager", "phone": "555-0100"}}])
    last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return STORY if "story" in last_user.lower() else ANSWER


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=scripted_reply, first_token_delay_s=0.1, token_delay_s=0.02) as fake:
        yield fake


@pytest.fixture(scope="module")
def traces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traces")


@pytest.fixture(scope="module")
def stack(stack_factory: Any, fake_llm: FakeOpenAI, traces_dir: Path) -> Stack:
    return stack_factory(
        llm_base_url=fake_llm.base_url,
        extra_env={"VOXMESH_TRACES": f"file:{traces_dir}/{{service}}.jsonl",
                   # Kokoro must speak the concierge's turns even on a loaded machine.
                   "VOXMESH_TTS_PRIMARY_TIMEOUT_MS": "60000",
                   "VOXMESH_LLM_ESCALATION_CHECK_SECONDS": "1"},
    )


def ws_url(stack: Stack) -> str:
    return f"ws://{stack.host}:{stack.ports.gateway}/v1/realtime"


@contextlib.asynccontextmanager
async def open_mic(client: RealtimeClient) -> AsyncIterator[None]:
    """Keep sending silent 20 ms frames, as a live microphone would, until the block exits."""
    silence = bytes(640)

    async def pump() -> None:
        assert client.ws is not None
        while True:
            await client.ws.send(silence)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def recognize(stack: Stack, pcm: bytes, rate: int) -> str:
    async with grpc.aio.insecure_channel(stack.addr("stt")) as channel:
        reply = await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(stt_pb2.RecognizeRequest(
            config=stt_pb2.RecognitionConfig(audio_format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate)),
            audio=pcm))
    return reply.transcript.text


def audit_entries(stack: Stack, session_id: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    entries = client.xrange(f"voxmesh:session:{session_id}")
    client.close()
    return [{"id": entry_id, **fields, "data": json.loads(fields["data"])}
            for entry_id, fields in entries]


async def wait_for_audit(stack: Stack, session_id: str, type_: str,
                         timeout_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        entries = audit_entries(stack, session_id)
        if any(e["type"] == type_ for e in entries) or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.2)


async def test_spoken_question_gets_a_spoken_answer(stack: Stack, traces_dir: Path) -> None:
    question = speak(QUESTION, 16000)
    async with RealtimeClient(ws_url(stack), api_key=stack.api_key) as client:
        started = await client.start()
        assert started["type"] == "session.started", started
        session_id = started["session_id"]
        last_frame_at = (await client.stream_audio(question))[-1]
        async with open_mic(client):
            done = await client.wait_for(lambda e: e["type"] == "response.done", 60)
    received = client.received
    assert done["status"] == "completed"
    turn_id = done["turn_id"]

    finals = [e for e in received.of_type("transcript") if e["role"] == "user" and e["final"]]
    assert finals, "no final user transcript"
    heard = set(normalize_words(finals[-1]["text"]))
    assert {"service", "department", "saturday"} <= heard, finals[-1]["text"]

    reply_text = "".join(e["delta"] for e in received.of_type("response.text")
                         if e["turn_id"] == turn_id)
    assert reply_text == ANSWER
    # The agent's final transcript line arrives before response.done.
    assert [e["text"] for e in received.of_type("transcript")
            if e["role"] == "assistant" and e["final"]] == [ANSWER]
    states = [e["state"] for e in received.of_type("state")]
    assert states[:1] == ["listening"]
    assert "thinking" in states and "speaking" in states
    assert states.index("thinking") < states.index("speaking")

    audio = received.audio_bytes()
    assert len(audio) > 24000 * 2, "less than a second of reply audio"
    assert rms(audio) > 0.02, "reply audio is silent"
    assert word_error_rate(ANSWER, await recognize(stack, audio, 24000)) <= 0.25

    latency = next(e for e in received.of_type("latency") if e["turn_id"] == turn_id)
    # An eager turn's LLM stage counts from its commit, so it may beat the fake's 100 ms.
    assert latency["total_ms"] > 0 and latency["llm_ms"] >= 0
    assert latency["stt_ms"] > 0 and latency["tts_ms"] >= 0
    first_audio_at = received.audio[0][0]
    assert first_audio_at > last_frame_at - 1.3  # reply audio came after the user spoke

    entries = await wait_for_audit(stack, session_id, "response.done")
    types = [e["type"] for e in entries]
    for expected in ("session.start", "session.started", "state", "speech_started",
                     "transcript.final", "end_of_turn", "turn.start", "llm.done",
                     "tts.segment", "latency", "response.done"):
        assert expected in types, f"{expected} missing from audit log: {types}"
    assert all(len(e["ts_us"]) >= 16 for e in entries)  # microseconds since the epoch
    timestamps = [int(e["ts_us"]) for e in entries]
    assert timestamps == sorted(timestamps)
    done_entry = next(e for e in entries if e["type"] == "response.done")
    assert done_entry["turn_id"] == turn_id and done_entry["data"]["text"] == ANSWER
    assert {e["component"] for e in entries} >= {"orchestrator", "stt", "llm", "tts"}

    spans = await wait_for_spans(traces_dir, turn_id)
    turn_span = spans["orchestrator"]["turn"]
    trace_id = turn_span["context"]["trace_id"]
    for name in ("stt", "llm", "tts"):
        child = spans["orchestrator"][name]
        assert child["context"]["trace_id"] == trace_id
        assert child["parent_id"] == turn_span["context"]["span_id"]
    # The services' own spans join the turn's trace: TTS through gRPC metadata, the
    # LLM (whose stream outlives the turn) through UserTurn.trace_context.
    assert spans["tts"]["tts.stream"]["context"]["trace_id"] == trace_id
    llm_stage = spans["orchestrator"]["llm"]["context"]["span_id"]
    assert spans["llm"]["llm.turn"]["parent_id"] == llm_stage
    # Trace and audit log point at each other: the turn's entries carry its trace id.
    assert turn_span["attributes"]["voxmesh.audit_stream"] == f"voxmesh:session:{session_id}"
    turn_entries = [e for e in entries if e["turn_id"] == turn_id and e["type"] in (
        "turn.start", "llm.done", "latency", "response.done")]
    assert len(turn_entries) == 4
    assert {e["correlation_id"] for e in turn_entries} == {trace_id.removeprefix("0x")}


async def wait_for_spans(traces_dir: Path, turn_id: str,
                         timeout_s: float = 10.0) -> dict[str, dict[str, dict[str, Any]]]:
    """Spans per service per name, for the trace of ``turn_id``."""
    deadline = time.monotonic() + timeout_s
    while True:
        by_service: dict[str, dict[str, dict[str, Any]]] = {}
        trace_id = None
        orchestrator = traces_dir / "orchestrator.jsonl"
        lines = orchestrator.read_text().splitlines() if orchestrator.exists() else []
        for span in map(json.loads, lines):
            if span["name"] == "turn" and span["attributes"].get("voxmesh.turn_id") == turn_id:
                trace_id = span["context"]["trace_id"]
        if trace_id is not None:
            for path in traces_dir.glob("*.jsonl"):
                for span in map(json.loads, path.read_text().splitlines()):
                    if span["context"]["trace_id"] == trace_id:
                        by_service.setdefault(path.stem, {})[span["name"]] = span
            if {"turn", "stt", "llm", "tts"} <= set(by_service.get("orchestrator", {})) and (
                    "tts.stream" in by_service.get("tts", {})) and (
                    "llm.turn" in by_service.get("llm", {})):
                return by_service
        if time.monotonic() > deadline:
            raise AssertionError(f"spans of turn {turn_id} not exported: {by_service}")
        await asyncio.sleep(0.3)


async def test_interrupt_stops_audio_and_keeps_only_what_was_heard(
        stack: Stack, fake_llm: FakeOpenAI) -> None:
    async with RealtimeClient(ws_url(stack), api_key=stack.api_key) as client:
        started = await client.start()
        session_id = started["session_id"]
        await client.send("input_text", text="Tell me the story of the dealership.")
        await client.wait_for(lambda e: e["type"] == "state" and e["state"] == "speaking", 30)
        # A player can only report what it has received: wait for 800 ms of audio.
        while len(client.received.audio_bytes()) < 24000 * 2 * 800 // 1000:
            await asyncio.sleep(0.01)
        turn_id = client.received.of_type("state")[-1]["turn_id"]
        await client.send("playback", turn_id=turn_id, played_ms=800, done=False)
        await client.send("interrupt")
        stop = await client.wait_for(lambda e: e["type"] == "playback_stop", 10)
        done = await client.wait_for(lambda e: e["type"] == "response.done", 10)
        await asyncio.sleep(1.0)  # anything still in flight would arrive now
        # A new turn in the same session is answered normally afterwards.
        mark = len(client.received.events)
        await client.send("input_text", text="When does service open on Saturday?")
        second = await client.wait_for(lambda e: e["type"] == "response.done", 30, after=mark)

    assert stop["turn_id"] == turn_id
    assert done["turn_id"] == turn_id and done["status"] == "interrupted"
    events = client.received.events
    next_turn_at = next(e["_t"] for e in events if e["type"] == "state"
                        and e["state"] == "thinking" and e["_t"] > done["_t"])
    audio_after_stop = [t for t, _ in client.received.audio if stop["_t"] < t < next_turn_at]
    assert not audio_after_stop, "audio of the interrupted turn arrived after playback_stop"
    assert second["status"] == "completed"

    # The LLM was told what the user heard: the next prompt holds only ~800 ms of the story.
    history = fake_llm.requests[-1]["messages"]
    assistant = [m["content"] for m in history if m["role"] == "assistant"]
    assert assistant and STORY.startswith(assistant[-1]) and len(assistant[-1]) < len(STORY) / 2

    entries = await wait_for_audit(stack, session_id, "turn.interrupted")
    interrupted = next(e for e in entries if e["type"] == "turn.interrupted")
    assert interrupted["turn_id"] == turn_id
    assert interrupted["data"]["heard_text"] == assistant[-1]
    assert interrupted["data"]["played_ms"] == 800


async def test_unknown_agent_is_a_clear_error(stack: Stack) -> None:
    async with RealtimeClient(ws_url(stack), api_key=stack.api_key) as client:
        reply = await client.start(agent="no-such-agent")
    assert reply["type"] == "error" and reply["code"] == "not_found"
    assert "no-such-agent" in reply["message"]


async def test_bad_sample_rate_is_rejected_naming_the_field(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.addr("orchestrator")) as channel:
        call = orchestrator_pb2_grpc.OrchestratorStub(channel).Session()
        await call.write(orchestrator_pb2.SessionRequest(start=orchestrator_pb2.SessionStart(
            input_sample_rate_hertz=12345, output_sample_rate_hertz=24000)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input_sample_rate_hertz" in (err.value.details() or "")


async def test_dead_tts_gives_a_precise_error_and_the_session_goes_on(
        stack: Stack, stack_factory: Any) -> None:
    """An orchestrator whose TTS is down still answers in text and says why there is no audio."""
    broken = stack_factory(services=("orchestrator",), redis_url=stack.redis_url, extra_env={
        "VOXMESH_ORCHESTRATOR_STT_ADDR": stack.addr("stt"),
        "VOXMESH_ORCHESTRATOR_LLM_ADDR": stack.addr("llm"),
        "VOXMESH_ORCHESTRATOR_TTS_ADDR": f"127.0.0.1:{free_port()}",
    })
    async with grpc.aio.insecure_channel(broken.addr("orchestrator")) as channel:
        call = orchestrator_pb2_grpc.OrchestratorStub(channel).Session()
        await call.write(orchestrator_pb2.SessionRequest(start=orchestrator_pb2.SessionStart(
            agent="assistant", input_sample_rate_hertz=16000, output_sample_rate_hertz=24000)))
        events: list[orchestrator_pb2.SessionResponse] = []
        for text in ("When do you open on Saturday?", "And on Sunday?"):
            await call.write(orchestrator_pb2.SessionRequest(
                input_text=orchestrator_pb2.InputText(text=text)))
            while True:
                event = await asyncio.wait_for(call.read(), 30)
                events.append(event)
                if event.WhichOneof("event") == "response_done":
                    break
        await call.write(orchestrator_pb2.SessionRequest(end=orchestrator_pb2.EndSession()))
        await call.done_writing()
    errors = [e.error for e in events if e.WhichOneof("event") == "error"]
    dones = [e.response_done for e in events if e.WhichOneof("event") == "response_done"]
    texts = "".join(e.response_text.delta for e in events
                    if e.WhichOneof("event") == "response_text")
    assert len(errors) == 2 and all(e.code == "tts_failed" for e in errors)
    assert "synthesis" in errors[0].message
    assert [d.status for d in dones] == ["failed", "failed"]
    assert ANSWER in texts  # the reply text still reached the client


async def test_handoff_switches_agent_and_voice(stack: Stack, traces_dir: Path) -> None:
    """The router hands a test-drive request to the concierge, whose Kokoro voice answers."""
    async with RealtimeClient(ws_url(stack), api_key=stack.api_key) as client:
        started = await client.start(agent="router")
        await client.send("input_text", text="I would like to test drive the new hatchback.")
        done = await client.wait_for(lambda e: e["type"] == "response.done", 60)
    assert done["status"] == "completed"
    assert rms(client.received.audio_bytes()) > 0.02

    entries = await wait_for_audit(stack, started["session_id"], "response.done")
    handoff = next(e for e in entries if e["type"] == "handoff")
    assert handoff["turn_id"] == done["turn_id"]
    assert (handoff["data"]["from_agent"], handoff["data"]["to_agent"]) == ("router", "concierge")
    assert handoff["data"]["voice"] == "jf_alpha"

    # Every segment of the reply was synthesized by Kokoro (jf_alpha), not the default voice.
    deadline = time.monotonic() + 10
    engines: set[str] = set()
    while not engines and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        orchestrator = [json.loads(line) for line in
                        (traces_dir / "orchestrator.jsonl").read_text().splitlines()]
        trace_ids = {s["context"]["trace_id"] for s in orchestrator if s["name"] == "turn"
                     and s["attributes"].get("voxmesh.turn_id") == done["turn_id"]}
        engines = {s["attributes"]["voxmesh.engine"]
                   for s in map(json.loads, (traces_dir / "tts.jsonl").read_text().splitlines())
                   if s["name"] == "tts.synthesize" and s["context"]["trace_id"] in trace_ids}
    assert engines == {"kokoro-onnx"}


async def test_escalation_outcome_is_spoken_at_the_next_safe_moment(stack: Stack) -> None:
    """The escalation desk's background check ends in a spoken notification, after the
    reply that announced it, as its own turn that the dialogue remembers."""
    async with grpc.aio.insecure_channel(stack.addr("orchestrator")) as channel:
        call = orchestrator_pb2_grpc.OrchestratorStub(channel).Session()
        await call.write(orchestrator_pb2.SessionRequest(start=orchestrator_pb2.SessionStart(
            agent="escalation", input_sample_rate_hertz=16000, output_sample_rate_hertz=24000)))
        await call.write(orchestrator_pb2.SessionRequest(
            input_text=orchestrator_pb2.InputText(text="Let me talk to a manager, please.")))
        events: list[orchestrator_pb2.SessionResponse] = []
        notification_id = ""
        while True:
            event = await asyncio.wait_for(call.read(), 60)
            events.append(event)
            kind = event.WhichOneof("event")
            if kind == "started":
                session_id = event.started.session_id
            if kind == "notification":
                notification_id = event.notification.notification_id
            if (kind == "response_done" and notification_id
                    and event.response_done.turn_id == notification_id):
                break
        await call.write(orchestrator_pb2.SessionRequest(end=orchestrator_pb2.EndSession()))
        await call.done_writing()

    kinds = [e.WhichOneof("event") for e in events]
    note = next(e.notification for e in events if e.WhichOneof("event") == "notification")
    dones = [e.response_done for e in events if e.WhichOneof("event") == "response_done"]
    assert [d.status for d in dones] == ["completed", "completed"]
    # The notification waited for the reply that announced the search to finish.
    assert kinds.index("notification") > kinds.index("response_done")
    assert note.priority == "high" and note.source == "escalation"
    assert "ESC-" in note.text and "call you back at 555-0100" in note.text
    spoken = b"".join(e.audio.audio for e in events
                      if e.WhichOneof("event") == "audio" and e.audio.turn_id == notification_id)
    assert rms(spoken) > 0.02
    text = "".join(e.response_text.delta for e in events
                   if e.WhichOneof("event") == "response_text"
                   and e.response_text.turn_id == notification_id)
    assert text == note.text

    entries = await wait_for_audit(stack, session_id, "session.end")
    types = [e["type"] for e in entries]
    assert types.index("notification.received") < types.index("notification.spoken")
    tool = next(e for e in entries if e["type"] == "tool"
                and e["data"]["phase"] == "TOOL_PHASE_COMPLETED")
    assert tool["data"]["name"] == "escalate_to_human"


async def test_a_client_resumes_its_session_through_another_gateway(
        stack: Stack, stack_factory: Any, fake_llm: FakeOpenAI) -> None:
    """Gateways hold no session state: after its gateway goes away, a client reconnects
    anywhere with its session id and the conversation goes on."""
    async with RealtimeClient(ws_url(stack), api_key=stack.api_key) as client:
        started = await client.start()
        await client.send("input_text", text="My name is Ada Lovelace.")
        await client.wait_for(lambda e: e["type"] == "response.done", 30)
    other = stack_factory(services=("gateway",), extra_env={
        "VOXMESH_GATEWAY_ORCHESTRATOR_ADDR": stack.addr("orchestrator")})
    url = f"ws://{other.host}:{other.ports.gateway}/v1/realtime"
    async with RealtimeClient(url, api_key=other.api_key) as client:
        resumed = await client.start(session_id=started["session_id"],
                                     resume_token=started["resume_token"])
        await client.send("input_text", text="When does service open on Saturday?")
        done = await client.wait_for(lambda e: e["type"] == "response.done", 30)

    assert resumed["type"] == "session.started", resumed
    assert resumed["session_id"] == started["session_id"] and resumed["resumed"] is True
    assert done["status"] == "completed"
    users = [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "user"]
    assert users[-2:] == ["My name is Ada Lovelace.", "When does service open on Saturday?"]
