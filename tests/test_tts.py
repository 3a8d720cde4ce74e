"""The text-to-speech service as a real process, heard back through Whisper; and its chunker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.tts.chunker import TextChunker
from services.tts.speech_text import clean_for_speech
from tests.conftest import StackFactory
from tests.support import rms, word_error_rate
from voxmesh.audio import pcm16_to_float, resample
from voxmesh.launcher import Stack
from voxmesh.models import whisper_tiny_en_path
from voxmesh.v1 import audio_pb2, tts_pb2, tts_pb2_grpc

REPLY = "Thank you for calling. Our service department opens at eight on Saturday."
PARAGRAPH = (
    "Thank you for calling Maple Motors, the friendliest dealership on Harbor Road. "
    "Our service department is open Monday to Friday from seven in the morning until six "
    "in the evening. On Saturday we open at eight and close at two in the afternoon. "
    "Sales is open Monday to Saturday from nine in the morning until eight at night. "
    "If you would like to book a test drive, I can help you choose a day and a time. "
    "You can also reach us by phone at five five five, zero one four two. "
    "We look forward to seeing you soon, and thank you again for choosing Maple Motors."
)

Request = tts_pb2.StreamingSynthesizeRequest


@pytest.fixture(scope="module")
def tts(stack_factory: StackFactory) -> Stack:
    """One TTS process (hibari and Kokoro-82M ONNX) for the whole module.

    The primary timeout is raised so that a busy shared CPU never hands a Kokoro
    segment to the espeak fallback here (test_tts_fallback tests that path).
    """
    return stack_factory(services=("tts",), extra_env={"VOXMESH_TTS_PRIMARY_TIMEOUT_MS": "60000"})


@pytest.fixture(scope="module")
def whisper() -> Any:
    """Whisper tiny.en in this process, to hear what the service said."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_tiny_en_path()), device="cpu", compute_type="int8")


def config(voice: str = "", rate: int = 24000, **kwargs: Any) -> Request:
    """The first request of a stream."""
    return Request(config=tts_pb2.SynthesisConfig(
        voice=voice, sample_rate_hertz=rate, session_id="test-tts", **kwargs))


def deltas(text: str) -> Iterator[Request]:
    """``text`` as LLM-like deltas of 3 to 5 characters."""
    i, sizes = 0, (3, 4, 5)
    while i < len(text):
        size = sizes[i % 3]
        yield Request(text=text[i : i + size])
        i += size


def end() -> Request:
    """The request that ends the client's input."""
    return Request(end_of_input=audio_pb2.EndOfInput())


@dataclass
class Spoken:
    """Everything one StreamingSynthesize call returned."""

    events: list[tts_pb2.StreamingSynthesizeResponse] = field(default_factory=list)

    def of(self, kind: str) -> list[Any]:
        """The payloads of one event kind, in order."""
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    @property
    def pcm(self) -> bytes:
        """All audio, concatenated."""
        return b"".join(chunk.audio for chunk in self.of("audio"))

    @property
    def done(self) -> tts_pb2.SynthesisDone:
        """The final event, which must be ``done``."""
        assert self.events[-1].WhichOneof("event") == "done"
        return self.events[-1].done


async def synthesize(addr: str, *requests: Request) -> Spoken:
    """Send ``requests`` and collect every response."""
    async def send() -> AsyncIterator[Request]:
        for request in requests:
            yield request

    async with grpc.aio.insecure_channel(addr) as channel:
        call = tts_pb2_grpc.TextToSpeechStub(channel).StreamingSynthesize(send())
        return Spoken([event async for event in call])


async def speak(addr: str, text: str, voice: str = "", rate: int = 24000) -> Spoken:
    """Stream ``text`` as small deltas, then end the input."""
    return await synthesize(addr, config(voice, rate), *deltas(text), end())


async def transcribe(whisper: Any, pcm: bytes, rate: int) -> str:
    """What Whisper hears in PCM16 audio."""
    audio = resample(pcm16_to_float(pcm), rate, 16000)

    def run() -> str:
        segments, _ = whisper.transcribe(audio, beam_size=5, language="en")
        return " ".join(s.text for s in segments)

    return await asyncio.to_thread(run)


