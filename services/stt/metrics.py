"""Prometheus collectors of the speech-to-text service (bounded labels only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_STREAMS = Gauge("voxmesh_stt_active_streams", "StreamingRecognize calls in progress.")
DECODE_SECONDS = Histogram(
    "voxmesh_stt_decode_seconds",
    "Wall time of one Whisper decode, excluding time queued.",
    ["kind"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)
QUEUE_DEPTH = Gauge("voxmesh_stt_queue_depth", "Final decodes waiting for a decode slot.")
REAL_TIME_FACTOR = Histogram(
    "voxmesh_stt_real_time_factor",
    "Decode time divided by the duration of the decoded audio.",
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
)
REJECTED = Counter(
    "voxmesh_stt_rejected_total",
    "Requests or decodes refused, by reason.",
    ["reason"],
)
BATCH_SIZE = Histogram(
    "voxmesh_stt_batch_size",
    "Utterances decoded together in one Whisper call.",
    ["kind"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
TURN_MODEL_SECONDS = Histogram(
    "voxmesh_stt_turn_model_seconds",
    "Wall time of one Smart Turn inference, features included.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
)
TURN_DECISIONS = Counter(
    "voxmesh_stt_turn_decisions_total",
    "End-of-turn decisions at pauses: complete, incomplete (keep listening) or timeout.",
    ["decision"],
)
TURN_MODEL_AVAILABLE = Gauge(
    "voxmesh_stt_turn_model_available",
    "1 when the Smart Turn model is loaded, 0 when turns end on silence only.",
)

FULL_WINDOW_RETRIES = Counter(
    "voxmesh_stt_full_window_retries_total",
    "Decodes redone with Whisper's full 30 s window because the short window's transcript "
    "ran past the audio.",
)

# Series for every known label value from the start: alerts read 0, not "no data".
for _reason in ("partial_skipped", "queue_full"):
    REJECTED.labels(reason=_reason)
for _decision in ("complete", "incomplete", "timeout"):
    TURN_DECISIONS.labels(decision=_decision)
