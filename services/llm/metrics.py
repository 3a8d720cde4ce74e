"""Prometheus collectors of the dialogue service (bounded labels only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from services.llm.quotas import Refusal
from services.llm.tools import TOOLS

if TYPE_CHECKING:
    from openai.types import CompletionUsage

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

FIRST_TOKEN = Histogram(
    "voxmesh_llm_first_token_seconds",
    "Time from a user turn's arrival to the first non-empty text delta.",
    buckets=_LATENCY_BUCKETS,
)
TURN = Histogram(
    "voxmesh_llm_turn_seconds",
    "Time from a user turn's arrival to the end of its reply, however it ended.",
    buckets=_LATENCY_BUCKETS,
)
TURNS = Counter(
    "voxmesh_llm_turns_total",
    "User turns answered, by how they ended (completed, cancelled, failed).",
    ["status"],
)
UPSTREAM_ERRORS = Counter(
    "voxmesh_llm_upstream_errors_total",
    "Failed upstream requests, by kind (timeout, rate_limited, status, unavailable, api).",
    ["kind"],
)
ANSWERS = Counter(
    "voxmesh_llm_answers_total",
    "Replies by where their words came from: extractive (the best passage's own "
    "sentences, confidently), closest (those sentences offered as the closest thing "
    "found, in the agent's closest_reply), model, or fallback (the agent's "
    "unsupported_reply: no passage was close enough for a strict agent, or every "
    "sentence the model wrote stated a figure the facts do not back).",
    ["agent", "source"],
)
WITHHELD_SENTENCES = Counter(
    "voxmesh_llm_withheld_sentences_total",
    "Sentences of model replies withheld for stating a figure (price, time, phone number, "
    "count) that neither the passages, the prompt, the user nor a tool result supports.",
    ["agent"],
)
ACCESS_REFUSED = Counter(
    "voxmesh_llm_access_refused_total",
    "Converse streams refused because the session belongs to another caller.",
)
ACTIVE_SESSIONS = Gauge(
    "voxmesh_llm_active_sessions",
    "Converse streams open now.",
)
TOOL_CALLS = Counter(
    "voxmesh_llm_tool_calls_total",
    "Tool call events, by tool (unknown for names not offered) and phase.",
    ["tool", "phase"],
)
MEMORY_ERRORS = Counter(
    "voxmesh_llm_memory_errors_total",
    "Failed loads and saves of conversation history in Redis (the dialogue goes on).",
)
ROUTES = Counter(
    "voxmesh_llm_routes_total",
    "Routing decisions on user turns, by agent before and after (equal: no handoff).",
    ["from_agent", "to_agent"],
)
ROUTE_SECONDS = Histogram(
    "voxmesh_llm_route_seconds",
    "Time to classify a user turn's intent (the model call, or its keyword fallback).",
    buckets=_LATENCY_BUCKETS,
)
ESCALATIONS = Counter(
    "voxmesh_llm_escalations_total",
    "Escalation checks finished, by outcome (assigned, unavailable; expired or closed: "
    "the ticket ended before its check).",
    ["outcome"],
)
NOTIFICATIONS = Counter(
    "voxmesh_llm_notifications_total",
    "Proactive notifications, by event (published, delivered).",
    ["event"],
)
TOOL_REFUSALS = Counter(
    "voxmesh_llm_tool_refusals_total",
    "Tool calls refused by a quota, by tool (unknown for names not offered) and reason "
    "(turn_tool_calls: not run; session_bookings, user_bookings, session_escalations).",
    ["tool", "reason"],
)
TOKENS = Counter(
    "voxmesh_llm_tokens_total",
    "Tokens of streamed replies by agent: prompt and completion as the upstream reports "
    "them (usage), else completion_chunks, the streamed content chunks (not tokens).",
    ["agent", "kind"],
)
TURNS_BY_AGENT = Counter(
    "voxmesh_llm_turns_by_agent_total",
    "User turns answered, by the agent that answered and how they ended.",
    ["agent", "status"],
)


def count_turn(agent: str, status: str) -> None:
    """Count one finished user turn, overall and for ``agent``."""
    TURNS.labels(status).inc()
    TURNS_BY_AGENT.labels(agent, status).inc()


def count_tokens(agent: str, usage: CompletionUsage | None, content_chunks: int) -> None:
    """Count one streamed reply's tokens for ``agent``.

    Args:
        agent: Name of the agent the reply was generated for (bounded by the agent files).
        usage: The upstream's usage report, when its stream sent one.
        content_chunks: Non-empty content chunks streamed; counted only without ``usage``
            (a stream cut short, or an endpoint that ignores ``stream_options``).
    """
    if usage is not None:
        TOKENS.labels(agent, "prompt").inc(usage.prompt_tokens)
        TOKENS.labels(agent, "completion").inc(usage.completion_tokens)
    elif content_chunks:
        TOKENS.labels(agent, "completion_chunks").inc(content_chunks)


# Series for every turn outcome from the start: error-rate alerts read 0, not "no data".
for _status in ("completed", "cancelled", "failed"):
    TURNS.labels(_status)
# Every refusal a quota can produce, from the start: abuse alerts read 0, not "no data".
for _tool, _reason in (*((name, Refusal.TURN_TOOL_CALLS) for name in TOOLS),
                       ("unknown", Refusal.TURN_TOOL_CALLS),
                       ("book_appointment", Refusal.SESSION_BOOKINGS),
                       ("book_appointment", Refusal.USER_BOOKINGS),
                       ("escalate_to_human", Refusal.SESSION_ESCALATIONS)):
    TOOL_REFUSALS.labels(_tool, _reason.value)