def first_sound_ms(pcm: bytes, rate: int) -> int:
    """Start of the first 10 ms frame that is not silence (RMS above -46 dBFS)."""
    frame = rate // 100
    samples = pcm16_to_float(pcm)
    levels = [rms(pcm[i * 2 : (i + frame) * 2]) for i in range(0, len(samples), frame)]
    return next(i for i, level in enumerate(levels) if level > 0.005) * 10


async def read_all(call: Any, until: str = "") -> list[tts_pb2.StreamingSynthesizeResponse]:
    """Read events with ``call.read()`` until the end, or up to the first of kind ``until``."""
    events: list[tts_pb2.StreamingSynthesizeResponse] = []
    while (event := await call.read()) is not grpc.aio.EOF:
        events.append(event)
        if event.WhichOneof("event") == until:
            break
    return events


async def expect_error(addr: str, *requests: Request) -> grpc.aio.AioRpcError:
    """Run a stream that must fail; return its error.

    Each request waits until the server had a moment to refuse the one before: a write
    that loses the race with the server's abort makes grpc (1.85) end the call locally
    with "Internal error from Core" instead of the server's status.
    """
    async def responses(call: grpc.aio.StreamStreamCall) -> None:
        async for _ in call:
            pass

    async with grpc.aio.insecure_channel(addr) as channel:
        call = tts_pb2_grpc.TextToSpeechStub(channel).StreamingSynthesize()
        reader = asyncio.create_task(responses(call))
        for request in requests:
            if reader.done():
                break
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.write(request)
            await asyncio.wait({reader}, timeout=0.2)
        if not reader.done():
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await reader
    return info.value


@pytest.fixture(scope="module")
async def heart_reply(tts: Stack) -> Spoken:
    """REPLY spoken by the default voice at 24 kHz (shared by several tests)."""
    return await speak(tts.addr("tts"), REPLY)


# -- the service -----------------------------------------------------------------------------


async def test_list_voices_has_both_engines(tts: Stack) -> None:
    """heart (hibari) is the default; Kokoro's packaged voices come with it."""
    async with grpc.aio.insecure_channel(tts.addr("tts")) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        voices = {v.id: v for v in (await stub.ListVoices(tts_pb2.ListVoicesRequest())).voices}
        english = await stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="en"))
        french = await stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="fr"))
    assert voices["heart"].engine == "hibari" and voices["heart"].is_default
    assert voices["heart"].native_sample_rate_hertz == 24000
    assert voices["jf_alpha"].engine == "kokoro-onnx" and not voices["jf_alpha"].is_default
    assert [v.id for v in voices.values() if v.is_default] == ["heart"]
    assert {"heart", "jf_alpha"} <= {v.id for v in english.voices}
    assert list(french.voices) == []


async def test_streamed_reply_is_segmented_contiguous_and_audible(heart_reply: Spoken) -> None:
    """Deltas in, clause-sized segments out, each followed by its audio; done counts it all."""
    segments, chunks = heart_reply.of("segment"), heart_reply.of("audio")
    assert [s.text for s in segments] == [
        "Thank you for calling.", "Our service department opens at eight on Saturday."]
    assert [s.segment_index for s in segments] == [0, 1]
    assert heart_reply.events[0].WhichOneof("event") == "segment"
    offset = 0
    for segment in segments:
        assert segment.sample_offset == offset
        mine = [c for c in chunks if c.segment_index == segment.segment_index]
        assert sum(len(c.audio) for c in mine) // 2 == segment.sample_count
        for chunk in mine:
            assert chunk.sample_offset == offset
            assert len(chunk.audio) <= 480 * 2  # 20 ms at 24 kHz
            offset += len(chunk.audio) // 2
        assert all(len(c.audio) == 480 * 2 for c in mine[:-1])
    assert heart_reply.done.total_samples == offset == len(heart_reply.pcm) // 2
    assert heart_reply.done.engine == "hibari" and not heart_reply.done.is_cancelled
    assert 3.0 < offset / 24000 < 8.0
    assert rms(heart_reply.pcm) > 0.02
    # Silence around each segment is trimmed (hibari pads ~330 ms), so sound starts at once.
    assert first_sound_ms(heart_reply.pcm, 24000) <= 100


