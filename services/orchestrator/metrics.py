"""Prometheus collectors of the orchestrator (module level, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

ACTIVE_SESSIONS = Gauge("voxmesh_orchestrator_active_sessions", "Sessions open now.")
TURNS = Counter("voxmesh_orchestrator_turns_total", "Turns answered, by outcome.", ["status"])
STAGE_LATENCY = Histogram(
    "voxmesh_orchestrator_stage_latency_seconds",
    "Per-turn latency of each stage (stt, llm, tts) and the voice-to-voice total.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
INTERRUPTIONS = Counter("voxmesh_orchestrator_interruptions_total", "Replies cut off by the user.")
EAGER_TURNS = Counter(
    "voxmesh_orchestrator_eager_turns_total",
    "Replies started before the end of the user's turn, by outcome (committed, discarded).",
    ["outcome"],
)
BARGE_INS = Counter(
    "voxmesh_orchestrator_barge_ins_total",
    "User speech over the agent, by outcome: interrupted (words, long speech, client) or "
    "ignored (a backchannel or noise: the agent kept talking).",
    ["outcome"],
)
DOWNSTREAM_ERRORS = Counter(
    "voxmesh_orchestrator_downstream_errors_total", "Failed calls to a service.", ["service"]
)
AUDIT_EVENTS = Counter("voxmesh_orchestrator_audit_events_total", "Audit events written to Redis.")
AUDIT_DROPPED = Counter(
    "voxmesh_orchestrator_audit_dropped_total",
    "Audit events dropped, by reason: queue_full (the buffer was full) or rejected (Redis "
    "refused the session's stream, e.g. WRONGTYPE or NOPERM). Recorded as audit.dropped "
    "entries where the stream takes writes again.",
    ["reason"],
)
AUDIT_BACKLOG = Gauge("voxmesh_orchestrator_audit_backlog", "Audit events waiting to be written.")
AUDIT_WRITE_ERRORS = Counter(
    "voxmesh_orchestrator_audit_write_errors_total",
    "Failed audit writes to Redis (each retried with backoff; nothing is lost by one).",
)
AUDIT_CHAIN_RESUMES = Counter(
    "voxmesh_orchestrator_audit_chain_resumes_total",
    "Sessions whose audit hash chain was continued from an existing stream.",
)
AUDIT_CHAIN_CONFLICTS = Counter(
    "voxmesh_orchestrator_audit_chain_conflicts_total",
    "Audit appends refused because another writer had moved the session's chain head; the "
    "events were sealed again on the actual head and retried (not an error).",
)
ACCESS_REFUSED = Counter(
    "voxmesh_orchestrator_access_refused_total",
    "Session starts refused before touching any session, by reason: session_forbidden "
    "(another caller's session), unknown_session, token_reused (a replayed token).",
    ["reason"],
)
ACCESS_REASONS = ("session_forbidden", "unknown_session", "token_reused")

# Series for every known label value from the start: alerts and dashboards then read 0,
# not "no data", before the first event.
for _outcome in ("committed", "discarded"):
    EAGER_TURNS.labels(_outcome)
for _outcome in ("interrupted", "ignored"):
    BARGE_INS.labels(_outcome)
for _service in ("stt", "llm", "tts"):
    DOWNSTREAM_ERRORS.labels(_service)
for _reason in ("queue_full", "rejected"):
    AUDIT_DROPPED.labels(_reason)
for _reason in ACCESS_REASONS:
    ACCESS_REFUSED.labels(_reason)
