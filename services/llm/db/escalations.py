"""Escalation tickets and the staff who answer them (blocking; run via asyncio.to_thread).

A ticket starts ``pending``; the background check assigns it to a staff member who is on
duty and not holding an open ticket, or marks it ``unavailable``. A ticket is open while
``pending`` or ``assigned`` and not past ``expires_at`` (its TTL after it was opened,
renewed when it is assigned); then it is ``expired``, or ``closed`` when closed before.
Only open tickets keep a staff member busy, so nobody stays taken forever. Opening and
assigning lock the staff rows first (in order), so replicas sharing the database never
give one person two tickets nor let a session past its open-ticket quota.

Ticket times are naive UTC (``created_at``, ``resolved_at``, ``expires_at``,
``closed_at``); shifts are local wall-clock times. "Now" is always passed in (an aware
datetime from the service's clock), so replicas must keep their clocks in sync (NTP).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, and_, insert, or_, select, update

from services.llm.db import schema as t
from services.llm.quotas import QuotaExceeded, Quotas, Refusal, as_local, as_utc, utc_now

STAFF = [
    ("Dana Whitfield", "service advisor", "201", time(7), time(18)),
    ("Luis Ortega", "sales manager", "305", time(9), time(19)),
    ("Priya Nair", "duty manager", "100", time(0), time(0)),
]
"""(name, role, extension, starts, ends) seeded on start-up; the duty manager is always on."""

OPEN_STATUSES = ("pending", "assigned")
"""Statuses of a ticket that is open until it expires."""


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
    expires_at: datetime | None = None
    """Naive UTC; past it, an open ticket is expired."""


def seed_staff(engine: Engine) -> None:
    """Insert the reference staff (idempotent)."""
    with engine.begin() as conn:
        known = set(conn.scalars(select(t.staff.c.name)))
        rows = [dict(name=n, role=r, phone_extension=x, starts=s, ends=e)
                for n, r, x, s, e in STAFF if n not in known]
        if rows:
            conn.execute(insert(t.staff), rows)


def _is_open(now_utc: datetime) -> ColumnElement[bool]:
    """SQL condition: a ticket is open at ``now_utc`` (naive UTC)."""
    c = t.escalations.c
    return and_(c.status.in_(OPEN_STATUSES), c.expires_at.is_not(None), c.expires_at > now_utc)


def _lock_desk(conn: Connection) -> None:
    """Serialise ticket changes across replicas: lock every staff row, in id order."""
    conn.execute(select(t.staff.c.id).order_by(t.staff.c.id).with_for_update()).all()


def expire(conn: Connection, now_utc: datetime) -> int:
    """Mark open tickets past their expiry ``expired``; returns how many.

    Availability never depends on this sweep (it checks ``expires_at`` itself); it keeps
    the stored status truthful for people reading the table.
    """
    c = t.escalations.c
    return conn.execute(update(t.escalations).where(and_(
        c.status.in_(OPEN_STATUSES),
        or_(c.expires_at.is_(None), c.expires_at <= now_utc))).values(
        status="expired", closed_at=now_utc)).rowcount


def open_ticket(engine: Engine, session_id: str, reason: str, name: str, phone: str,
                urgent: bool, now: datetime | None = None,
                quotas: Quotas | None = None) -> Ticket:
    """Create a pending ticket for ``session_id``, open for ``quotas``' TTL.

    Raises:
        QuotaExceeded: the session already has as many open tickets as allowed.
    """
    quotas = quotas or Quotas()
    now_utc = as_utc(now or utc_now())
    ticket_id = "ESC-" + secrets.token_hex(3).upper()
    expires_at = now_utc + timedelta(seconds=quotas.escalation_ticket_ttl_s)
    with engine.begin() as conn:
        _lock_desk(conn)
        expire(conn, now_utc)
        held = list(conn.scalars(select(t.escalations.c.ticket_id).where(and_(
            t.escalations.c.session_id == session_id, _is_open(now_utc))).order_by(
            t.escalations.c.id)))
        if len(held) >= quotas.max_open_escalations_per_session:
            raise QuotaExceeded(Refusal.SESSION_ESCALATIONS, (
                f"limit reached: this call already has open ticket {held[-1]}; someone is "
                f"already being found or on the way. No new ticket was opened; tell the "
                f"caller their ticket number {held[-1]} stands."))
        conn.execute(insert(t.escalations).values(
            ticket_id=ticket_id, session_id=session_id, reason=reason, name=name or None,
            phone=phone or None, urgent=int(urgent), status="pending",
            created_at=now_utc, expires_at=expires_at))
    return Ticket(ticket_id, session_id, reason, name, phone, urgent, "pending",
                  expires_at=expires_at)


def _on_duty(at: time) -> ColumnElement[bool]:
    """SQL condition: a staff member's shift covers ``at`` (00:00-00:00 is all day)."""
    c = t.staff.c
    return or_(and_(c.starts == c.ends),
               and_(c.starts < c.ends, c.starts <= at, at < c.ends),
               and_(c.starts > c.ends, or_(c.starts <= at, at < c.ends)))


def assign(engine: Engine, ticket_id: str, now: datetime | None = None,
           ttl_s: float = Quotas.escalation_ticket_ttl_s) -> Ticket:
    """Give a pending ticket to a free staff member on duty, or mark it unavailable.

    Free means on duty at ``now`` (local time) and holding no open ticket. An assigned
    ticket stays open ``ttl_s`` from now. A pending ticket already past its expiry (the
    check resumed after a long outage) is expired instead: nobody is taken for a caller
    long gone. Idempotent: a ticket already resolved is returned as it is.
    """
    now = now or utc_now()
    now_utc = as_utc(now)
    with engine.begin() as conn:
        _lock_desk(conn)  # two replicas' checks must not pick the same free person
        expire(conn, now_utc)
        row = conn.execute(select(t.escalations).where(
            t.escalations.c.ticket_id == ticket_id).with_for_update()).first()
        if row is None:
            raise KeyError(ticket_id)
        if row.status == "pending":
            busy = select(t.escalations.c.staff_id).where(and_(
                _is_open(now_utc), t.escalations.c.staff_id.is_not(None)))
            free = conn.execute(select(t.staff.c.id).where(and_(
                _on_duty(as_local(now).time()), t.staff.c.id.not_in(busy))).order_by(
                t.staff.c.id)).first()
            conn.execute(update(t.escalations).where(t.escalations.c.id == row.id).values(
                status="assigned" if free else "unavailable",
                staff_id=free.id if free else None, resolved_at=now_utc,
                expires_at=now_utc + timedelta(seconds=ttl_s) if free else row.expires_at))
    return get(engine, ticket_id)


def close_ticket(engine: Engine, ticket_id: str, now: datetime | None = None) -> Ticket:
    """Close an open ticket (the person is done with it), freeing its staff member.

    Idempotent: a ticket no longer open is returned as it is.
    """
    now_utc = as_utc(now or utc_now())
    with engine.begin() as conn:
        _lock_desk(conn)
        conn.execute(update(t.escalations).where(and_(
            t.escalations.c.ticket_id == ticket_id, _is_open(now_utc))).values(
            status="closed", closed_at=now_utc))
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
                  bool(row.urgent), row.status, row.staff_name or "", row.staff_role or "",
                  row.expires_at)


def pending(engine: Engine) -> list[Ticket]:
    """Tickets whose check has not finished (for resuming checks after a restart)."""
    with engine.connect() as conn:
        ids = list(conn.scalars(select(t.escalations.c.ticket_id).where(
            t.escalations.c.status == "pending")))
    return [get(engine, ticket_id) for ticket_id in ids]