async def test_hibari_reply_is_intelligible(heart_reply: Spoken, whisper: Any) -> None:
    """Whisper hears the default voice say the reply."""
    heard = await transcribe(whisper, heart_reply.pcm, 24000)
    assert word_error_rate(REPLY, heard) <= 0.25, heard


async def test_kokoro_reply_at_16khz_is_intelligible(tts: Stack, whisper: Any) -> None:
    """Kokoro-82M ONNX (jf_alpha reading English) at telephony-friendly 16 kHz."""
    spoken = await speak(tts.addr("tts"), REPLY, voice="jf_alpha", rate=16000)
    assert spoken.done.engine == "kokoro-onnx"
    assert spoken.done.total_samples == len(spoken.pcm) // 2
    assert all(len(c.audio) <= 320 * 2 for c in spoken.of("audio"))  # 20 ms at 16 kHz
    heard = await transcribe(whisper, spoken.pcm, 16000)
    assert word_error_rate(REPLY, heard) <= 0.35, heard


async def test_48khz_has_twice_the_samples(tts: Stack, heart_reply: Spoken) -> None:
    """The same text at 48 kHz lasts as long as at 24 kHz."""
    spoken = await speak(tts.addr("tts"), REPLY, rate=48000)
    ratio = spoken.done.total_samples / heart_reply.done.total_samples
    assert abs(ratio - 2.0) <= 0.04, ratio
    assert all(len(c.audio) <= 960 * 2 for c in spoken.of("audio"))


async def test_flush_speaks_an_unfinished_sentence(tts: Stack) -> None:
    """Text without punctuation is held until flush, then spoken before end_of_input."""
    async with grpc.aio.insecure_channel(tts.addr("tts")) as channel:
        call = tts_pb2_grpc.TextToSpeechStub(channel).StreamingSynthesize()
        await call.write(config(chunk_duration_ms=40))
        await call.write(Request(text="Let me check that for you"))
        await call.write(Request(flush=tts_pb2.Flush()))
        first = await call.read()
        assert first.WhichOneof("event") == "segment"
        assert first.segment.text == "Let me check that for you"
        await call.write(end())
        rest = await read_all(call)
    audio = [e.audio for e in rest if e.WhichOneof("event") == "audio"]
    assert sum(len(a.audio) for a in audio) // 2 == first.segment.sample_count
    assert all(len(a.audio) <= 960 * 2 for a in audio)  # 40 ms at 24 kHz
    assert rest[-1].done.total_samples == first.segment.sample_count


@pytest.mark.parametrize("voice", ["jf_alpha", "heart"])
async def test_cancel_stops_audio_at_once(tts: Stack, voice: str) -> None:
    """After cancel only chunks already in flight arrive, then done(is_cancelled), then nothing."""
    async with grpc.aio.insecure_channel(tts.addr("tts")) as channel:
        call = tts_pb2_grpc.TextToSpeechStub(channel).StreamingSynthesize()
        await call.write(config(voice))
        for request in deltas(PARAGRAPH):
            await call.write(request)
        await call.write(end())
        before = await read_all(call, until="audio")
        await call.write(Request(cancel=tts_pb2.Cancel()))
        after = await read_all(call)
        status = await call.code()
    assert [e.WhichOneof("event") for e in before] == ["segment", "audio"]
    kinds = [e.WhichOneof("event") for e in after]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    done = after[-1].done
    assert done.is_cancelled and status == grpc.StatusCode.OK
    received = sum(len(e.audio.audio) for e in before + after if e.WhichOneof("event") == "audio")
    assert done.total_samples == received // 2  # the server counts exactly what it sent
    # Spoken in full the paragraph lasts about 30 s; at most one flow-control window
    # (64 KiB, about 1.4 s at 24 kHz) was in flight when the cancel was read.
    assert done.total_samples < 5 * 24000, done.total_samples


