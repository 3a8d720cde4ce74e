"""The gateway's front door: tokens, origins, connection caps, rate and size limits, timeouts.

Real ``python -m gateway`` processes (each with its own limits) in front of the scripted
orchestrator, driven by real httpx and websockets clients. Every refusal must name its
reason, and none may disturb a legitimate session on the same gateway.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import TokenIssuer
from tests.scripted_orchestrator import ScriptedOrchestrator, serve_scripted
from tests.test_gateway import (
    HELLO_TURN,
    assert_alive,
    kind,
    realtime_url,
    recv,
    recv_until,
    send,
    start_gateway,
    start_session,
    ws_url,
)
from voxmesh.client import with_token
from voxmesh.launcher import Stack

StackFactory = Callable[..., Stack]


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[tuple[str, ScriptedOrchestrator]]:
    async with serve_scripted() as served:
        yield served


@pytest.fixture(scope="module")
def servicer(scripted: tuple[str, ScriptedOrchestrator]) -> ScriptedOrchestrator:
    return scripted[1]


@pytest.fixture(scope="module")
def gateway(stack_factory: StackFactory, scripted: tuple[str, ScriptedOrchestrator]) -> Stack:
    """Default limits."""
    return start_gateway(stack_factory, scripted[0])


@pytest.fixture(scope="module")
def strict(stack_factory: StackFactory, scripted: tuple[str, ScriptedOrchestrator]) -> Stack:
    """Tight limits, so that each is reached in a fraction of a second."""
    return start_gateway(
        stack_factory, scripted[0], allowed_origins="self,https://app.example.com",
        max_frame_bytes="4096", max_messages_per_s="20", message_burst="20",
        audio_rate_margin="1.0", audio_burst_s="1.0", start_timeout_s="1.5",
        idle_timeout_s="2", ping_interval_s="0.5", ping_timeout_s="0.5")


async def closed_with(ws: ClientConnection, timeout_s: float = 10.0) -> tuple[int, str]:
    """Read until the server closes; returns its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout_s)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def hello_turn(ws: ClientConnection) -> None:
    await send(ws, "input_text", text="hello")
    assert [kind(f) for f in await recv_until(ws, "latency")] == HELLO_TURN
    assert await recv(ws) == {"type": "state", "state": "listening", "turn_id": None}


async def collect(ws: ClientConnection, quiet_s: float = 0.5) -> list[Any]:
    """Frames until none arrives for ``quiet_s``."""
    frames = []
    while True:
        try:
            frames.append(await recv(ws, quiet_s))
        except TimeoutError:
            return frames


# -- tokens -----------------------------------------------------------------------------------


async def test_sessions_endpoint_trades_the_api_key_for_a_token(gateway: Stack) -> None:
    async with httpx.AsyncClient(base_url=gateway.gateway_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key"},
                        {"Authorization": f"Basic {gateway.api_key}"}):
            refused = await http.post("/v1/sessions", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"].startswith("Bearer")
            error = refused.json()["error"]
            assert error["code"] == "unauthorized" and error["message"], error
            assert gateway.api_key not in refused.text
        before = time.time()
        reply = await http.post("/v1/sessions",
                                headers={"Authorization": f"Bearer {gateway.api_key}"})
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert set(body) == {"token", "expires_at"}
    assert before + 295 <= body["expires_at"] <= time.time() + 305  # the 5-minute default TTL
    async with connect(with_token(ws_url(gateway), body["token"])) as ws:
        await start_session(ws)
        await hello_turn(ws)


def _tokens(api_key: str) -> dict[str, str]:
    expired, _ = TokenIssuer(api_key, 60).issue("key-test", now=time.time() - 3600)
    forged, _ = TokenIssuer("another key entirely", 60).issue("key-test")
    valid, _ = TokenIssuer(api_key, 60).issue("key-test")
    return {"expired": expired, "forged": forged, "tampered": valid[:-4] + "AAAA",
            "garbage": "not-a-jwt"}


@pytest.mark.parametrize(("case", "says"), [
    ("missing", "missing token"),
    ("garbage", "token is invalid"),
    ("forged", "signature is invalid"),
    ("tampered", "signature is invalid"),
    ("expired", "token expired"),
])
async def test_realtime_refuses_bad_tokens_with_4401(gateway: Stack, case: str,
                                                      says: str) -> None:
    url = ws_url(gateway) if case == "missing" else with_token(
        ws_url(gateway), _tokens(gateway.api_key)[case])
    async with connect(url) as ws:
        code, reason = await closed_with(ws)
    assert code == 4401 and says in reason, (code, reason)


async def test_a_token_for_a_user_fixes_the_sessions_user(
        gateway: Stack, servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(gateway, user_id="bob")) as ws:
        await send(ws, "session.start", user_id="eve")
        error = await recv(ws)
        assert isinstance(error, dict) and error["code"] == "invalid_field"
        assert "user_id: the session's user comes from its token" in error["message"]
        started = await start_session(ws)  # no user_id: the token's user
    assert servicer.sessions[started["session_id"]].user_id == "bob"


# -- origins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("which", "origin", "allowed"), [
    ("gateway", "self", True),
    ("gateway", "http://localhost:5173", True),
    ("gateway", "https://evil.example", False),
    ("gateway", "null", False),
    ("strict", "https://app.example.com", True),
    ("strict", "http://localhost:5173", False),  # the list replaced the default
])
async def test_only_allowed_origins_get_in(request: pytest.FixtureRequest, which: str,
                                           origin: str, allowed: bool) -> None:
    stack: Stack = request.getfixturevalue(which)
    if origin == "self":
        origin = f"http://{stack.host}:{stack.ports.gateway}"
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        reply = await http.post("/v1/sessions", headers={
            "Authorization": f"Bearer {stack.api_key}", "Origin": origin})
    assert reply.status_code == (200 if allowed else 403), reply.text
    url = await realtime_url(stack)
    async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
        if allowed:
            await start_session(ws)
        else:
            code, reason = await closed_with(ws)
            assert code == 4403 and f"origin {origin} is not allowed" in reason


