"""The gateway process against a scripted orchestrator: page, health, metrics, protocol v1.

The gateway is the real ``python -m gateway`` process; the orchestrator is
:mod:`tests.scripted_orchestrator`, a real grpc.aio server in this process, so each
test can check what the gateway forwarded as well as what it sent back.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.scripted_orchestrator import ScriptedOrchestrator, reply_chunk, serve_scripted
from voxmesh.client import fetch_token, with_token
from voxmesh.launcher import Stack, free_port
from voxmesh.v1 import orchestrator_pb2 as pb

Frame = dict[str, Any] | bytes
HELLO_TURN = ["state", "transcript", "response.text", "response.text", "state", "audio", "audio",
              "audio", "response.done", "transcript", "latency"]


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[tuple[str, ScriptedOrchestrator]]:
    async with serve_scripted() as served:
        yield served


@pytest.fixture(scope="module")
def servicer(scripted: tuple[str, ScriptedOrchestrator]) -> ScriptedOrchestrator:
    return scripted[1]


def start_gateway(stack_factory: Callable[..., Stack], orchestrator_addr: str,
                  **env: str) -> Stack:
    """A gateway process in front of ``orchestrator_addr``; ``env`` sets VOXMESH_GATEWAY_*."""
    extra = {f"VOXMESH_GATEWAY_{name.upper()}": value for name, value in env.items()}
    return stack_factory(services=("gateway",), extra_env={
        "VOXMESH_GATEWAY_ORCHESTRATOR_ADDR": orchestrator_addr, **extra})


@pytest.fixture(scope="module")
def gateway(stack_factory: Callable[..., Stack],
            scripted: tuple[str, ScriptedOrchestrator]) -> Stack:
    return start_gateway(stack_factory, scripted[0])


def ws_url(stack: Stack) -> str:
    """The realtime URL without a token."""
    return f"ws://{stack.host}:{stack.ports.gateway}/v1/realtime"


async def realtime_url(stack: Stack, user_id: str = "") -> str:
    """The realtime URL with a fresh token bought with the stack's API key."""
    return with_token(ws_url(stack), await fetch_token(ws_url(stack), stack.api_key, user_id))


def kind(frame: Frame) -> str:
    return "audio" if isinstance(frame, bytes) else str(frame["type"])