async def test_cancel_is_counted_in_metrics(tts: Stack) -> None:
    """Cancels and first-audio latency are exported to Prometheus."""
    url = f"http://127.0.0.1:{tts.metrics_ports['tts']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: ASYNC210 - a tiny local read
        text = reply.read().decode()
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["voxmesh_tts_cancelled_total"] >= 2
    assert values['voxmesh_tts_first_audio_seconds_count{engine="hibari"}'] >= 1
    assert values['voxmesh_tts_synthesis_seconds_count{engine="kokoro-onnx"}'] >= 1
    assert values["voxmesh_tts_active_streams"] == 0


@pytest.mark.parametrize(("request_config", "field_name"), [
    (tts_pb2.SynthesisConfig(voice="nobody"), "config.voice"),
    (tts_pb2.SynthesisConfig(speed=5.0), "config.speed"),
    (tts_pb2.SynthesisConfig(sample_rate_hertz=22050), "config.sample_rate_hertz"),
    (tts_pb2.SynthesisConfig(chunk_duration_ms=5), "config.chunk_duration_ms"),
    (tts_pb2.SynthesisConfig(voice="heart", language_code="ja"), "config.language_code"),
])
async def test_bad_config_is_invalid_argument(
    tts: Stack, request_config: tts_pb2.SynthesisConfig, field_name: str
) -> None:
    """Each bad field is rejected by name, never replaced by a default."""
    error = await expect_error(tts.addr("tts"), Request(config=request_config), end())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field_name + ":"), error.details()


async def test_unknown_voice_lists_installed_voices(tts: Stack) -> None:
    """The error says which voices exist."""
    error = await expect_error(tts.addr("tts"), config("x"), end())
    assert "unknown voice 'x'" in error.details() and "heart" in error.details()
    assert "jf_alpha" in error.details()


async def test_bad_stream_order_and_size_are_rejected(tts: Stack) -> None:
    """The stream is config first, and config only once."""
    addr = tts.addr("tts")
    error = await expect_error(addr, Request(text="Hello."), end())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("config:"), error.details()
    error = await expect_error(addr, config(), Request(text="Hello there."), config(), end())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("config:"), error.details()
    error = await expect_error(addr, config(), Request(text="a" * 100_001), end())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("text:"), error.details()
    # The service is still fine for the next caller.
    spoken = await speak(addr, "Still here.")
    assert spoken.done.total_samples > 0


async def test_engines_and_default_voice_are_configurable(stack_factory: StackFactory) -> None:
    """VOXMESH_TTS_ENGINES picks what is loaded; VOXMESH_TTS_DEFAULT_VOICE the default."""
    stack = stack_factory(services=("tts",), extra_env={
        "VOXMESH_TTS_ENGINES": "kokoro-onnx", "VOXMESH_TTS_DEFAULT_VOICE": "jm_kumo",
        # A loaded CI machine must not hand Kokoro's segments to the espeak fallback here.
        "VOXMESH_TTS_PRIMARY_TIMEOUT_MS": "60000"})
    addr = stack.addr("tts")
    async with grpc.aio.insecure_channel(addr) as channel:
        reply = await tts_pb2_grpc.TextToSpeechStub(channel).ListVoices(tts_pb2.ListVoicesRequest())
    assert {v.engine for v in reply.voices} == {"kokoro-onnx"}
    assert [v.id for v in reply.voices if v.is_default] == ["jm_kumo"]
    error = await expect_error(addr, config("heart"), end())
    assert error.details().startswith("config.voice: unknown voice 'heart'"), error.details()
    spoken = await synthesize(addr, config(), Request(text="Hi."), end())
    assert spoken.done.engine == "kokoro-onnx" and spoken.done.total_samples > 0


