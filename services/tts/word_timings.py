"""Place a segment's words on its audio: from the model's durations, else by estimate."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.tts.engines import WordSpan

_WORD = re.compile(r"[\w'\u2019-]+")
#: Silence trim_silence keeps around speech; estimates leave it out of the words.
_EDGE_S = 0.05


@dataclass(frozen=True)
class Timed:
    """A word of a segment, in seconds from the segment's first (trimmed) sample."""

    word: str
    start: float
    end: float


def place_words(
    text: str, duration: float, model: list[WordSpan] | None, shift: float
) -> tuple[list[Timed], str]:
    """Every word of ``text`` with its span, and the source: "model" or "estimated".

    Args:
        text: The segment's text.
        duration: Seconds of the segment's audio as sent (after trimming).
        model: Word spans from the engine on its untrimmed audio, or None.
        shift: Seconds trimmed off the start of the engine's audio.

    Model spans are used when the phonemiser produced one word per text word;
    otherwise the words share the speech by length (letters are a fair proxy
    for phonemes in English).
    """
    words = _WORD.findall(text)
    if not words or duration <= 0:
        return [], "estimated"
    if model is not None and len(model) == len(words):
        placed, last = [], 0.0
        for word, span in zip(words, model, strict=True):
            start = min(max(span.start - shift, last), duration)
            end = min(max(span.end - shift, start), duration)
            placed.append(Timed(word, start, end))
            last = end
        return placed, "model"
    edge = _EDGE_S if duration > 4 * _EDGE_S else 0.0
    speech = duration - 2 * edge
    total = sum(len(w) for w in words)
    placed, at = [], edge
    for word in words:
        length = speech * len(word) / total
        placed.append(Timed(word, at, min(at + length, duration)))
        at += length
    return placed, "estimated"