async def send(ws: ClientConnection, type_: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": type_, **fields}))


async def recv(ws: ClientConnection, timeout_s: float = 10.0) -> Frame:
    message = await asyncio.wait_for(ws.recv(), timeout_s)
    return message if isinstance(message, bytes) else json.loads(message)


async def recv_until(ws: ClientConnection, last: str) -> list[Frame]:
    """Frames up to and including the first one of type ``last``."""
    frames = [await recv(ws)]
    while kind(frames[-1]) != last:
        frames.append(await recv(ws))
    return frames


async def start_session(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    """Start a session; returns session.started after the first state (listening) arrived."""
    await send(ws, "session.start", **{"agent": "assistant", **fields})
    started = await recv(ws)
    assert isinstance(started, dict) and started["type"] == "session.started", started
    assert await recv(ws) == {"type": "state", "state": "listening", "turn_id": None}
    return started


async def assert_alive(ws: ClientConnection) -> None:
    await send(ws, "ping", id="still-there")
    assert await recv(ws) == {"type": "pong", "id": "still-there"}


async def close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_page_references_its_worklets_and_loads_nothing_external(gateway: Stack) -> None:
    async with httpx.AsyncClient(base_url=gateway.gateway_url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert 'data-mic-worklet="/static/mic-worklet.js"' in page.text
        assert "http://" not in page.text and "https://" not in page.text
        assets = {
            "/static/mic-worklet.js": 'registerProcessor("mic-processor"',
            "/static/player-worklet.js": 'registerProcessor("player-processor"',
            "/static/app.js": '"session.start"',
            "/static/style.css": ".bubble.user.partial",
        }
        for path, marker in assets.items():
            reply = await http.get(path)
            assert reply.status_code == 200, path
            assert marker in reply.text, path
            assert "https://" not in reply.text, f"{path} loads something from elsewhere"


async def test_healthz_and_metrics(gateway: Stack) -> None:
    async with httpx.AsyncClient(base_url=gateway.gateway_url) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        async with connect(await realtime_url(gateway)) as ws:
            await send(ws, "ping", id=7)
            assert await recv(ws) == {"type": "pong", "id": 7}
            await ws.send("{oops")
            error = await recv(ws)
            assert isinstance(error, dict) and error["code"] == "invalid_message"
            reply = await http.get("/metrics")
    assert reply.status_code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(reply.text) for s in family.samples}
    assert samples[("voxmesh_gateway_connections", ())] >= 1
    assert samples[("voxmesh_gateway_messages_total",
                    (("direction", "in"), ("type", "ping")))] >= 1
    assert samples[("voxmesh_gateway_messages_total",
                    (("direction", "out"), ("type", "pong")))] >= 1
    assert samples[("voxmesh_gateway_errors_total", (("code", "invalid_message"),))] >= 1


async def test_a_turn_round_trips_in_order(gateway: Stack, servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(gateway)) as ws:
        started = await start_session(ws)
        assert started["agent"] == "assistant" and started["resumed"] is False
        session = servicer.sessions[started["session_id"]]
        assert (session.input_rate, session.output_rate) == (16000, 24000)  # the defaults

        for _ in range(5):
            await ws.send(bytes(640))  # 20 ms of 16 kHz silence each
        await send(ws, "input_text", text="hello")
        frames = await recv_until(ws, "latency")
        assert [kind(f) for f in frames] == ["speech_started", *HELLO_TURN]
        assert frames[0] == {"type": "speech_started", "offset_ms": 0}
        assert frames[1] == {"type": "state", "state": "thinking", "turn_id": "t1"}
        assert frames[2] == {"type": "transcript", "role": "user", "text": "hello",
                             "final": True, "turn_id": "t1"}
        assert frames[3] == {"type": "response.text", "turn_id": "t1", "delta": "Hello"}
        assert frames[6:9] == [reply_chunk(i, 24000) for i in range(3)]
        assert frames[9] == {"type": "response.done", "turn_id": "t1", "status": "completed"}
        assert frames[11] == {"type": "latency", "turn_id": "t1", "stt_ms": 0, "llm_ms": 12,
                              "tts_ms": 3, "total_ms": 15}
        assert await recv(ws) == {"type": "state", "state": "listening", "turn_id": None}

        await send(ws, "input_text", text="count")  # the reply is the audio bytes received
        reply = await recv_until(ws, "response.text")
        assert reply[-1] == {"type": "response.text", "turn_id": "t2", "delta": "3200"}
        await recv_until(ws, "latency")

        await send(ws, "playback", turn_id="t2", played_ms=1234, done=False)
        await send(ws, "interrupt")
        frames = await recv_until(ws, "response.done")
        assert frames[-3:] == [
            {"type": "state", "state": "interrupted", "turn_id": "t2"},
            {"type": "playback_stop", "turn_id": "t2"},
            {"type": "response.done", "turn_id": "t2", "status": "interrupted"},
        ]
        await send(ws, "session.end")
        assert (await recv_until(ws, "state"))[-1] == {"type": "state", "state": "idle",
                                                       "turn_id": None}
        assert await close_code(ws) == 1000

    await asyncio.wait_for(session.ended.wait(), 5)
    assert session.outcome == "ended"
    assert session.kinds == ["start", *["audio"] * 5, "input_text", "input_text", "playback",
                             "interrupt", "end"]
    assert session.texts == ["hello", "count"]
    assert list(session.playback) == [pb.PlaybackReport(turn_id="t2", played_ms=1234)]


async def test_start_fields_reach_the_orchestrator(gateway: Stack,
                                                   servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(gateway)) as ws:
        started = await start_session(ws, agent="concierge", session_id="resume-me",
                                      sample_rate=48000, output_sample_rate=16000,
                                      variables={"name": "Ada"})
        assert {k: started[k] for k in ("type", "session_id", "agent", "resumed")} == {
            "type": "session.started", "session_id": "resume-me", "agent": "concierge",
            "resumed": True}
        assert started["token_expires_at"] > time.time()
        await send(ws, "input_text", text="hello")
        audio = [f for f in await recv_until(ws, "latency") if isinstance(f, bytes)]
        assert audio == [reply_chunk(i, 16000) for i in range(3)]  # 20 ms at 16 kHz each
    session = servicer.sessions["resume-me"]
    assert (session.agent, session.input_rate, session.output_rate) == ("concierge", 48000, 16000)


@pytest.mark.parametrize(("started", "frame", "code", "says"), [
    (False, b"\x00\x00", "not_started", "send session.start before any audio"),
    (False, {"type": "input_text", "text": "hi"}, "not_started", "input_text: send session.start"),
    (False, {"type": "session.start", "sample_rate": 12345}, "invalid_field",
     "sample_rate: input should be one of 8000, 16000, 24000, 44100, 48000"),
    (False, {"type": "session.start", "sample_rate": "16000"}, "invalid_field",
     "sample_rate: input should be a valid integer"),
    (True, "{not json", "invalid_message", "malformed JSON"),
    (True, "[1, 2]", "invalid_message", "expected a JSON object"),
    (True, {"text": "no type"}, "invalid_message", "type: field required"),
    (True, {"type": "dance"}, "unknown_type", "unknown message type 'dance'"),
    (True, {"type": "playback", "turn_id": "t1", "played_ms": "soon"}, "invalid_field",
     "played_ms: input should be a valid integer"),
    (True, {"type": "input_text", "text": " "}, "invalid_field",
     "text: input should contain more than whitespace"),
    (True, {"type": "session.start"}, "invalid_message", "already started"),
    (True, {"type": "input_text", "text": "a" * 70_000}, "frame_too_large", "65536 bytes"),
    (True, bytes(70_000), "frame_too_large", "70000 bytes"),
    (True, bytes(641), "invalid_audio", "641 bytes is not whole PCM16 samples"),
])
async def test_bad_frames_get_an_error_and_the_connection_goes_on(
        gateway: Stack, servicer: ScriptedOrchestrator, started: bool, frame: Any, code: str,
        says: str) -> None:
    async with connect(await realtime_url(gateway), max_size=2**22) as ws:
        session_id = (await start_session(ws))["session_id"] if started else None
        await ws.send(frame if isinstance(frame, (bytes, str)) else json.dumps(frame))
        error = await recv(ws)
        assert isinstance(error, dict)
        assert error["type"] == "error" and error["code"] == code, error
        assert says in error["message"], error
        await assert_alive(ws)
        if session_id is None:  # a valid start still works after the mistake
            session_id = (await start_session(ws))["session_id"]
        await send(ws, "input_text", text="hello")
        assert [kind(f) for f in await recv_until(ws, "latency")] == HELLO_TURN
    session = servicer.sessions[session_id]
    assert session.kinds == ["start", "input_text"]  # nothing invalid was forwarded


async def test_notification_agent_change_and_user_id_are_relayed(
        gateway: Stack, servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(gateway, user_id="ada")) as ws:
        started = await start_session(ws)
        await send(ws, "input_text", text="handoff")
        frames = await recv_until(ws, "latency")
        assert frames[0] == {"type": "agent.changed", "turn_id": "t1", "from_agent": "assistant",
                             "to_agent": "booking", "reason": "intent booking (keyword)"}
        assert [kind(f) for f in frames[1:]] == HELLO_TURN
        assert await recv(ws) == {"type": "state", "state": "listening", "turn_id": None}

        await send(ws, "input_text", text="notify")
        frames = await recv_until(ws, "latency")
        assert frames[0] == {"type": "notification", "notification_id": "n1",
                             "text": "Your car is ready.", "priority": "high",
                             "source": "escalation"}
        assert {"type": "response.text", "turn_id": "n1", "delta": "Your car is ready."} in frames
        assert {"type": "response.done", "turn_id": "n1", "status": "completed"} in frames
    assert servicer.sessions[started["session_id"]].user_id == "ada"


async def test_agents_are_listed_for_the_picker(gateway: Stack) -> None:
    async with httpx.AsyncClient(base_url=gateway.gateway_url) as http:
        reply = await http.get("/v1/agents")
    assert reply.json() == {"agents": ["router", "assistant", "booking", "concierge"],
                            "default": "router"}


async def test_unknown_agent_is_an_error_and_a_close(gateway: Stack) -> None:
    async with connect(await realtime_url(gateway)) as ws:
        await send(ws, "session.start", agent="missing")
        assert await recv(ws) == {"type": "error", "code": "not_found",
                                  "message": "agent 'missing' not found"}
        assert await close_code(ws) == 1008


async def test_orchestrator_failure_mid_session_closes_with_1011(gateway: Stack) -> None:
    async with connect(await realtime_url(gateway)) as ws:
        await start_session(ws)
        await send(ws, "input_text", text="crash")
        assert await recv(ws) == {"type": "error", "code": "internal",
                                  "message": "scripted failure"}
        assert await close_code(ws) == 1011


async def test_non_fatal_orchestrator_errors_are_relayed(gateway: Stack) -> None:
    async with connect(await realtime_url(gateway)) as ws:
        await start_session(ws)
        await send(ws, "input_text", text="warn")
        assert await recv(ws) == {"type": "error", "code": "tts_failed",
                                  "message": "speech synthesis failed"}
        await assert_alive(ws)


async def test_orchestrator_down_is_unavailable(stack_factory: Callable[..., Stack]) -> None:
    stack = start_gateway(stack_factory, f"127.0.0.1:{free_port()}")
    async with connect(await realtime_url(stack)) as ws:
        await send(ws, "session.start")
        error = await recv(ws)
        assert isinstance(error, dict)
        assert (error["type"], error["code"]) == ("error", "unavailable")
        assert error["message"]
        assert await close_code(ws) == 1011


async def test_connections_are_independent_and_a_slow_client_blocks_nobody(
        gateway: Stack, servicer: ScriptedOrchestrator) -> None:
    slow_url, fast_url = await realtime_url(gateway), await realtime_url(gateway)
    async with connect(slow_url, max_queue=1) as slow, connect(fast_url) as fast:
        slow_id = (await start_session(slow))["session_id"]
        await send(slow, "input_text", text="flood")  # endless audio that `slow` never reads
        flooding = servicer.sessions[slow_id]
        while flooding.flood_chunks < 20:
            await asyncio.sleep(0.01)

        fast_id = (await start_session(fast))["session_id"]
        assert fast_id != slow_id
        for _ in range(2):
            await send(fast, "input_text", text="hello")
            assert [kind(f) for f in await recv_until(fast, "latency")] == HELLO_TURN
            assert await recv(fast) == {"type": "state", "state": "listening", "turn_id": None}

        # The slow client vanishes: its orchestrator stream is cancelled, the other goes on.
        slow.transport.abort()
        await asyncio.wait_for(flooding.ended.wait(), 10)
        assert flooding.outcome == "cancelled"
        await assert_alive(fast)
        assert servicer.sessions[fast_id].kinds == ["start", "input_text", "input_text"]


async def test_sigterm_closes_sessions_and_stops_the_gateway(
        stack_factory: Callable[..., Stack], scripted: tuple[str, ScriptedOrchestrator]) -> None:
    addr, servicer = scripted
    stack = start_gateway(stack_factory, addr)
    popen = stack.procs[0].popen
    async with connect(await realtime_url(stack)) as ws:
        session_id = (await start_session(ws))["session_id"]
        session = servicer.sessions[session_id]
        await asyncio.to_thread(stack.stop)
        # Told first, so that the client reconnects and resumes this session elsewhere.
        assert await recv(ws) == {"type": "session.draining", "session_id": session_id}
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012  # service restart: come back later
        assert closed.value.rcvd.reason.startswith("service restart")
    assert popen.returncode == -signal.SIGTERM  # exited on its own, not killed
    await asyncio.wait_for(session.ended.wait(), 5)  # the gateway closed its stream
    assert session.outcome in ("cancelled", "ended")
