"""Semantic end of turn in the STT service: Smart Turn v3 on real espeak-ng speech.

Smart Turn on espeak's flat prosody is not steady for every phrasing (measured
P(complete) for "I would like to book" swings from 0.05 to 0.85 with 100-600 ms
of trailing silence), so these phrases were picked for stable answers: the
QUESTION 0.98-0.99; "My phone number is five five five," 0.02-0.09; with
"zero one four two." after a 1 s pause 0.01-0.16; with "zero one four two.
Please call me back." 0.93-0.96.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.conftest import StackFactory
from tests.support import normalize_words, speak, word_error_rate
from tests.test_stt import Event, collect, expect_error, kinds, of_kind, scrape
from voxmesh.launcher import Stack
from voxmesh.models import smart_turn_path
from voxmesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

QUESTION = "What time does the service department open on Saturday?"
STOP_MS = 800  # longer than the default so "before the stop window" has room to show


@pytest.fixture(scope="module")
def stt(stack_factory: StackFactory) -> Stack:
    """One STT process with the Smart Turn model."""
    assert smart_turn_path().is_file(), "run: python scripts/fetch_smart_turn.py"
    return stack_factory(services=("stt",))


def turn_config(**turn: object) -> stt_pb2.RecognitionConfig:
    """A 16 kHz LINEAR16 config with ``stop_ms`` = STOP_MS and the given TurnConfig fields."""
    return stt_pb2.RecognitionConfig(
        audio_format=audio_pb2.AudioFormat(
            encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000),
        vad=stt_pb2.VadConfig(stop_ms=STOP_MS),
        turn=stt_pb2.TurnConfig(**turn),  # type: ignore[arg-type]  # test-only field bag
        session_id="test-stt-turn",
    )


async def stream(config: stt_pb2.RecognitionConfig, pcm: bytes, chunk_ms: int = 20
                 ) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    """``config``, then 16 kHz ``pcm`` in chunks, then end_of_input."""
    yield stt_pb2.StreamingRecognizeRequest(config=config)
    chunk = 16000 * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), chunk):
        yield stt_pb2.StreamingRecognizeRequest(audio=pcm[i : i + chunk])
    yield stt_pb2.StreamingRecognizeRequest(end_of_input=audio_pb2.EndOfInput())


def turn_ends(events: list[Event]) -> list[stt_pb2.EndOfTurn]:
    """The end_of_turn events, in order."""
    return [e.end_of_turn for e in of_kind(events, "end_of_turn")]


async def test_question_ends_its_turn_before_the_stop_window(stt: Stack) -> None:
    """A complete question ends its turn after turn_silence_ms, well before stop_ms."""
    pcm = speak(QUESTION, 16000, tail_silence_ms=2500)
    events = await collect(stt.addr("stt"), stream(turn_config(), pcm))
    assert kinds(events) == ["speech_started", "speech_stopped", "final", "end_of_turn"]
    stopped = of_kind(events, "speech_stopped")[0].speech_stopped
    (end,) = turn_ends(events)
    assert end.reason == stt_pb2.TURN_END_REASON_SEMANTIC, end
    assert end.completion_probability >= 0.5
    # Decided 200 ms (turn_silence_ms) plus at most one VAD window after the speech ended.
    assert end.offset_ms - stopped.offset_ms < STOP_MS, (end, stopped)
    assert word_error_rate(QUESTION, of_kind(events, "final")[0].final.text) <= 0.2


async def test_semantic_turn_off_ends_after_stop_ms(stt: Stack) -> None:
    """With enable_semantic_turn=false the same question ends its turn at stop_ms of silence."""
    pcm = speak(QUESTION, 16000, tail_silence_ms=2500)
    events = await collect(stt.addr("stt"), stream(turn_config(enable_semantic_turn=False), pcm))
    assert kinds(events) == ["speech_started", "speech_stopped", "final", "end_of_turn"]
    stopped = of_kind(events, "speech_stopped")[0].speech_stopped
    (end,) = turn_ends(events)
    assert end.reason == stt_pb2.TURN_END_REASON_SILENCE, end
    assert STOP_MS <= end.offset_ms - stopped.offset_ms < STOP_MS + 100, (end, stopped)


async def test_pause_mid_sentence_continues_the_turn(stt: Stack) -> None:
    """An unfinished sentence, 1 s of silence, then the rest: two finals, ONE end of turn."""
    first, rest = "My phone number is five five five,", "zero one four two. Please call me back."
    pcm = (speak(first, 16000, tail_silence_ms=1000)
           + speak(rest, 16000, lead_silence_ms=0, tail_silence_ms=2500))
    events = await collect(stt.addr("stt"), stream(turn_config(), pcm))
    assert kinds(events) == ["speech_started", "speech_stopped", "final"] * 2 + ["end_of_turn"]
    (end,) = turn_ends(events)
    assert end.reason == stt_pb2.TURN_END_REASON_SEMANTIC, end
    assert end.utterance_id == 2
    second_stop = of_kind(events, "speech_stopped")[1].speech_stopped
    assert end.offset_ms - second_stop.offset_ms < STOP_MS
    words = normalize_words(" ".join(e.final.text for e in of_kind(events, "final")))
    assert {"phone", "number", "call", "back"} <= set(words), words
    # tiny.en hears espeak's digits loosely ("5 5 5" may come back as "time time"); the
    # second piece must still be there.
    assert "14" in "".join(w for w in words if w.isdigit()), words


async def test_digits_then_silence_end_the_turn_at_max_silence(stt: Stack) -> None:
    """A phone number in two pieces: the model never says "complete", max_silence_ms does."""
    first, rest = "My phone number is five five five,", "zero one four two."
    pcm = (speak(first, 16000, tail_silence_ms=1000)
           + speak(rest, 16000, lead_silence_ms=0, tail_silence_ms=2500))
    events = await collect(stt.addr("stt"), stream(turn_config(max_silence_ms=1500), pcm))
    assert kinds(events) == ["speech_started", "speech_stopped", "final"] * 2 + ["end_of_turn"]
    (end,) = turn_ends(events)
    assert end.reason == stt_pb2.TURN_END_REASON_MAX_SILENCE, end
    assert end.completion_probability < 0.5
    second_stop = of_kind(events, "speech_stopped")[1].speech_stopped
    assert 1500 <= end.offset_ms - second_stop.offset_ms < 1600, (end, second_stop)
    words = normalize_words(" ".join(e.final.text for e in of_kind(events, "final")))
    assert {"phone", "number"} <= set(words), words
    # tiny.en hears espeak's digits loosely ("5 5 5" may come back as "time time"); the
    # second piece must still be there.
    assert "14" in "".join(w for w in words if w.isdigit()), words


async def only(config: stt_pb2.RecognitionConfig
               ) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    """Just the config: anything sent after it would race the server's abort."""
    yield stt_pb2.StreamingRecognizeRequest(config=config)


