"""An LRU cache of synthesised segments, bounded by the bytes of audio it holds.

Voice replies repeat themselves ("Thank you for calling.", "One moment."): a hit
sends the stored audio without running an engine. Only the event loop touches it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from services.tts import metrics
from services.tts.word_timings import Timed


@dataclass(frozen=True)
class CacheKey:
    """What makes two segments sound the same."""

    text: str
    voice: str
    speed: float
    engine: str
    sample_rate: int

    @classmethod
    def of(cls, text: str, voice: str, speed: float, engine: str, rate: int) -> CacheKey:
        """The key of a segment, its text whitespace-normalised (case kept: it is spoken)."""
        return cls(" ".join(text.split()), voice, round(speed, 3), engine, rate)


@dataclass(frozen=True)
class CachedAudio:
    """A segment's audio at the output rate, and what producing it cost."""

    pcm: bytes
    synthesis_seconds: float
    words: list[Timed]
    timing_source: str


class PhraseCache:
    """Least recently used segments, at most ``max_bytes`` of PCM in all."""

    def __init__(self, max_bytes: int) -> None:
        """Create an empty cache; ``max_bytes`` 0 disables it."""
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, CachedAudio] = OrderedDict()
        self._bytes = 0

    def get(self, key: CacheKey) -> CachedAudio | None:
        """The stored segment, counting the hit or miss and the synthesis time saved."""
        if not self.max_bytes:
            return None
        entry = self._entries.get(key)
        if entry is None:
            metrics.CACHE_MISSES.inc()
            return None
        self._entries.move_to_end(key)
        metrics.CACHE_HITS.inc()
        metrics.CACHE_SAVED_SECONDS.inc(entry.synthesis_seconds)
        return entry

    def put(self, key: CacheKey, entry: CachedAudio) -> None:
        """Store a segment, evicting the least recently used ones to make room."""
        size = len(entry.pcm)
        if not self.max_bytes or size > self.max_bytes or key in self._entries:
            return
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.pcm)
        metrics.CACHE_BYTES.set(self._bytes)
