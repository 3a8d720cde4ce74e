"""Quotas on what tools may do: the limits, the reasons a call is refused, and the clock.

A model can be talked into anything its tools allow, so what a tool may do is bounded
here, never by the prompt. Per-turn tool calls are counted in the session; bookings and
escalation tickets are counted in the database, inside the transaction that would add
one, so the limits hold across replicas sharing the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from voxmesh.config import LlmSettings

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime; injected so tests never sleep."""


def utc_now() -> datetime:
    """The current time, aware, in UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as a naive UTC datetime: how ticket times are stored."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def as_local(moment: datetime) -> datetime:
    """``moment`` as a naive local datetime: how appointment times and shifts are kept."""
    return moment.astimezone().replace(tzinfo=None)


class Refusal(StrEnum):
    """Why a quota refused a tool call (the ``reason`` label and ``refusal_reason``)."""

    TURN_TOOL_CALLS = "turn_tool_calls"
    """The turn already made as many tool calls as allowed; this one did not run."""
    SESSION_BOOKINGS = "session_bookings"
    """The session already holds as many bookings as allowed."""
    USER_BOOKINGS = "user_bookings"
    """The user already holds as many upcoming bookings as allowed."""
    SESSION_ESCALATIONS = "session_escalations"
    """The session already has as many open escalation tickets as allowed."""


class QuotaExceeded(Exception):
    """A tool call refused by a quota; the message is told to the model."""

    def __init__(self, reason: Refusal, message: str) -> None:
        """Record why (``reason``) and what to tell the model (``message``)."""
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Quotas:
    """Limits on tool calls (see the ``VOXMESH_LLM_*`` settings of the same names).

    Attributes:
        max_tool_calls_per_turn: Tool calls run for one user turn, all steps together.
        max_bookings_per_session: Booked (not cancelled) appointments one session made.
        max_bookings_per_user: Booked upcoming appointments of one non-empty user id.
        max_open_escalations_per_session: Open, unexpired escalation tickets of a session.
        escalation_ticket_ttl_s: How long a ticket stays open (and its staff member busy).
    """

    max_tool_calls_per_turn: int = 4
    max_bookings_per_session: int = 2
    max_bookings_per_user: int = 3
    max_open_escalations_per_session: int = 1
    escalation_ticket_ttl_s: float = 1800.0

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> Quotas:
        """The quotas configured in ``settings``."""
        return cls(settings.max_tool_calls_per_turn, settings.max_bookings_per_session,
                   settings.max_bookings_per_user,
                   settings.max_open_escalations_per_session,
                   settings.escalation_ticket_ttl_seconds)