# -- connection caps --------------------------------------------------------------------------


async def test_per_ip_connection_limit(stack_factory: StackFactory,
                                       scripted: tuple[str, ScriptedOrchestrator]) -> None:
    stack = start_gateway(stack_factory, scripted[0], max_connections_per_ip="3")
    held = [await connect(await realtime_url(stack)) for _ in range(3)]
    try:
        for ws in held:
            await start_session(ws)
        async with connect(await realtime_url(stack)) as extra:
            code, reason = await closed_with(extra)
        assert code == 4429 and "this IP already has 3 connections" in reason
        for ws in held:
            await assert_alive(ws)  # the refusal touched nobody else
        await held.pop().close()
        for _ in range(50):  # the gateway counts the closed one out as it notices
            async with connect(await realtime_url(stack)) as again:
                await send(again, "ping")
                reply = await recv(again)
                if isinstance(reply, dict) and reply.get("type") == "pong":
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("a freed connection slot was never reusable")
    finally:
        for ws in held:
            await ws.close()


async def test_per_user_connection_limit(stack_factory: StackFactory,
                                         scripted: tuple[str, ScriptedOrchestrator]) -> None:
    """A user a token names holds at most MAX_CONNECTIONS_PER_USER of its key's connections."""
    stack = start_gateway(stack_factory, scripted[0], max_connections_per_user="2")
    held = [await connect(await realtime_url(stack, user_id="bob")) for _ in range(2)]
    try:
        for ws in held:
            await start_session(ws)
        async with connect(await realtime_url(stack, user_id="bob")) as extra:
            code, reason = await closed_with(extra)
        assert (code, reason) == (4429, "this user already has 2 connections")
        for user in ("alice", "", ""):  # other users, and tokens that name none, get in
            held.append(await connect(await realtime_url(stack, user_id=user)))
            await start_session(held[-1])
    finally:
        for ws in held:
            await ws.close()


# -- rates, sizes, timeouts -------------------------------------------------------------------


async def test_message_flood_is_rate_limited_and_the_session_goes_on(
        strict: Stack, servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(strict)) as ws:
        started = await start_session(ws)
        for i in range(60):
            await send(ws, "ping", id=i)
        frames = await collect(ws)
        pongs = [f for f in frames if isinstance(f, dict) and f["type"] == "pong"]
        errors = [f for f in frames if isinstance(f, dict) and f["type"] == "error"]
        assert 15 <= len(pongs) <= 25, len(pongs)  # the burst of 20, less session.start
        assert len(errors) == 1, errors  # one error per second, not one per dropped frame
        assert errors[0]["code"] == "rate_limited"
        assert "more than 20 frames per second" in errors[0]["message"]
        await asyncio.sleep(1.1)  # the bucket refills
        await hello_turn(ws)
    assert servicer.sessions[started["session_id"]].kinds == ["start", "input_text"]


async def test_audio_faster_than_real_time_is_dropped(
        strict: Stack, servicer: ScriptedOrchestrator) -> None:
    eighth = bytes(4000)  # 125 ms at 16 kHz, under the strict 4096-byte frame limit
    async with connect(await realtime_url(strict)) as ws:
        started = await start_session(ws)
        for _ in range(12):  # 1.5 s at once: the 1 s burst passes, the rest does not
            await ws.send(eighth)
        frames = await collect(ws)
        errors = [f for f in frames if isinstance(f, dict) and f["type"] == "error"]
        assert [e["code"] for e in errors] == ["audio_too_fast"]  # once, not per frame
        assert "faster than 1x real time" in errors[0]["message"]
        await asyncio.sleep(0.6)  # credit for more than half a second comes back
        for _ in range(4):
            await ws.send(eighth)
        await send(ws, "input_text", text="count")
        reply = (await recv_until(ws, "response.text"))[-1]
    assert isinstance(reply, dict) and reply["delta"] == str(12 * len(eighth))
    assert servicer.sessions[started["session_id"]].audio_bytes == 12 * len(eighth)


