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
import urllib.request
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


async def one_turn(url: str, api_key: str, pcm: bytes) -> dict[str, float]:
    """Speak once; return client voice-to-voice ms and the server's latency breakdown."""
    async with RealtimeClient(url, api_key=api_key) as client:
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


async def run(opts: argparse.Namespace, url: str, api_key: str) -> list[dict[str, float]]:
    results = []
    for i in range(opts.turns):
        pcm = speak(QUESTIONS[i % len(QUESTIONS)], 16000)
        results.append(await one_turn(url, api_key, pcm))
        print(f"  turn {i + 1:2d}: {results[-1]['client_ms']:7.0f} ms", flush=True)
    return results


def eager_counts(stack: Stack) -> dict[str, int]:
    """The orchestrator's eager-turn outcomes so far, from its Prometheus endpoint."""
    url = f"http://{stack.host}:{stack.metrics_ports['orchestrator']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    counts = {"committed": 0, "discarded": 0}
    for line in text.splitlines():
        if line.startswith("voxmesh_orchestrator_eager_turns_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def measure(opts: argparse.Namespace, base_url: str, eager: bool
            ) -> tuple[list[dict[str, float]], dict[str, int]]:
    """One stack, ``opts.turns`` spoken turns; eager turns on or off."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(ports=Ports.random(), state_dir=Path(tmp), llm_base_url=base_url,
                      extra_env={"VOXMESH_ORCHESTRATOR_EAGER_TURNS": str(eager).lower()})
        print(f"starting the stack (eager turns {'on' if eager else 'off'})...", flush=True)
        stack.start()
        try:
            url = f"ws://{stack.host}:{stack.ports.gateway}/v1/realtime"
            results = asyncio.run(run(opts, url, stack.api_key))
            return results, eager_counts(stack)
        finally:
            stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--first-token-ms", type=float, default=100.0)
    parser.add_argument("--llm-base-url", default="")
    parser.add_argument("--eager", choices=["on", "off", "both"], default="both",
                        help="eager turns (reply before the end of turn is confirmed)")
    opts = parser.parse_args()

    fake = None
    base_url = opts.llm_base_url
    if not base_url:
        fake = FakeOpenAI(reply=REPLY, first_token_delay_s=opts.first_token_ms / 1000,
                          token_delay_s=0.01)
        fake.start()
        base_url = fake.base_url
    modes = {"on": [True], "off": [False], "both": [False, True]}[opts.eager]
    runs: dict[str, tuple[list[dict[str, float]], dict[str, int]]] = {}
    try:
        for eager in modes:
            runs["eager" if eager else "no eager"] = measure(opts, base_url, eager)
    finally:
        if fake is not None:
            fake.stop()

    columns = ["client_ms", "stt_ms", "llm_ms", "tts_ms", "server_total_ms"]
    lines = [
        f"voice-to-voice latency, {opts.turns} turns per mode, LLM first token "
        f"{f'{opts.first_token_ms:.0f} ms (scripted)' if fake else base_url}, "
        f"{platform.machine()} {platform.node()}",
        "",
        f"| {'mode':<9} | {'stage':<16} | {'p50 ms':>8} | {'p95 ms':>8} | {'min ms':>8} "
        f"| {'max ms':>8} |",
        f"|{'-' * 11}|{'-' * 18}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|",
    ]
    for mode, (results, _) in runs.items():
        for column in columns:
            values = [r[column] for r in results]
            lines.append(f"| {mode:<9} | {column:<16} | {statistics.median(values):8.0f} | "
                         f"{percentile(values, 95):8.0f} | {min(values):8.0f} "
                         f"| {max(values):8.0f} |")
    lines.append("")
    for mode, (_, counts) in runs.items():
        if mode == "eager":
            lines.append(f"eager turns: {counts['committed']} committed, "
                         f"{counts['discarded']} discarded")
    if len(runs) == 2:
        on, off = (statistics.median(r["client_ms"] for r in runs[m][0])
                   for m in ("eager", "no eager"))
        lines.append(f"median saved by eager turns: {off - on:.0f} ms ({on / off:.2f}x)")
    table = "\n".join(lines)
    print("\n" + table)
    save_results("voice_to_voice", table, {m: r for m, (r, _) in runs.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
