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