async def test_oversized_frames_get_an_error_and_huge_ones_close_1009(strict: Stack) -> None:
    async with connect(await realtime_url(strict)) as ws:
        await start_session(ws)
        await ws.send(bytes(5000))
        error = await recv(ws)
        assert isinstance(error, dict) and error["code"] == "frame_too_large"
        assert "frame of 5000 bytes is larger than the limit of 4096 bytes" in error["message"]
        await assert_alive(ws)
        await ws.send(bytes(70_000))  # over 16 x 4096: not even read
        code, _ = await closed_with(ws)
    assert code == 1009


async def test_a_connection_that_never_starts_is_closed(strict: Stack) -> None:
    async with connect(await realtime_url(strict)) as ws:
        for _ in range(3):  # pings keep nothing alive without session.start
            await assert_alive(ws)
            await asyncio.sleep(0.3)
        code, reason = await closed_with(ws)
    assert code == 4408 and reason == "no session.start within 1.5 s"


async def test_an_idle_session_is_ended_and_a_busy_one_is_not(
        strict: Stack, servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(strict)) as idle, \
            connect(await realtime_url(strict)) as busy:
        idle_session = servicer.sessions[(await start_session(idle))["session_id"]]
        await start_session(busy)
        for _ in range(6):  # 3 s: past the idle limit, a frame every half second
            await assert_alive(busy)
            await asyncio.sleep(0.5)
        code, reason = await closed_with(idle)
        await asyncio.wait_for(idle_session.ended.wait(), 10)
        await hello_turn(busy)
    assert (code, reason) == (4408, "idle: no frame within 2 s")
    assert idle_session.outcome == "ended"  # told to end, not cut off


async def test_heartbeat_closes_a_dead_peer_and_spares_a_live_one(
        strict: Stack, servicer: ScriptedOrchestrator) -> None:
    async with connect(await realtime_url(strict)) as live, \
            connect(await realtime_url(strict)) as dead:
        await start_session(live)
        dead_session = servicer.sessions[(await start_session(dead))["session_id"]]
        dead.transport.pause_reading()  # it stops answering pings, as a vanished peer does
        await asyncio.wait_for(dead_session.ended.wait(), 10)
        assert dead_session.outcome in ("cancelled", "ended")  # the gateway let it go
        dead.transport.resume_reading()
        code, reason = await closed_with(dead)
        assert (code, reason) == (1011, "keepalive ping timeout")
        await hello_turn(live)  # several ping intervals later, the live peer is still here
        await assert_alive(live)


async def test_refusals_are_counted_without_secrets(gateway: Stack) -> None:
    async with connect(ws_url(gateway)) as ws:
        await closed_with(ws)
    async with httpx.AsyncClient(base_url=gateway.gateway_url) as http:
        metrics = (await http.get("/metrics")).text
    assert 'voxmesh_gateway_rejections_total{reason="unauthorized"}' in metrics
    log = next(p for p in gateway.procs if p.name == "gateway").log_path.read_text()
    assert gateway.api_key not in log
    assert "token=[redacted]" in log and "token=ey" not in log  # uvicorn's request lines
    assert json.loads(log.splitlines()[-1])  # the log is still JSON lines


async def test_page_key_only_for_loopback_pages(stack_factory: StackFactory,
                                                scripted: tuple[str, ScriptedOrchestrator],
                                                gateway: Stack) -> None:
    async with httpx.AsyncClient(base_url=gateway.gateway_url) as http:
        assert 'data-session-key=""' in (await http.get("/")).text  # off by default

    stack = start_gateway(stack_factory, scripted[0], page_key_enabled="true")
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        page = await http.get("/")
        assert page.headers["cache-control"] == "no-store"
        key = page.text.split('data-session-key="')[1].split('"')[0]
        assert len(key) == 64 and key != stack.api_key
        rebound = {"Host": f"evil.example:{stack.ports.gateway}"}  # DNS rebinding
        assert 'data-session-key=""' in (await http.get("/", headers=rebound)).text

        bearer = {"Authorization": f"Bearer {key}"}
        refused = await http.post("/v1/sessions", headers={**bearer, **rebound})
        assert refused.status_code == 401
        with_user = await http.post("/v1/sessions", headers=bearer, json={"user_id": "eve"})
        assert with_user.status_code == 403 and "user_id" in with_user.json()["error"]["message"]
        reply = await http.post("/v1/sessions", headers=bearer)
        assert reply.status_code == 200
    async with connect(with_token(ws_url(stack), reply.json()["token"])) as ws:
        await start_session(ws)
        await hello_turn(ws)
