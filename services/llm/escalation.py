"""The background check for a human after an escalation, and the notification it ends with.

The check waits ``check_seconds`` (how long paging the floor takes), then assigns the
ticket in the database and publishes a high-priority notification to the caller's
session. Tickets still pending when the service starts (it was restarted mid-check) are
checked again, so an escalation is never silently dropped; one whose TTL passed meanwhile
expires instead, unannounced (see services.llm.db.escalations).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Engine

from services.llm import metrics
from services.llm.db import escalations
from services.llm.db.escalations import Ticket
from services.llm.notify import Notifier, PendingNotification
from services.llm.quotas import Clock, Quotas, utc_now
from voxmesh.v1 import dialogue_pb2 as pb

log = logging.getLogger(__name__)

SOURCE = "escalation"


def outcome_text(ticket: Ticket) -> str:
    """What the caller is told when the check is done (spoken aloud: plain words)."""
    callback = f" at {ticket.phone}" if ticket.phone else ""
    if ticket.status == "assigned":
        return (f"Good news: {ticket.staff_name}, our {ticket.staff_role}, is free now and "
                f"will call you back{callback} within a few minutes. Your ticket number is "
                f"{ticket.ticket_id}.")
    return ("I'm sorry, nobody from our team is free right now. A manager will call you "
            f"back{callback} as soon as possible. Your ticket number is {ticket.ticket_id}.")


class HumanDesk:
    """Runs escalation checks in the background of the dialogue service."""

    def __init__(self, engine: Engine, notifier: Notifier, check_seconds: float,
                 ttl_s: float = Quotas.escalation_ticket_ttl_s,
                 clock: Clock = utc_now) -> None:
        """Check tickets in ``engine``'s database; tell callers through ``notifier``.

        An assigned ticket keeps its staff member busy for ``ttl_s``; ``clock`` tells
        the time of checks (and so who is on duty).
        """
        self.engine = engine
        self.notifier = notifier
        self.check_seconds = check_seconds
        self.ttl_s = ttl_s
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, _work: str, result: dict[str, Any]) -> None:
        """Start checking the ticket an escalation call returned (ToolContext hook)."""
        self._spawn(str(result["ticket_id"]))

    async def resume(self) -> int:
        """Check again every ticket left pending by a previous run; returns how many."""
        tickets = await asyncio.to_thread(escalations.pending, self.engine)
        for ticket in tickets:
            self._spawn(ticket.ticket_id)
        return len(tickets)

    async def aclose(self) -> None:
        """Stop running checks (their tickets stay pending and resume at the next start)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, ticket_id: str) -> None:
        task = asyncio.create_task(self._check(ticket_id), name=f"escalation-{ticket_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, ticket_id: str) -> None:
        try:
            await asyncio.sleep(self.check_seconds)
            ticket = await asyncio.to_thread(escalations.assign, self.engine, ticket_id,
                                             self.clock(), self.ttl_s)
            metrics.ESCALATIONS.labels(ticket.status).inc()
            if ticket.status not in ("assigned", "unavailable"):
                log.info("escalation not checked", extra={"ticket_id": ticket_id,
                                                          "status": ticket.status})
                return  # expired or closed before its check: there is no outcome to tell
            await self.notifier.publish(ticket.session_id, PendingNotification(
                text=outcome_text(ticket), source=SOURCE,
                priority=pb.NOTIFICATION_PRIORITY_HIGH))
            log.info("escalation checked", extra={"ticket_id": ticket_id,
                                                  "status": ticket.status})
        except asyncio.CancelledError:
            raise
        except Exception:  # the ticket stays pending and is checked again at the next start
            log.exception("escalation check failed", extra={"ticket_id": ticket_id})
