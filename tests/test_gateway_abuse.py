"""Abuse: hypothesis-generated bad traffic at a real gateway while a legitimate session talks.

A real ``python -m gateway`` process in front of the scripted orchestrator. While one
legitimate session streams paced audio and runs whole turns, hypothesis throws malformed
JSON, wrong field types, unknown types, huge text and binary frames, binary before
``session.start`` and floods at it (one connection per example, each checked for its
precise error event or close code), next to slowloris connections (raw sockets that
trickle handshake bytes or send nothing, WebSockets that trickle half a frame) and clients
that never read their socket. The legitimate session must see every event of every turn,
and the gateway's resident memory must stay within ``MEMORY_BOUND_MIB`` of what it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.protocol import CLIENT_TYPES
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
)
from tests.test_gateway_security import closed_with, collect
from voxmesh.launcher import Stack

StackFactory = Callable[..., Stack]

MAX_FRAME = 4096
HARD_FRAME = 16 * MAX_FRAME  # over this uvicorn closes with 1009 before reading
BURST = 100
SEND_QUEUE = 256 * 1024
HANDSHAKE_TIMEOUT_S = 2.0
MEMORY_BOUND_MIB = 64
"""Growth of the gateway's RSS allowed during the barrage: every connection's buffers are
bounded (frames by 16 x max_frame_bytes, outboxes by send_queue_bytes), so a barrage of
~100 connections costs a few MiB; 64 MiB leaves room for allocator noise, not for a leak."""
EXAMPLES = 60
LIMITS = {
    "max_frame_bytes": str(MAX_FRAME), "max_messages_per_s": str(BURST),
    "message_burst": str(BURST), "start_timeout_s": "2", "handshake_timeout_s": "2",
    "max_connections_per_ip": "200", "send_queue_bytes": str(SEND_QUEUE),
    "ping_interval_s": "5", "ping_timeout_s": "5",
    "key_messages_per_s": "100000", "key_message_burst": "100000",
}


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[tuple[str, ScriptedOrchestrator]]:
    async with serve_scripted() as served:
        yield served


@pytest.fixture(scope="module")
def servicer(scripted: tuple[str, ScriptedOrchestrator]) -> ScriptedOrchestrator:
    return scripted[1]


@pytest.fixture(scope="module")
def gateway(stack_factory: StackFactory, scripted: tuple[str, ScriptedOrchestrator]) -> Stack:
    return start_gateway(stack_factory, scripted[0], **LIMITS)


# -- attacks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """One bad connection: what it sends and the precise answer it must get.

    Attributes:
        started: Whether it sends a valid ``session.start`` first.
        frames: What it sends; a flood when more than one.
        code: The ``error`` code expected (None: ``close`` is expected instead).
        says: Text the error message or close reason must contain.
        close: The close code expected instead of an error.
    """

    started: bool
    frames: tuple[str | bytes, ...]
    code: str | None = None
    says: str = ""
    close: int | None = None


def _size_verdict(size: int) -> tuple[str | None, str, int | None] | None:
    if size > HARD_FRAME:
        return None, "", 1009
    if size > MAX_FRAME:
        return "frame_too_large", f"frame of {size} bytes is larger than the limit", None
    return None


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=120)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=8)

malformed_json = st.builds(
    lambda started, text: Attack(started, (text,), "invalid_message", "malformed JSON"),
    st.booleans(), _text.filter(_not_json))
not_an_object = st.builds(
    lambda started, value: Attack(started, (json.dumps(value),), "invalid_message",
                                  "expected a JSON object"),
    st.booleans(), _json.filter(lambda v: not isinstance(v, dict)))
unknown_type = st.builds(
    lambda started, type_: Attack(started, (json.dumps({"type": type_}),), "unknown_type",
                                  "unknown message type"),
    st.booleans(), _json.filter(lambda v: v not in CLIENT_TYPES))

# (message, its valid fields, the field made wrong, a test of the right type)
_FIELDS: list[tuple[str, dict[str, Any], str, Callable[[Any], bool]]] = [
    ("input_text", {}, "text", lambda v: isinstance(v, str)),
    ("playback", {"turn_id": "t1", "played_ms": 0}, "turn_id", lambda v: isinstance(v, str)),
    ("playback", {"turn_id": "t1", "played_ms": 0}, "played_ms", lambda v: type(v) is int),
    ("playback", {"turn_id": "t1", "played_ms": 0}, "done", lambda v: type(v) is bool),
    ("session.start", {}, "sample_rate", lambda v: type(v) is int),
    ("session.start", {}, "agent", lambda v: isinstance(v, str)),
    ("session.start", {}, "variables", lambda v: isinstance(v, dict)),
]


@st.composite
def wrong_type(draw: st.DrawFn) -> Attack:
    message, valid, field, right = draw(st.sampled_from(_FIELDS))
    value = draw(_json.filter(lambda v: not right(v)))
    frame = json.dumps({"type": message, **valid, field: value})
    return Attack(draw(st.booleans()), (frame,), "invalid_field", f"{field}:")


@st.composite
def huge_frame(draw: st.DrawFn) -> Attack:
    size = draw(st.integers(MAX_FRAME + 1, HARD_FRAME + 8192))
    frame: str | bytes = bytes(size) if draw(st.booleans()) else "x" * size
    code, says, close = _size_verdict(size) or (None, "", None)
    return Attack(draw(st.booleans()), (frame,), code, says, close)


binary_before_start = st.builds(
    lambda audio: Attack(False, (audio,), "not_started", "send session.start before any audio"),
    st.binary(max_size=MAX_FRAME))
odd_audio = st.builds(
    lambda audio: Attack(True, (audio,), "invalid_audio", "not whole PCM16 samples"),
    st.binary(max_size=MAX_FRAME - 1).filter(lambda b: len(b) % 2 == 1))
flood = st.builds(
    lambda started, count: Attack(
        started, tuple(json.dumps({"type": "ping", "id": i}) for i in range(count)),
        "rate_limited", f"more than {BURST} frames per second"),
    st.booleans(), st.integers(2 * BURST, 4 * BURST))

attacks = st.one_of(malformed_json, not_an_object, unknown_type, wrong_type(), huge_frame(),
                    binary_before_start, odd_audio, flood)


async def run_attack(stack: Stack, attack: Attack) -> None:
    """One connection sends ``attack`` and must get exactly its answer."""
    async with connect(await realtime_url(stack), max_size=None) as ws:
        if attack.started:
            await start_session(ws)
        for frame in attack.frames:
            await ws.send(frame)
        if attack.close is not None:
            code, _ = await closed_with(ws)
            assert code == attack.close, attack
            return
        if len(attack.frames) > 1:  # a flood: a burst answered, then one error, not more
            frames = await collect(ws, quiet_s=0.3)
            errors = [f for f in frames if isinstance(f, dict) and f["type"] == "error"]
            pongs = [f for f in frames if isinstance(f, dict) and f["type"] == "pong"]
            assert [e["code"] for e in errors] == ["rate_limited"], errors
            assert attack.says in errors[0]["message"]
            assert BURST // 2 <= len(pongs) < len(attack.frames), len(pongs)
            await asyncio.sleep(0.5)  # some credit comes back
        else:
            error = await recv(ws)
            assert isinstance(error, dict) and error["type"] == "error", (attack, error)
            assert error["code"] == attack.code, (attack, error)
            assert attack.says in error["message"], (attack, error)
        await assert_alive(ws)  # a rejected frame never costs the connection


# -- slowloris and clients that never read ------------------------------------------------------


async def trickled_handshake(stack: Stack, trickle: bool) -> bytes:
    """A raw socket that starts a WebSocket handshake and never finishes it."""
    reader, writer = await asyncio.open_connection(stack.host, stack.ports.gateway)
    try:
        if trickle:
            writer.write(b"GET /v1/realtime HTTP/1.1\r\nHost: localhost\r\n"
                         b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        answer = b""
        for _ in range(100):  # one header byte every 0.1 s, never the blank line
            if trickle and not answer:
                writer.write(b"X")
                await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.1)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
        return answer
    finally:
        writer.close()


async def half_frame(stack: Stack) -> tuple[int, str]:
    """A WebSocket that sends two bytes of a frame header and then nothing."""
    async with connect(await realtime_url(stack)) as ws:
        ws.transport.write(b"\x81\xfe")  # text frame, 16-bit length to follow: never sent
        # The client's echo of the close is garbled by the half header, so the server ends
        # the closing handshake on its own timer (about 10 s) rather than on the echo.
        return await closed_with(ws, timeout_s=30)


async def metric(stack: Stack, name: str) -> float:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        text = (await http.get("/metrics")).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


async def never_reads(stack: Stack, servicer: ScriptedOrchestrator) -> tuple[int, str]:
    """A client that asks for endless reply audio and stops reading; then reads the close."""
    async with connect(await realtime_url(stack), max_queue=4) as ws:
        session = servicer.sessions[(await start_session(ws))["session_id"]]
        before = await metric(stack, "voxmesh_gateway_slow_clients_total")
        ws.transport.pause_reading()
        await send(ws, "input_text", text="flood")
        while await metric(stack, "voxmesh_gateway_slow_clients_total") <= before:
            await asyncio.sleep(0.05)
        ws.transport.resume_reading()
        closed = await closed_with(ws)
    await asyncio.wait_for(session.ended.wait(), 10)
    assert session.outcome == "cancelled"  # the orchestrator stream was let go
    return closed


# -- the legitimate session ---------------------------------------------------------------------


async def legitimate_turns(stack: Stack, stop: asyncio.Event) -> int:
    """Paced audio, then a ``count`` and a ``hello`` turn, until ``stop``; returns rounds."""
    sent = 0
    rounds = 0
    async with connect(await realtime_url(stack)) as ws:
        await start_session(ws)
        while not stop.is_set() or rounds < 2:
            for _ in range(25):  # half a second of 16 kHz audio, paced like a microphone
                await ws.send(bytes(640))
                sent += 640
                await asyncio.sleep(0.02)
            if rounds == 0:
                assert await recv(ws) == {"type": "speech_started", "offset_ms": 0}
            await send(ws, "input_text", text="count")  # every audio byte arrived
            frames = await recv_until(ws, "response.text")
            last = frames[-1]
            assert isinstance(last, dict) and last["delta"] == str(sent), frames
            await recv_until(ws, "latency")
            assert await recv(ws) == {"type": "state", "state": "listening", "turn_id": None}
            await send(ws, "input_text", text="hello")  # every event of a turn, in order
            assert [kind(f) for f in await recv_until(ws, "latency")] == HELLO_TURN
            assert await recv(ws) == {"type": "state", "state": "listening", "turn_id": None}
            rounds += 1
        await send(ws, "session.end")
        await recv_until(ws, "state")
        code, _ = await closed_with(ws)
        assert code == 1000
    return rounds


def rss_mib(stack: Stack) -> float:
    pid = stack.procs[0].popen.pid
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def test_a_barrage_leaves_a_legitimate_session_and_the_memory_bound_intact(
        gateway: Stack, servicer: ScriptedOrchestrator) -> None:
    for attack in (Attack(True, ("{",), "invalid_message", "malformed JSON"),
                   Attack(True, (bytes(HARD_FRAME + 2),), close=1009)):
        await run_attack(gateway, attack)  # warm up: imports and allocator pools
    baseline = rss_mib(gateway)
    peak = baseline
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mib(gateway))
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    examples: list[Attack] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(attack=attacks)
    def fuzz(attack: Attack) -> None:
        assert threading.current_thread() is not threading.main_thread()
        examples.append(attack)
        asyncio.run_coroutine_threadsafe(run_attack(gateway, attack), loop).result(60)

    sampler = asyncio.create_task(sample())
    legit = asyncio.create_task(legitimate_turns(gateway, stop))
    slow = [asyncio.create_task(trickled_handshake(gateway, trickle)) for trickle in
            (True,) * 8 + (False,) * 4]
    halves = [asyncio.create_task(half_frame(gateway)) for _ in range(8)]
    readers = [asyncio.create_task(never_reads(gateway, servicer)) for _ in range(4)]
    try:
        await asyncio.to_thread(fuzz)
        answers = await asyncio.gather(*slow)
        closes = await asyncio.gather(*halves, *readers)
    finally:
        stop.set()
        rounds = await legit
        await sampler

    assert len(examples) == EXAMPLES
    assert rounds >= 2
    for answer in answers:  # slowloris handshakes: 408, then the gateway hung up
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert b"request headers took too long" in answer
    assert closes[:len(halves)] == [(4408, "no session.start within 2 s")] * len(halves)
    assert closes[len(halves):] == [
        (4413, f"client too slow: over {SEND_QUEUE} bytes unsent")] * len(readers)
    assert await metric(gateway, "voxmesh_gateway_connections") == 0
    after = rss_mib(gateway)
    print(f"gateway RSS: {baseline:.1f} MiB before, peak {peak:.1f} MiB, {after:.1f} MiB after"
          f" ({len(examples)} examples)")
    assert peak - baseline < MEMORY_BOUND_MIB, (baseline, peak)
    assert after - baseline < MEMORY_BOUND_MIB, (baseline, after)


async def test_the_per_key_message_rate_spans_connections(
        stack_factory: StackFactory, scripted: tuple[str, ScriptedOrchestrator]) -> None:
    """Two connections of a key share its 30 frames/s fairly: 15 each, and one may borrow
    what the other leaves unused, but never the other's own share."""
    stack = start_gateway(stack_factory, scripted[0], key_messages_per_s="30",
                          key_message_burst="30")
    async with connect(await realtime_url(stack)) as first, \
            connect(await realtime_url(stack)) as second:
        for i in range(20):  # its share of 15 and 5 borrowed while the second is quiet
            await send(first, "ping", id=i)
        assert len(await collect(first, quiet_s=0.3)) == 20
        for i in range(20):  # its own share is intact; nothing is left to borrow
            await send(second, "ping", id=i)
        frames = await collect(second, quiet_s=0.3)
    errors = [f for f in frames if isinstance(f, dict) and f["type"] == "error"]
    pongs = [f for f in frames if isinstance(f, dict) and f["type"] == "pong"]
    assert [e["code"] for e in errors] == ["rate_limited"]
    assert ("fair share of its key: 15 frames per second (burst 15), the key's 30 split over "
            "its 2 connections") in errors[0]["message"]
    assert 15 <= len(pongs) < 20, len(pongs)  # its whole share, a little refill, not more


