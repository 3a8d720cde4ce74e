"""Helpers the tests share: real speech from espeak-ng and transcript comparison."""

from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from voxmesh.audio import float_to_pcm16, pcm16_to_float, resample

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}


def speak(text: str, sample_rate: int = 16000, voice: str = "en-us", words_per_minute: int = 160,
          lead_silence_ms: int = 300, tail_silence_ms: int = 1200) -> bytes:
    """Synthesize ``text`` with espeak-ng and return PCM16 mono at ``sample_rate``.

    Silence is added before and after so VAD sees a clean start and end.
    """
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav_path), text],
            check=True, capture_output=True,
        )
        with wave.open(str(wav_path)) as wav:
            rate = wav.getframerate()
            samples = pcm16_to_float(wav.readframes(wav.getnframes()), wav.getnchannels())
    samples = resample(samples, rate, sample_rate)
    lead = np.zeros(sample_rate * lead_silence_ms // 1000, dtype=np.float32)
    tail = np.zeros(sample_rate * tail_silence_ms // 1000, dtype=np.float32)
    return float_to_pcm16(np.concatenate([lead, samples, tail]))


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, number words as digits."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))
    return [_NUMBER_WORDS.get(w, w) for w in words]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance divided by the reference length."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return float(bool(hyp))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def rms(pcm: bytes) -> float:
    """Root-mean-square level of PCM16 audio in [0, 1]."""
    samples = pcm16_to_float(pcm)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
