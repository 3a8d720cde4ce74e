"""Prometheus collectors of the text-to-speech service (bounded labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_STREAMS = Gauge("voxmesh_tts_active_streams", "StreamingSynthesize calls in progress.")
SYNTHESIS_SECONDS = Histogram(
    "voxmesh_tts_synthesis_seconds",
    "Wall time an engine took to synthesise one segment.",
    ["engine"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)
FIRST_AUDIO_SECONDS = Histogram(
    "voxmesh_tts_first_audio_seconds",
    "From the first text received on a stream to its first audio chunk sent.",
    ["engine"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
REAL_TIME_FACTOR = Histogram(
    "voxmesh_tts_real_time_factor",
    "Synthesis time divided by the duration of the audio synthesised, per segment.",
    ["engine"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0),
)
CANCELLED = Counter("voxmesh_tts_cancelled_total", "Streams stopped by a Cancel request.")
REJECTED = Counter(
    "voxmesh_tts_rejected_total",
    "Requests refused, by gRPC status.",
    ["reason"],
)
FALLBACKS = Counter(
    "voxmesh_tts_fallbacks_total",
    "Streams switched to the fallback engine, by the engine that gave up and why.",
    ["engine", "reason"],
)
ENGINE_LOAD_FAILURES = Counter(
    "voxmesh_tts_engine_load_failures_total",
    "Engines that failed to load at start-up; their voices are spoken by the fallback.",
    ["engine"],
)
CACHE_HITS = Counter("voxmesh_tts_cache_hits_total", "Segments served from the phrase cache.")
CACHE_MISSES = Counter("voxmesh_tts_cache_misses_total", "Segments not in the phrase cache.")
CACHE_SAVED_SECONDS = Counter(
    "voxmesh_tts_cache_saved_seconds_total",
    "Synthesis time the phrase cache saved (the hits' original synthesis times).",
)
CACHE_BYTES = Gauge("voxmesh_tts_cache_bytes", "Bytes of audio held in the phrase cache.")