FLOODERS_PER_ADDRESS = 4
FLOOD_PER_S = 1000
"""Pings per second from each flooder: 13 times the key's rate over 8 connections, and
still what the gateway can read on a 2-core machine (past that, a flooder's frames only
queue up in its own TCP stream)."""


async def flood(ws: ClientConnection, stop: asyncio.Event) -> list[dict[str, Any]]:
    """``FLOOD_PER_S`` pings per second until ``stop``; returns the errors it was sent."""
    errors: list[dict[str, Any]] = []

    async def read() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                event = json.loads(message) if isinstance(message, str) else {}
                if event.get("type") == "error":
                    errors.append(event)

    reader = asyncio.create_task(read())
    i = 0
    try:
        while not stop.is_set():
            for _ in range(FLOOD_PER_S // 50):
                await send(ws, "ping", id=i)
                i += 1
            await asyncio.sleep(0.02)
    finally:
        ws.transport.abort()  # its backlog is not worth a closing handshake
        await reader
    return errors


async def test_a_flood_on_a_key_cannot_take_an_honest_callers_share(
        stack_factory: StackFactory, scripted: tuple[str, ScriptedOrchestrator]) -> None:
    """Flooders on two addresses hold 8 of the key's 9 connections and send all they can;
    an honest caller on the same key streams 10 s of paced audio and loses no frame."""
    # Shares of 600/9 = 67 frames/s against the honest caller's 50; a burst of 3 s of audio
    # per share rides out a busy test machine's scheduling hiccups.
    stack = start_gateway(stack_factory, scripted[0], key_messages_per_s="600",
                          key_message_burst="1350")
    servicer = scripted[1]
    stop = asyncio.Event()
    flooders = []
    for source in ("127.0.0.1", "127.0.0.2"):
        for _ in range(FLOODERS_PER_ADDRESS):
            ws = await connect(await realtime_url(stack), local_addr=(source, 0))
            await start_session(ws)
            flooders.append(asyncio.create_task(flood(ws, stop)))
    try:
        await asyncio.sleep(0.5)  # the key's spare is spent before the honest caller comes
        async with connect(await realtime_url(stack)) as honest:
            session = servicer.sessions[(await start_session(honest))["session_id"]]
            await asyncio.sleep(1.0)  # it joined with nothing to spare: its share fills up
            frame = bytes(640)  # 20 ms of PCM16 at 16 kHz
            began = time.monotonic()
            for _ in range(500):
                await honest.send(frame)
                await asyncio.sleep(0.02)
            print(f"500 frames sent in {time.monotonic() - began:.1f} s under the flood")
            await send(honest, "input_text", text="count")
            frames = await recv_until(honest, "response.text")
    finally:
        stop.set()
        flood_errors = await asyncio.gather(*flooders)
    errors = [f for f in frames if isinstance(f, dict) and f["type"] == "error"]
    assert errors == [], errors
    last = frames[-1]
    assert isinstance(last, dict) and last["delta"] == str(500 * len(frame)), last
    assert session.audio_frames == 500
    throttled = [e for errors in flood_errors for e in errors if e["code"] == "rate_limited"]
    assert len(throttled) >= len(flooders), flood_errors  # every flooder was told
    assert any("fair share of its key" in e["message"] and "split over its 9 connections"
               in e["message"] for e in throttled), throttled
