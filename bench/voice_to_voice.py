#!/usr/bin/env python3
"""Voice-to-voice latency: end of user speech to first reply audio byte, at the client.

Starts the real stack (as ``voxmesh up`` does, on free ports), speaks ``--turns``
espeak-ng questions through the gateway WebSocket at real-time pace, and prints
p50/p95 of the client-measured latency and the orchestrator's per-stage breakdown.
The LLM upstream is the scripted OpenAI-compatible server with a fixed first-token
delay (``--first-token-ms``), so the figure measures VoxMesh, not a model; pass
``--llm-base-url`` to measure against a real endpoint instead.

Usage: .venv/bin/python bench/voice_to_voice.py [--turns 10] [--first-token-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, save_results  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402
from tests.support import speak  # noqa: E402
from voxmesh.client import RealtimeClient  # noqa: E402
from voxmesh.launcher import Ports, Stack  # noqa: E402

QUESTIONS = [
    "What time does the service department open on Saturday?",
    "Can I book an oil change for tomorrow morning?",
    "Where is the dealership located?",
    "Do you sell used cars?",
    "How much does a tire rotation cost?",
    "Is the showroom open on Sunday?",
    "Can someone call me back this afternoon?",
    "What is your phone number?",
    "Do I need an appointment for a battery check?",
    "How long does a brake inspection take?",
]
REPLY = "Sure. Our service department opens at eight in the morning on Saturday."


def last_voiced_byte(pcm: bytes, threshold: float = 0.01) -> int:
    """Byte offset of the last sample louder than ``threshold`` (about -40 dBFS)."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0)
    return int(np.nonzero(samples > threshold)[0][-1]) * 2


async def one_turn(url: str, pcm: bytes) -> dict[str, float]:
    """Speak once; return client voice-to-voice ms and the server's latency breakdown."""
    async with RealtimeClient(url) as client:
        await client.start()
        sent_at = await client.stream_audio(pcm[: last_voiced_byte(pcm) + 2])
        speech_end = sent_at[-1]  # when the frame holding the last voiced sample went out
        silence = bytes(640)
        while not client.received.audio:
            assert client.ws is not None
            await client.ws.send(silence)
            await asyncio.sleep(0.02)
            if time.perf_counter() - speech_end > 20:
                raise TimeoutError("no reply audio within 20 s")
        first_audio = client.received.audio[0][0]
        latency = await client.wait_for(lambda e: e["type"] == "latency", 10)
        await client.send("interrupt")
    return {
        "client_ms": (first_audio - speech_end) * 1000,
        "stt_ms": latency["stt_ms"],
        "llm_ms": latency["llm_ms"],
        "tts_ms": latency["tts_ms"],
        "server_total_ms": latency["total_ms"],
    }


async def run(opts: argparse.Namespace, url: str) -> list[dict[str, float]]:
    results = []
    for i in range(opts.turns):
        pcm = speak(QUESTIONS[i % len(QUESTIONS)], 16000)
        results.append(await one_turn(url, pcm))
        print(f"  turn {i + 1:2d}: {results[-1]['client_ms']:7.0f} ms", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--first-token-ms", type=float, default=100.0)
    parser.add_argument("--llm-base-url", default="")
    opts = parser.parse_args()

    fake = None
    base_url = opts.llm_base_url
    if not base_url:
        fake = FakeOpenAI(reply=REPLY, first_token_delay_s=opts.first_token_ms / 1000,
                          token_delay_s=0.01)
        fake.start()
        base_url = fake.base_url
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(ports=Ports.random(), state_dir=Path(tmp), llm_base_url=base_url)
        print("starting the stack...", flush=True)
        stack.start()
        try:
            url = f"ws://{stack.host}:{stack.ports.gateway}/v1/realtime"
            results = asyncio.run(run(opts, url))
        finally:
            stack.stop()
            if fake is not None:
                fake.stop()

    columns = ["client_ms", "stt_ms", "llm_ms", "tts_ms", "server_total_ms"]
    lines = [
        f"voice-to-voice latency, {opts.turns} turns, LLM first token "
        f"{f'{opts.first_token_ms:.0f} ms (scripted)' if fake else base_url}, "
        f"{platform.machine()} {platform.node()}",
        "",
        f"| {'stage':<16} | {'p50 ms':>8} | {'p95 ms':>8} | {'min ms':>8} | {'max ms':>8} |",
        f"|{'-' * 18}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|",
    ]
    for column in columns:
        values = [r[column] for r in results]
        lines.append(f"| {column:<16} | {statistics.median(values):8.0f} | "
                     f"{percentile(values, 95):8.0f} | {min(values):8.0f} | {max(values):8.0f} |")
    table = "\n".join(lines)
    print("\n" + table)
    save_results("voice_to_voice", table, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
