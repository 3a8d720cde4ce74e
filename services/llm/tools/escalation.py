"""The escalation tool: open a ticket for a human and start looking for one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.llm.db import escalations
from services.llm.db.store import BookingStore
from services.llm.tools.base import Tool, ToolContext
from services.llm.tools.booking import check_phone

HUMAN_CHECK = "human_check"
"""Background work started by a successful escalation (see services.llm.escalation)."""


class EscalateArgs(BaseModel):
    """Arguments of escalate_to_human."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500,
                        description="Why the caller needs a person, in a few words.")
    name: str = Field("", max_length=200, description="Caller's name, if given.")
    phone: str = Field("", description="Number to call back, if given.")
    urgent: bool = Field(False, description="True for safety issues or breakdowns.")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return check_phone(value) if value.strip() else ""


def escalate_to_human(store: BookingStore, args: EscalateArgs,
                      ctx: ToolContext) -> dict[str, Any]:
    """Open a pending ticket (within the session's quota); the check runs in the background."""
    ticket = escalations.open_ticket(store.engine, ctx.session_id, args.reason.strip(),
                                     args.name.strip(), args.phone, args.urgent,
                                     now=ctx.now(), quotas=ctx.quotas)
    return {"ticket_id": ticket.ticket_id, "status": "checking",
            "instructions": "Tell the caller you are finding someone now and will let them "
                            "know in a moment; do not promise who or when."}


ESCALATION_TOOLS = [
    Tool("escalate_to_human", "Ask for a person from the dealership to take over: opens a "
         "ticket and checks in the background who is free; the caller is told the outcome "
         "automatically.", EscalateArgs, escalate_to_human, background=HUMAN_CHECK),
]