@pytest.mark.parametrize(("engines", "message"), [
    ("kokoro", "engine 'kokoro' needs VOXMESH_TTS_KOKORO_WEIGHTS_PATH"),
    ("hibari,piper", "VOXMESH_TTS_ENGINES: unknown engine 'piper'"),
])
def test_unavailable_engine_fails_at_start_up(engines: str, message: str) -> None:
    """An engine that cannot run here stops the process at once, saying why."""
    env = {**os.environ, "VOXMESH_TTS_ENGINES": engines, "VOXMESH_TTS_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "services.tts"], env=env, timeout=60,
                            capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# -- the chunker (pure) ----------------------------------------------------------------------


def chunk(text: str, step: int = 4) -> tuple[list[str], list[str]]:
    """Feed ``text`` in ``step``-character deltas: (released while streaming, released at flush)."""
    chunker = TextChunker()
    streamed = [s for i in range(0, len(text), step) for s in chunker.push(text[i : i + step])]
    return streamed, chunker.flush()


def test_chunker_releases_first_clause_early() -> None:
    """The first segment ends at a clause once it has three words; later ones at sentences."""
    text = "Sure thing, let me look, and then I will answer, okay. Then more, words."
    streamed, rest = chunk(text)
    assert streamed == ["Sure thing, let me look,", "and then I will answer, okay."]
    assert rest == ["Then more, words."]
    chunker = TextChunker()
    assert chunker.push("Thank you for calling, how can") == ["Thank you for calling,"]
    assert chunker.push(" I help? We") == ["how can I help?"]


def test_chunker_waits_for_whitespace_after_the_mark() -> None:
    """A period is a boundary only once the next character shows it is not a decimal point."""
    chunker = TextChunker()
    assert chunker.push("It costs $3.") == []
    assert chunker.push("50 today. Ok") == ["It costs $3.50 today."]


@pytest.mark.parametrize("text", [
    "The oil change is $3.50 with the coupon today.",
    "Dr. Smith will see you on Monday morning.",
    "The shop is 3.5 km from the station exit.",
    "Bring papers, e.g. this form, to the desk.",
    "Mrs. Jones lives on Harbor St. near the bay.",
    "We sell cars, trucks, etc. and many more things.",
])
def test_chunker_keeps_abbreviations_and_numbers_whole(text: str) -> None:
    """Abbreviations, decimals and prices never end a segment."""
    streamed, rest = chunk(text, step=3)
    sentence = " ".join([*streamed, *rest])
    assert sentence == text
    endings = ("$3.", "Dr.", "3.", "e.g.", "Mrs.", "St.", "etc.")
    assert not any(s.endswith(endings) for s in streamed)


def test_chunker_splits_sentences_after_abbreviation_when_capitalised() -> None:
    """"etc." followed by a capital does end a sentence."""
    streamed, rest = chunk("We fix brakes, tires, etc. Call us today. Bye")
    assert streamed == ["We fix brakes,", "tires, etc.", "Call us today."]
    assert rest == ["Bye"]


def test_chunker_strips_markdown_and_emoji() -> None:
    """Symbols are not read aloud; list items become segments of their own."""
    streamed, rest = chunk(
        "## Hours\n**Service** is open *Monday*, from `7 AM` 😊 to 6 PM.\n"
        "- Sales: 9 to 8\n- Parts 👍🏽 desk\nThat's all!"
    )
    assert [*streamed, *rest] == [
        "Hours", "Service is open Monday, from 7 AM to 6 PM.", "Sales: 9 to 8",
        "Parts desk", "That's all!",
    ]


def test_clean_for_speech() -> None:
    """Cleaning keeps words, digits and punctuation only."""
    assert clean_for_speech("[our site](https://x.y) has __bold__ and snake_case") == (
        "our site has bold and snake_case")
    assert clean_for_speech("Great job! 🎉🎉 👨‍👩‍👧") == "Great job!"
    assert clean_for_speech("** --- **") == ""


def test_chunker_splits_overlong_runs() -> None:
    """Text with no sentence end is still released in bounded segments."""
    chunker = TextChunker(max_chars=100)
    segments = chunker.push("word " * 80)
    assert segments and all(len(s) <= 100 for s in segments)
    assert " ".join([*segments, *chunker.flush()]).split() == ["word"] * 80
