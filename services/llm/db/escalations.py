"""Escalation tickets and the staff who answer them (blocking; run via asyncio.to_thread).

A ticket starts ``pending``; the background check assigns it to a staff member who is on
duty and not already holding an open ticket, or marks it ``unavailable``. Both the check
and the insert lock nothing but their own rows, so replicas may share the database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import ColumnElement, Engine, and_, insert, or_, select, update

from services.llm.db import schema as t

STAFF = [
    ("Dana Whitfield", "service advisor", "201", time(7), time(18)),
    ("Luis Ortega", "sales manager", "305", time(9), time(19)),
    ("Priya Nair", "duty manager", "100", time(0), time(0)),
]
"""(name, role, extension, starts, ends) seeded on start-up; the duty manager is always on."""

OPEN_STATUSES = ("pending", "assigned")


@dataclass(frozen=True)
class Ticket:
    """One escalation as stored."""

    ticket_id: str
    session_id: str
    reason: str
    name: str
    phone: str
    urgent: bool
    status: str
    staff_name: str = ""
    staff_role: str = ""


def seed_staff(engine: Engine) -> None:
    """Insert the reference staff (idempotent)."""
    with engine.begin() as conn:
        known = set(conn.scalars(select(t.staff.c.name)))
        rows = [dict(name=n, role=r, phone_extension=x, starts=s, ends=e)
                for n, r, x, s, e in STAFF if n not in known]
        if rows:
            conn.execute(insert(t.staff), rows)


def open_ticket(engine: Engine, session_id: str, reason: str, name: str, phone: str,
                urgent: bool, now: datetime | None = None) -> Ticket:
    """Create a pending ticket for ``session_id``."""
    ticket_id = "ESC-" + secrets.token_hex(3).upper()
    with engine.begin() as conn:
        conn.execute(insert(t.escalations).values(
            ticket_id=ticket_id, session_id=session_id, reason=reason, name=name or None,
            phone=phone or None, urgent=int(urgent), status="pending",
            created_at=now or datetime.now()))
    return Ticket(ticket_id, session_id, reason, name, phone, urgent, "pending")


def _on_duty(at: time) -> ColumnElement[bool]:
    """SQL condition: a staff member's shift covers ``at`` (00:00-00:00 is all day)."""
    c = t.staff.c
    return or_(and_(c.starts == c.ends),
               and_(c.starts < c.ends, c.starts <= at, at < c.ends),
               and_(c.starts > c.ends, or_(c.starts <= at, at < c.ends)))


def assign(engine: Engine, ticket_id: str, now: datetime | None = None) -> Ticket:
    """Give a pending ticket to a free staff member on duty, or mark it unavailable.

    Idempotent: a ticket already resolved is returned as it is.
    """
    now = now or datetime.now()
    with engine.begin() as conn:
        row = conn.execute(select(t.escalations).where(
            t.escalations.c.ticket_id == ticket_id).with_for_update()).first()
        if row is None:
            raise KeyError(ticket_id)
        if row.status == "pending":
            busy = select(t.escalations.c.staff_id).where(and_(
                t.escalations.c.status == "assigned", t.escalations.c.staff_id.is_not(None)))
            free = conn.execute(select(t.staff.c.id).where(and_(
                _on_duty(now.time()), t.staff.c.id.not_in(busy))).order_by(
                t.staff.c.id)).first()
            conn.execute(update(t.escalations).where(t.escalations.c.id == row.id).values(
                status="assigned" if free else "unavailable",
                staff_id=free.id if free else None, resolved_at=now))
    return get(engine, ticket_id)


def get(engine: Engine, ticket_id: str) -> Ticket:
    """The ticket with ``ticket_id`` and its staff member, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            select(t.escalations, t.staff.c.name.label("staff_name"),
                   t.staff.c.role.label("staff_role"))
            .outerjoin(t.staff, t.staff.c.id == t.escalations.c.staff_id)
            .where(t.escalations.c.ticket_id == ticket_id)).first()
    if row is None:
        raise KeyError(ticket_id)
    return Ticket(row.ticket_id, row.session_id, row.reason, row.name or "", row.phone or "",
                  bool(row.urgent), row.status, row.staff_name or "", row.staff_role or "")


def pending(engine: Engine) -> list[Ticket]:
    """Tickets whose check has not finished (for resuming checks after a restart)."""
    with engine.connect() as conn:
        ids = list(conn.scalars(select(t.escalations.c.ticket_id).where(
            t.escalations.c.status == "pending")))
    return [get(engine, ticket_id) for ticket_id in ids]
