#!/usr/bin/env python3
"""STT quality and latency: WER, end-of-speech latency, partial lag and real-time factor.

Starts a real STT service (default model: bundled Whisper tiny.en) and the TTS
service on free ports, synthesizes the corpus of ``bench/corpus_stt.py``
(espeak-ng at 16 kHz in this process; Kokoro-82M and hibari at 24 kHz through
the TTS service, so the STT resamples them), then:

1. streams every clip through StreamingRecognize at real-time pace (20 ms
   chunks on an absolute clock, then silence frames until ``end_of_turn``) and
   times ``speech_stopped``, ``final`` and ``end_of_turn`` from the moment the
   frame holding the last voiced sample (above -40 dBFS) was written, and every
   partial against the moment the audio up to its ``end_offset_ms`` was written;
2. sends every clip to Recognize (whole-clip mode) for the real-time factor.

WER is scored on both transcripts after ``normalize_spoken`` (numbers, times,
money, phone numbers and a.m./p.m. in one spoken form). Prints one markdown
table per measure and saves them to ``bench/results/stt.md``, raw numbers to
``bench/results/stt.json`` (``stt.quick.*`` with ``--quick``,
``stt.concurrencyN.*`` with ``--concurrency N``). Medians and p95 of one run;
the machine is shared, so read them as an order of magnitude.

Usage: .venv/bin/python bench/stt.py [--quick] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, save_results  # noqa: E402
from bench.corpus_stt import (  # noqa: E402
    ESPEAK_VOICES,
    ESPEAK_WPM,
    QUICK,
    TTS_VOICES,
    UTTERANCES,
    Utterance,
    normalize_spoken,
    word_errors,
)
from tests.support import speak  # noqa: E402
from voxmesh.config import SttSettings  # noqa: E402
from voxmesh.launcher import Ports, Stack  # noqa: E402
from voxmesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc  # noqa: E402

CHUNK_MS = 20
LEAD_MS, TAIL_MS = 300, 1200  # silence around every clip, as tests.support.speak adds
VOICED = 0.01  # about -40 dBFS
TURN_TIMEOUT_S = 8.0  # silence streamed after the clip before giving up on end_of_turn
RECOGNIZE_TAIL_MS = 300  # Recognize gets the clip up to the last voiced sample plus this
TTS_RATE = 24000
ESPEAK_RATE = 16000


@dataclass(frozen=True)
class Clip:
    """A synthesized utterance: PCM16 mono at ``rate``."""

    utterance: Utterance
    pcm: bytes
    rate: int

    @property
    def last_voiced(self) -> int:
        """Index of the last sample louder than -40 dBFS."""
        samples = np.abs(np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768.0)
        return int(np.nonzero(samples > VOICED)[0][-1])


def audio_format(rate: int) -> audio_pb2.AudioFormat:
    """LINEAR16 mono at ``rate``."""
    return audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                                 sample_rate_hertz=rate)


# -- synthesis -------------------------------------------------------------------------------


async def tts_clip(channel: grpc.aio.Channel, utterance: Utterance) -> Clip:
    """``utterance.spoken`` from the TTS service at 24 kHz, with silence around it."""
    request = tts_pb2.StreamingSynthesizeRequest

    async def requests() -> AsyncIterator[tts_pb2.StreamingSynthesizeRequest]:
        yield request(config=tts_pb2.SynthesisConfig(
            voice=utterance.voice, sample_rate_hertz=TTS_RATE, session_id="bench-stt"))
        yield request(text=utterance.spoken)
        yield request(end_of_input=audio_pb2.EndOfInput())

    call = tts_pb2_grpc.TextToSpeechStub(channel).StreamingSynthesize(requests())
    speech = b"".join([e.audio.audio async for e in call if e.WhichOneof("event") == "audio"])
    lead, tail = bytes(TTS_RATE * LEAD_MS // 500), bytes(TTS_RATE * TAIL_MS // 500)
    return Clip(utterance, lead + speech + tail, TTS_RATE)


async def synthesize(channel: grpc.aio.Channel, utterances: list[Utterance]) -> list[Clip]:
    """Every utterance as a clip, one at a time."""
    clips = []
    for u in utterances:
        if u.engine == "espeak":
            pcm = await asyncio.to_thread(speak, u.spoken, ESPEAK_RATE, u.voice, u.wpm,
                                          LEAD_MS, TAIL_MS)
            clips.append(Clip(u, pcm, ESPEAK_RATE))
        else:
            clips.append(await tts_clip(channel, u))
    return clips


# -- streaming -------------------------------------------------------------------------------


async def stream_clip(channel: grpc.aio.Channel, clip: Clip) -> dict[str, Any]:
    """Stream ``clip`` at real-time pace; return transcripts and timings (ms)."""
    rate, pcm = clip.rate, clip.pcm
    chunk = rate * 2 * CHUNK_MS // 1000
    last_voiced_chunk = clip.last_voiced * 2 // chunk
    last_voiced_ms = clip.last_voiced * 1000 / rate
    call = stt_pb2_grpc.SpeechToTextStub(channel).StreamingRecognize()
    await call.write(stt_pb2.StreamingRecognizeRequest(config=stt_pb2.RecognitionConfig(
        audio_format=audio_format(rate), enable_partial_results=True,
        session_id=f"bench-stt-{clip.utterance.index}")))
    events: list[tuple[float, stt_pb2.StreamingRecognizeResponse]] = []
    turn_over = asyncio.Event()

    async def read() -> None:
        while (event := await call.read()) is not grpc.aio.EOF:
            events.append((time.perf_counter(), event))
            if event.WhichOneof("event") == "end_of_turn" and (
                    event.end_of_turn.offset_ms > last_voiced_ms):
                turn_over.set()

    reader = asyncio.create_task(read())
    sent: list[float] = []  # when each chunk's write returned
    limit = len(pcm) // chunk + 1 + int(TURN_TIMEOUT_S * 1000 / CHUNK_MS)
    try:
        started = time.perf_counter()
        while not turn_over.is_set() and len(sent) < limit and not reader.done():
            i = len(sent)
            await asyncio.sleep(max(0.0, started + i * CHUNK_MS / 1000 - time.perf_counter()))
            data = pcm[i * chunk : (i + 1) * chunk] or bytes(chunk)
            await call.write(stt_pb2.StreamingRecognizeRequest(audio=data))
            sent.append(time.perf_counter())
        await call.write(stt_pb2.StreamingRecognizeRequest(end_of_input=audio_pb2.EndOfInput()))
        await call.done_writing()
        await reader
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return timings(events, sent, last_voiced_chunk, last_voiced_ms, chunk, rate)


def timings(
    events: list[tuple[float, stt_pb2.StreamingRecognizeResponse]],
    sent: list[float],
    last_voiced_chunk: int,
    last_voiced_ms: float,
    chunk: int,
    rate: int,
) -> dict[str, Any]:
    """Turn the arrival times of a stream's events into latencies against the sent audio."""
    speech_end = sent[last_voiced_chunk]
    finals = [(t, e.final) for t, e in events if e.WhichOneof("event") == "final"]
    turns = [(t, e.end_of_turn) for t, e in events if e.WhichOneof("event") == "end_of_turn"]
    last_turn = next(((t, e) for t, e in turns if e.offset_ms > last_voiced_ms), None)
    result: dict[str, Any] = {
        "stream_text": " ".join(f.text for _, f in sorted(finals, key=lambda x: x[1].utterance_id)),
        "utterances": len({e.final.utterance_id for _, e in events
                           if e.WhichOneof("event") == "final"}),
        "last_voiced_ms": round(last_voiced_ms),
        "speech_stopped_ms": None, "final_ms": None, "end_of_turn_ms": None,
        "final_decode_ms": None,
    }
    if last_turn is not None:
        utterance_id = last_turn[1].utterance_id
        result["end_of_turn_ms"] = (last_turn[0] - speech_end) * 1000
        for t, e in events:
            kind = e.WhichOneof("event")
            if kind == "final" and e.final.utterance_id == utterance_id:
                result["final_ms"] = (t - speech_end) * 1000
                result["final_decode_ms"] = e.final.decode_ms
            elif kind == "speech_stopped" and e.speech_stopped.utterance_id == utterance_id:
                result["speech_stopped_ms"] = (t - speech_end) * 1000
    partials = []
    for t, e in events:
        if e.WhichOneof("event") != "partial":
            continue
        samples = e.partial.end_offset_ms * rate // 1000
        index = min(len(sent) - 1, max(0, -(-samples * 2 // chunk) - 1))
        partials.append({"lag_ms": (t - sent[index]) * 1000, "end_offset_ms":
                         e.partial.end_offset_ms, "is_stable": e.partial.is_stable,
                         "decode_ms": e.partial.decode_ms, "text": e.partial.text})
    result["partials"] = partials
    return result


async def stream_all(addr: str, clips: list[Clip], concurrency: int) -> list[dict[str, Any]]:
    """Stream every clip, ``concurrency`` at a time; results in clip order."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(clips)):
        queue.put_nowait(i)
    results: list[dict[str, Any]] = [{} for _ in clips]

    async def worker(channel: grpc.aio.Channel) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            results[i] = await stream_clip(channel, clips[i])
            r = results[i]
            print(f"  stream {i + 1:2d}/{len(clips)} {clips[i].utterance.source:<22} "
                  f"final {fmt_ms(r['final_ms'])} eot {fmt_ms(r['end_of_turn_ms'])}  "
                  f"{r['stream_text']!r}", flush=True)
            await asyncio.sleep(0.2)  # let the service settle between clips

    async with grpc.aio.insecure_channel(addr) as channel:
        await asyncio.gather(*(worker(channel) for _ in range(concurrency)))
    return results


# -- whole clips -----------------------------------------------------------------------------


async def recognize_all(addr: str, clips: list[Clip]) -> list[dict[str, Any]]:
    """Recognize each clip (up to its last voiced sample plus 300 ms), one at a time."""
    results = []
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        for clip in clips:
            end = min(len(clip.pcm), (clip.last_voiced + clip.rate * RECOGNIZE_TAIL_MS // 1000) * 2)
            started = time.perf_counter()
            response = await stub.Recognize(stt_pb2.RecognizeRequest(
                config=stt_pb2.RecognitionConfig(audio_format=audio_format(clip.rate),
                                                 session_id="bench-stt"),
                audio=clip.pcm[:end]))
            wall_ms = (time.perf_counter() - started) * 1000
            results.append({
                "recognize_text": response.transcript.text,
                "recognize_wall_ms": wall_ms,
                "recognize_decode_ms": response.transcript.decode_ms,
                "recognize_audio_ms": response.audio_duration_ms,
            })
    return results


# -- report ----------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    """``value`` as whole ms, or a dash."""
    return "-" if value is None else f"{value:.0f} ms"


def stats_row(name: str, values: Sequence[float], digits: int = 0) -> str:
    """``| name | n | p50 | p95 | min | max |`` (dashes when empty)."""
    if not values:
        return f"| {name} | 0 | - | - | - | - |"
    cells = [statistics.median(values), percentile(values, 95), min(values), max(values)]
    return f"| {name} | {len(values)} | " + " | ".join(f"{v:.{digits}f}" for v in cells) + " |"


STATS_HEADER = "| {} | n | p50 | p95 | min | max |\n|---|--:|--:|--:|--:|--:|"


def wer_table(clips: list[dict[str, Any]]) -> list[str]:
    """WER (errors over reference words, pooled) for every source group."""
    groups: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
        ("**all**", lambda c: True),
        ("espeak-ng, all", lambda c: c["engine"] == "espeak"),
        *[(f"espeak-ng {v}", lambda c, v=v: c["engine"] == "espeak" and c["voice"] == v)
          for v in ESPEAK_VOICES],
        *[(f"espeak-ng {w} wpm", lambda c, w=w: c["engine"] == "espeak" and c["wpm"] == w)
          for w in ESPEAK_WPM],
        ("TTS service, all (24 kHz)", lambda c: c["engine"] == "tts"),
        *[(f"TTS {v}" + (" (hibari)" if v == "heart" else " (Kokoro-82M)"),
           lambda c, v=v: c["engine"] == "tts" and c["voice"] == v) for v in TTS_VOICES],
    ]
    lines = ["| source | clips | ref words | WER streamed | WER Recognize | exact streamed |",
             "|---|--:|--:|--:|--:|--:|"]
    for name, keep in groups:
        chosen = [c for c in clips if keep(c)]
        if not chosen:
            continue
        words = sum(c["ref_words"] for c in chosen)
        stream = sum(c["stream_errors"] for c in chosen) / words
        whole = sum(c["recognize_errors"] for c in chosen) / words
        exact = sum(c["stream_errors"] == 0 for c in chosen)
        lines.append(f"| {name} | {len(chosen)} | {words} | {stream:.1%} | {whole:.1%} | "
                     f"{exact}/{len(chosen)} |")
    return lines


def report(clips: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Every table as one markdown document."""
    def values(key: str) -> list[float]:
        return [c[key] for c in clips if c[key] is not None]

    partials = [p for c in clips for p in c["partials"]]
    stable = sum(p["is_stable"] for p in partials)
    missing = sum(c["end_of_turn_ms"] is None for c in clips)
    out = [
        f"# STT benchmark ({meta['mode']})",
        "",
        f"{meta['date']} · `{meta['command']}` · code {meta['code']}",
        "",
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['platform']}, "
        f"load average {meta['loadavg']} at start (shared machine). "
        f"Model: {meta['model']}, compute type {meta['compute_type']}, "
        f"beam {meta['beam_size']}, cpu_threads {meta['cpu_threads']}, "
        f"{meta['max_concurrent_decodes']} decode slot(s). "
        f"VAD stop {meta['vad_stop_ms']} ms, final pad {meta['final_pad_ms']} ms, "
        f"speculative final {meta['speculative_final']}, "
        f"partials every {meta['partial_interval_ms']} ms. "
        f"{len(clips)} clips, {meta['concurrency']} stream(s) at a time.",
        "",
        "## Word error rate",
        "",
        "Pooled over the group (edits / reference words) after `normalize_spoken`; "
        "streamed = the finals of StreamingRecognize, Recognize = whole clip.",
        "",
        *wer_table(clips),
        "",
        "## End of speech to transcript (ms)",
        "",
        "From the write of the 20 ms frame holding the last sample above -40 dBFS "
        "to the arrival of each event (real-time pace, silence frames after the clip)."
        + (f" {missing} clip(s) had no end_of_turn after their speech." if missing else ""),
        "",
        STATS_HEADER.format("event"),
        stats_row("speech_stopped", values("speech_stopped_ms")),
        stats_row("**final**", values("final_ms")),
        stats_row("**end_of_turn**", values("end_of_turn_ms")),
        stats_row("final decode_ms (server)", values("final_decode_ms")),
        "",
        "## Partial transcripts",
        "",
        "Lag = arrival of the partial minus the write of the audio up to its "
        "`end_offset_ms`.",
        "",
        STATS_HEADER.format("measure"),
        stats_row("lag (ms)", [p["lag_ms"] for p in partials]),
        stats_row("partials per clip", [len(c["partials"]) for c in clips], 1),
        stats_row("partial decode_ms (server)", [p["decode_ms"] for p in partials]),
        "",
        f"is_stable: {stable} of {len(partials)} partials "
        f"({stable / len(partials):.0%})." if partials else "No partials.",
        "",
        "## Real-time factor (Recognize, one clip at a time)",
        "",
        f"Each clip up to its last voiced sample plus {RECOGNIZE_TAIL_MS} ms "
        f"(plus {LEAD_MS} ms lead silence). Whisper's window is the clip plus "
        "`window_pad_s` of silence; a transcript that runs past its audio is decoded again "
        "with the full 30 s window (the max).",
        "",
        STATS_HEADER.format("measure"),
        stats_row("RTF decode_ms / audio_ms", [c["recognize_decode_ms"] / c["recognize_audio_ms"]
                                               for c in clips], 3),
        stats_row("RTF client round trip / audio_ms",
                  [c["recognize_wall_ms"] / c["recognize_audio_ms"] for c in clips], 3),
        stats_row("decode_ms", values("recognize_decode_ms")),
        stats_row("audio_ms", values("recognize_audio_ms")),
        "",
        "## Worst clips (streamed)",
        "",
        "| # | source | WER | reference | heard |",
        "|--:|---|--:|---|---|",
    ]
    worst = sorted(clips, key=lambda c: -c["stream_errors"] / c["ref_words"])[:6]
    for c in worst:
        if c["stream_errors"]:
            out.append(f"| {c['index']} | {c['source']} | "
                       f"{c['stream_errors'] / c['ref_words']:.0%} | {c['text']} | "
                       f"{c['stream_text']} |")
    return "\n".join(out) + "\n"


def code_version() -> str:
    """The commit measured, flagged when services/ or voxmesh/ differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "services", "voxmesh"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes in services/ or voxmesh/" if dirty else "")


def machine_info(opts: argparse.Namespace, settings: SttSettings) -> dict[str, Any]:
    """What the numbers depend on: CPUs, load, model and decoding settings."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mode = "quick" if opts.quick else "full"
    command = "bench/stt.py" + (" --quick" if opts.quick else "") + (
        f" --concurrency {opts.concurrency}" if opts.concurrency > 1 else "")
    info: dict[str, Any] = {
        "mode": mode, "command": f".venv/bin/python {command}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu,
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "model": settings.model or "bundled Whisper tiny.en", "concurrency": opts.concurrency,
    }
    info["code"] = code_version()
    for name in ("compute_type", "beam_size", "cpu_threads", "max_concurrent_decodes",
                 "vad_stop_ms", "final_pad_ms", "speculative_final", "partial_interval_ms"):
        info[name] = getattr(settings, name, "?")  # tolerate settings that come and go
    return info


# -- main ------------------------------------------------------------------------------------


async def measure(stack: Stack, utterances: list[Utterance],
                  concurrency: int) -> list[dict[str, Any]]:
    """Synthesize, stream and recognize; one dict of raw numbers per clip."""
    print(f"synthesizing {len(utterances)} clips...", flush=True)
    async with grpc.aio.insecure_channel(stack.addr("tts")) as channel:
        clips = await synthesize(channel, utterances)
    print("streaming at real-time pace...", flush=True)
    streamed = await stream_all(stack.addr("stt"), clips, concurrency)
    print("recognizing whole clips...", flush=True)
    whole = await recognize_all(stack.addr("stt"), clips)
    rows = []
    for clip, s, w in zip(clips, streamed, whole, strict=True):
        u = clip.utterance
        ref = normalize_spoken(u.text)
        rows.append({
            "index": u.index, "source": u.source, "engine": u.engine, "voice": u.voice,
            "wpm": u.wpm, "rate": clip.rate, "text": u.text, "spoken": u.spoken,
            "clip_ms": len(clip.pcm) * 500 // clip.rate, "ref_words": len(ref),
            **s, **w,
            "stream_errors": word_errors(ref, normalize_spoken(s["stream_text"])),
            "recognize_errors": word_errors(ref, normalize_spoken(w["recognize_text"])),
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 clips, a smoke check")
    parser.add_argument("--concurrency", type=int, default=1, help="streams at once")
    opts = parser.parse_args()
    if opts.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    utterances = QUICK if opts.quick else UTTERANCES
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meta = machine_info(opts, SttSettings())

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # The corpus must be spoken by the named voices, never by the TTS fallback engine.
        stack = Stack(ports=Ports.random(), services=("stt", "tts"), state_dir=Path(tmp),
                      extra_env={"VOXMESH_TTS_FALLBACK_ENGINE": ""})
        print("starting stt and tts...", flush=True)
        stack.start()
        try:
            clips = asyncio.run(measure(stack, utterances, opts.concurrency))
        finally:
            stack.stop()
    meta["wall_s"] = round(time.perf_counter() - started, 1)

    text = report(clips, meta)
    print("\n" + text)
    stem = "stt" + (".quick" if opts.quick else "") + (
        f".concurrency{opts.concurrency}" if opts.concurrency > 1 else "")
    saved = save_results(stem, text, {"meta": meta, "clips": clips})
    print(f"saved {saved}.md and .json ({meta['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