async def test_invalid_turn_fields_are_rejected_naming_the_field(stt: Stack) -> None:
    """Every out-of-range TurnConfig / VadConfig field is INVALID_ARGUMENT naming it."""
    cases = {
        "config.turn.completion_threshold": turn_config(completion_threshold=1.5),
        "config.turn.max_silence_ms": turn_config(max_silence_ms=300),  # below stop_ms
        "config.turn.turn_silence_ms": turn_config(turn_silence_ms=10),
        "config.vad.stop_ms": stt_pb2.RecognitionConfig(vad=stt_pb2.VadConfig(stop_ms=20_000)),
    }
    async with grpc.aio.insecure_channel(stt.addr("stt")) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        for field, config in cases.items():
            error = await expect_error(stub.StreamingRecognize(only(config)))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error)
            assert str(error.details()).startswith(field + ":"), (field, error.details())


async def test_turn_metrics(stt: Stack) -> None:
    """The model is reported loaded, its inference time and decisions are counted."""
    events = await collect(stt.addr("stt"), stream(turn_config(), speak("Hello there.", 16000)))
    assert of_kind(events, "end_of_turn")
    text = await asyncio.to_thread(scrape, stt.metrics_ports["stt"])
    assert "voxmesh_stt_turn_model_available 1.0" in text.splitlines()
    counts = [line for line in text.splitlines()
              if line.startswith("voxmesh_stt_turn_model_seconds_count")]
    assert counts and float(counts[0].split()[-1]) >= 1, counts
    assert 'voxmesh_stt_turn_decisions_total{decision="complete"}' in text


async def test_missing_model_falls_back_to_silence(stack_factory: StackFactory) -> None:
    """Without the model file the service still serves, ending turns at stop_ms of silence."""
    stack = stack_factory(services=("stt",),
                          extra_env={"VOXMESH_STT_TURN_MODEL": "/nonexistent/smart-turn.onnx"})
    events = await collect(stack.addr("stt"), stream(turn_config(), speak(QUESTION, 16000)))
    (end,) = turn_ends(events)
    assert end.reason == stt_pb2.TURN_END_REASON_SILENCE, end
    text = await asyncio.to_thread(scrape, stack.metrics_ports["stt"])
    assert "voxmesh_stt_turn_model_available 0.0" in text.splitlines()
