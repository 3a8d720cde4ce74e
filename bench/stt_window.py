"""Whisper window length: word error rate, decode time and overruns per ``window_pad_s``.

In process, no services: the 27 espeak-ng clips of the STT corpus, each cut the way a
streamed final is (300 ms before the first loud sample, 100 ms after the last), decoded
by the engine the service uses with windows of the clip plus N s of silence (30 = the
full Whisper window). The retry of overrunning transcripts is switched off here so each
setting is measured alone; "max overrun" is how far past its audio a transcript's last
segment ended (the engine retries above 0.3 s with the full window).

    .venv/bin/python bench/stt_window.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, save_results  # noqa: E402
from bench.corpus_stt import UTTERANCES, normalize_spoken, word_errors  # noqa: E402
from services.stt import engine as stt_engine  # noqa: E402
from tests.support import speak  # noqa: E402
from voxmesh.config import SttSettings  # noqa: E402

PADS_S = (1, 3, 5, 30)
PRE_MS, POST_MS = 300, 100
LOUD = 0.01  # about -40 dBFS


def clips() -> list[tuple[str, np.ndarray]]:
    """(reference, 16 kHz float audio cut like a streamed final) per espeak-ng utterance."""
    out = []
    for u in UTTERANCES:
        if u.engine != "espeak":
            continue
        pcm = speak(u.spoken, 16000, u.voice, u.wpm)
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        loud = np.nonzero(np.abs(audio) > LOUD)[0]
        out.append((u.text, audio[max(0, loud[0] - PRE_MS * 16): loud[-1] + POST_MS * 16]))
    return out


def measure(pad_s: int, corpus: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    engine = stt_engine.WhisperEngine(SttSettings(window_pad_s=pad_s))
    engine.load()
    overruns: list[float] = []
    real_check = stt_engine.runs_past_audio

    def record(segments: list[dict[str, Any]], audio_s: float) -> bool:
        overruns.append(max((s["end"] for s in segments), default=0.0) - audio_s)
        return False  # measure this window alone: no full-window retry

    stt_engine.runs_past_audio = record
    try:
        errors = words = 0
        times = []
        for reference, audio in corpus:
            started = time.perf_counter()
            result = engine.transcribe_batch([audio], "en", word_timestamps=True)[0]
            times.append((time.perf_counter() - started) * 1000)
            ref = normalize_spoken(reference)
            errors += word_errors(ref, normalize_spoken(result.text))
            words += len(ref)
    finally:
        stt_engine.runs_past_audio = real_check
    return {"pad_s": pad_s, "wer": errors / words, "decode_p50_ms": statistics.median(times),
            "decode_p95_ms": percentile(times, 95), "max_overrun_s": max(overruns)}


def main() -> int:
    corpus = clips()
    rows = [measure(pad, corpus) for pad in PADS_S]
    lines = [
        "# Whisper window length (`bench/stt_window.py`)", "",
        f"{len(corpus)} espeak-ng clips, tiny.en int8 greedy, in process, one at a time.", "",
        "| window_pad_s | WER | decode p50 ms | decode p95 ms | max overrun s |",
        "|--:|--:|--:|--:|--:|",
        *[f"| {r['pad_s']} | {r['wer']:.1%} | {r['decode_p50_ms']:.0f} | "
          f"{r['decode_p95_ms']:.0f} | {r['max_overrun_s']:.2f} |" for r in rows],
    ]
    text = "\n".join(lines)
    print(text)
    save_results("stt_window", text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
