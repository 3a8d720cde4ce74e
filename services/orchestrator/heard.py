"""Which words of a reply the user actually heard, from TTS segments and playback progress."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpokenSegment:
    """A text segment the TTS voiced, placed on the turn's audio timeline (output samples)."""

    text: str
    sample_offset: int
    sample_count: int


def heard_text(segments: list[SpokenSegment], played_samples: int) -> str:
    """Words of ``segments`` covered by the first ``played_samples`` samples of audio.

    Whole segments count when fully played; inside the segment playing at the
    cut, words are credited in proportion to the samples played (the engines give
    no per-word timings yet, so this is an estimate within one segment).
    """
    words: list[str] = []
    for segment in segments:
        seg_words = segment.text.split()
        end = segment.sample_offset + segment.sample_count
        if played_samples >= end:
            words.extend(seg_words)
            continue
        if played_samples > segment.sample_offset and segment.sample_count > 0:
            fraction = (played_samples - segment.sample_offset) / segment.sample_count
            words.extend(seg_words[: int(len(seg_words) * fraction)])
        break
    return " ".join(words)
