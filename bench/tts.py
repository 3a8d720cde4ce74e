#!/usr/bin/env python3
"""TTS latency, speed and intelligibility per voice, through the real TTS service.

Starts the TTS and STT services on free ports, then for each voice (``heart``,
hibari; ``jf_alpha``, Kokoro-82M int8 ONNX):

1. time to first audio: streams a short reply (one sentence) and a long reply
   (a paragraph of six sentences) as LLM-like deltas (3-5 characters, 5 ms
   apart) and times the first AudioChunk from the moment the first delta was
   written; p50/p95 over ``--repeats`` streams (one unmeasured warm-up first);
2. real-time factor: the engine's synthesis time (SegmentStarted.synthesis_ms)
   over the audio it produced (SegmentStarted.sample_count), summed over the
   segments of those streams;
3. intelligibility: synthesises 20 replies a dealership assistant might give
   (written as an LLM writes them: "$39", "9:30 a.m.", "555-0142"), sends
   each clip to the STT service's Recognize at 24 kHz and scores the
   transcript with ``bench.corpus_stt.normalize_spoken`` (numbers, times and
   money in one spoken form) and word-level edit distance.

Prints markdown tables and saves them to ``bench/results/tts.md``, raw
numbers to ``bench/results/tts.json`` (``tts.quick.*`` with ``--quick``).
The TTS phrase cache and fallback engine are disabled (``VOXMESH_TTS_CACHE_MB=0``,
``VOXMESH_TTS_FALLBACK_ENGINE=""`` unless set), so every repeat is synthesised
afresh by the voice's own engine; segments are counted by the engine that
spoke them. The machine is shared, so read the figures
as an order of magnitude.

Usage: .venv/bin/python bench/tts.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, save_results  # noqa: E402
from bench.corpus_stt import normalize_spoken, word_errors  # noqa: E402
from bench.stt import code_version  # noqa: E402
from voxmesh.launcher import Ports, Stack  # noqa: E402
from voxmesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc  # noqa: E402

VOICES = (("heart", "hibari"), ("jf_alpha", "Kokoro-82M"))
RATE = 24000
DELTA_CHARS = (3, 5)
DELTA_GAP_S = 0.005
STREAM_TIMEOUT_S = 120.0

SHORT_REPLY = "Sure, your car will be ready by 4:30 this afternoon."
LONG_REPLY = (
    "Thanks for waiting, I found your appointment. Dr. Patel's Honda Civic is booked for "
    "Tuesday, Nov. 21 at 9:30 a.m. with our service team. The 30,000 mile service costs "
    "$420, and it usually takes about two hours. If you would rather wait here, we have "
    "coffee, Wi-Fi and a shuttle that runs every 30 minutes. You can reach Michael at the "
    "service desk at 555-0142 if anything changes. Is there anything else I can help with?"
)
# Replies a dealership assistant gives, as an LLM would write them.
REFERENCES = [
    "Your appointment is confirmed for Tuesday at 9:30 a.m.",
    "We are open Monday to Friday from 7 a.m. to 6 p.m.",
    "A tire rotation costs $39 and takes about 30 minutes.",
    "The base model starts at $28,500.",
    "You can reach the service desk at 555-0142.",
    "Michael will call you back after 5 p.m. today.",
    "The brake inspection takes about 45 minutes.",
    "Our showroom closes at 8 p.m. on weekdays.",
    "Certified cars come with a 12 month warranty.",
    "The lease is $299 a month for 36 months.",
    "Your car will be ready by 4:30 this afternoon.",
    "Sarah Johnson from our finance team will meet you at the front desk.",
    "We can fit you in on April 2nd at 1:45 p.m.",
    "The 30,000 mile service costs $420.",
    "Yes, the car wash is free with every service visit.",
    "The new hybrid SUV is in stock in blue and silver.",
    "The parts will arrive on Wednesday, June 21st.",
    "Please bring your registration and your insurance card.",
    "Dr. Patel's truck is parked in bay number 3.",
    "A shuttle leaves every 20 minutes from the main entrance.",
]
QUICK_REFERENCES = 5


@dataclass
class Stream:
    """What one synthesis stream gave back, with client-side times."""

    first_audio_ms: float | None = None
    total_ms: float = 0.0
    synthesis_ms: list[int] = field(default_factory=list)
    sample_counts: list[int] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)


def deltas(text: str, rng: random.Random) -> list[str]:
    """``text`` cut into LLM-like deltas of 3 to 5 characters."""
    out, i = [], 0
    while i < len(text):
        step = rng.randint(*DELTA_CHARS)
        out.append(text[i : i + step])
        i += step
    return out


async def synthesize(channel: grpc.aio.Channel, voice: str, pieces: Sequence[str],
                     gap_s: float) -> Stream:
    """Stream ``pieces`` to StreamingSynthesize, ``gap_s`` apart; time the replies."""
    request = tts_pb2.StreamingSynthesizeRequest
    result = Stream()
    started = 0.0

    async def requests() -> AsyncIterator[tts_pb2.StreamingSynthesizeRequest]:
        nonlocal started
        yield request(config=tts_pb2.SynthesisConfig(
            voice=voice, sample_rate_hertz=RATE, session_id="bench-tts"))
        for i, piece in enumerate(pieces):
            if i == 0:
                started = time.perf_counter()
            elif gap_s:
                await asyncio.sleep(gap_s)
            yield request(text=piece)
        yield request(end_of_input=audio_pb2.EndOfInput())

    call = tts_pb2_grpc.TextToSpeechStub(channel).StreamingSynthesize(
        requests(), timeout=STREAM_TIMEOUT_S)
    async for event in call:
        kind = event.WhichOneof("event")  # other (newer) event kinds are ignored
        if kind == "audio":
            if result.first_audio_ms is None:
                result.first_audio_ms = (time.perf_counter() - started) * 1000
            result.audio += event.audio.audio
        elif kind == "segment":
            result.synthesis_ms.append(event.segment.synthesis_ms)
            result.sample_counts.append(event.segment.sample_count)
            result.segments.append(event.segment.text)
            # ``engine`` is a newer optional field; older servers do not send it.
            result.engines.append(getattr(event.segment, "engine", "") or "")
    result.total_ms = (time.perf_counter() - started) * 1000
    return result


async def latency(channel: grpc.aio.Channel, voice: str, text: str, repeats: int,
                  rng: random.Random) -> list[dict[str, Any]]:
    """Stream ``text`` ``repeats`` times as deltas; one row per stream."""
    rows = []
    for _ in range(repeats):
        stream = await synthesize(channel, voice, deltas(text, rng), DELTA_GAP_S)
        if stream.first_audio_ms is None:
            raise RuntimeError(f"voice {voice}: no audio for {text!r}")
        rows.append({
            "first_audio_ms": round(stream.first_audio_ms, 1),
            "total_ms": round(stream.total_ms, 1),
            "synthesis_ms": sum(stream.synthesis_ms),
            "audio_ms": round(sum(stream.sample_counts) * 1000 / RATE, 1),
            "segments": stream.segments,
            "engines": stream.engines,
        })
    return rows


async def intelligibility(tts: grpc.aio.Channel, stt: grpc.aio.Channel, voice: str,
                          references: Sequence[str]) -> list[dict[str, Any]]:
    """Synthesise each reference, transcribe it with Recognize, count word errors."""
    rows = []
    recognize = stt_pb2_grpc.SpeechToTextStub(stt).Recognize
    for text in references:
        stream = await synthesize(tts, voice, [text], 0.0)
        response = await recognize(stt_pb2.RecognizeRequest(
            config=stt_pb2.RecognitionConfig(
                audio_format=audio_pb2.AudioFormat(
                    encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE),
                session_id="bench-tts"),
            audio=bytes(stream.audio) + bytes(RATE // 5 * 2)))  # 200 ms of trailing silence
        heard = response.transcript.text
        ref = normalize_spoken(text)
        rows.append({"text": text, "heard": heard, "ref_words": len(ref),
                     "errors": word_errors(ref, normalize_spoken(heard)),
                     "synthesis_ms": sum(stream.synthesis_ms), "engines": stream.engines,
                     "audio_ms": round(sum(stream.sample_counts) * 1000 / RATE, 1)})
    return rows


async def measure(stack: Stack, voices: Sequence[tuple[str, str]], repeats: int,
                  references: Sequence[str]) -> dict[str, Any]:
    """All measurements for every voice."""
    rng = random.Random(7)
    results: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(stack.addr("tts")) as tts, \
            grpc.aio.insecure_channel(stack.addr("stt")) as stt:
        for voice, model in voices:
            print(f"{voice} ({model}): warm-up, latency...", flush=True)
            await synthesize(tts, voice, deltas(SHORT_REPLY, rng), DELTA_GAP_S)
            short = await latency(tts, voice, SHORT_REPLY, repeats, rng)
            long = await latency(tts, voice, LONG_REPLY, repeats, rng)
            print(f"{voice} ({model}): intelligibility...", flush=True)
            heard = await intelligibility(tts, stt, voice, references)
            results[voice] = {"model": model, "short": short, "long": long, "wer": heard}
    return results


# -- report ----------------------------------------------------------------------------------


def rtf(rows: Sequence[dict[str, Any]]) -> float:
    """Summed synthesis time over summed audio duration."""
    return sum(r["synthesis_ms"] for r in rows) / max(1e-9, sum(r["audio_ms"] for r in rows))


def report(results: dict[str, Any], meta: dict[str, Any]) -> str:
    """The markdown tables."""
    def row(values: Sequence[float]) -> str:
        return (f"{statistics.median(values):8.0f} | {percentile(values, 95):8.0f} | "
                f"{min(values):8.0f} | {max(values):8.0f}")

    out = [
        "# TTS benchmark",
        "",
        f"{meta['date']}, {meta['nproc']} CPUs ({meta['cpu']}), load {meta['loadavg']}; "
        f"code {meta['code']}; TTS phrase cache {meta['tts_cache_mb']} MB, fallback "
        f"{meta['tts_fallback_engine']}; "
        f"`{meta['command']}` ({meta['wall_s']} s).",
        "",
        f"## Time to first audio ({meta['repeats']} streams each)",
        "",
        f"Deltas of {DELTA_CHARS[0]}-{DELTA_CHARS[1]} characters, {DELTA_GAP_S * 1000:.0f} ms "
        "apart; from the first delta written to the first AudioChunk received. Short: "
        f"\"{SHORT_REPLY}\" Long: a {len(LONG_REPLY.split())}-word paragraph of six sentences.",
        "",
        "| voice | model | reply | p50 ms | p95 ms | min ms | max ms | first segment |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for voice, r in results.items():
        for reply in ("short", "long"):
            rows = r[reply]
            out.append(f"| {voice} | {r['model']} | {reply} | "
                       f"{row([x['first_audio_ms'] for x in rows])} | {rows[0]['segments'][0]} |")
    out += [
        "",
        "## Real-time factor",
        "",
        "Engine synthesis time (SegmentStarted.synthesis_ms) over audio duration "
        "(SegmentStarted.sample_count), summed over segments; lower is faster.",
        "",
        "| voice | model | RTF short replies | RTF long replies | RTF references | "
        "segments per long reply | segments by engine |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for voice, r in results.items():
        engines = Counter(e or "?" for rows in (r["short"], r["long"], r["wer"])
                          for x in rows for e in x["engines"])
        by_engine = ", ".join(f"{name} {n}" for name, n in engines.most_common())
        out.append(f"| {voice} | {r['model']} | {rtf(r['short']):.3f} | {rtf(r['long']):.3f} | "
                   f"{rtf(r['wer']):.3f} | {len(r['long'][0]['segments'])} | {by_engine} |")
    out += [
        "",
        f"## Intelligibility ({len(next(iter(results.values()))['wer'])} replies, heard back "
        "by the STT service's Recognize)",
        "",
        "WER after `normalize_spoken` (numbers, times, money in one spoken form).",
        "",
        "| voice | model | ref words | errors | WER | exact |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for voice, r in results.items():
        rows = r["wer"]
        words, errors = sum(x["ref_words"] for x in rows), sum(x["errors"] for x in rows)
        exact = sum(x["errors"] == 0 for x in rows)
        out.append(f"| {voice} | {r['model']} | {words} | {errors} | {errors / words:.1%} | "
                   f"{exact}/{len(rows)} |")
    misheard = [(voice, x) for voice, r in results.items() for x in r["wer"] if x["errors"]]
    if misheard:
        out += ["", "Misheard:", ""]
        out += [f"- {voice}: \"{x['text']}\" -> \"{x['heard']}\" ({x['errors']} errors)"
                for voice, x in misheard]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"3 streams and {QUICK_REFERENCES} references, a smoke check")
    parser.add_argument("--repeats", type=int, default=0, help="streams per reply (default 10)")
    parser.add_argument("--voices", default=",".join(v for v, _ in VOICES),
                        help="comma list of voice ids")
    opts = parser.parse_args()
    models = dict(VOICES)
    voices = [(v, models.get(v, "?")) for v in opts.voices.split(",") if v]
    repeats = opts.repeats or (3 if opts.quick else 10)
    references = REFERENCES[:QUICK_REFERENCES] if opts.quick else REFERENCES
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VOXMESH_TTS_CACHE_MB", "0")  # every repeat synthesised afresh
    os.environ.setdefault("VOXMESH_TTS_FALLBACK_ENGINE", "")  # measure the voice, not espeak
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?") if Path("/proc/cpuinfo").exists() else "?"
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
        "cpu": cpu, "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "code": code_version(), "repeats": repeats,
        "tts_cache_mb": os.environ["VOXMESH_TTS_CACHE_MB"],
        "tts_fallback_engine": os.environ["VOXMESH_TTS_FALLBACK_ENGINE"] or "none",
        "command": ".venv/bin/python bench/tts.py" + (" --quick" if opts.quick else "")
        + (f" --repeats {opts.repeats}" if opts.repeats else "")
        + (f" --voices {opts.voices}" if voices != list(VOICES) else ""),
    }

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(ports=Ports.random(), services=("stt", "tts"), state_dir=Path(tmp))
        print("starting stt and tts...", flush=True)
        stack.start()
        try:
            results = asyncio.run(measure(stack, voices, repeats, references))
        finally:
            stack.stop()
    meta["wall_s"] = round(time.perf_counter() - started, 1)

    text = report(results, meta)
    print("\n" + text)
    stem = "tts" + (".quick" if opts.quick else "")
    saved = save_results(stem, text, {"meta": meta, "voices": results})
    print(f"saved {saved}.md and .json ({meta['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
