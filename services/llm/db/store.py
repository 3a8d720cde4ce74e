"""The booking store: create and seed the schema, look up, book and cancel.

Every method blocks (SQLAlchemy Core is synchronous); callers run them through
``asyncio.to_thread``. Booking checks capacity and quotas and inserts in one transaction
that first locks the opening-hours rows, so replicas sharing one database never overbook
a slot nor let a session or user past its booking quota: PostgreSQL takes row locks
(``SELECT ... FOR UPDATE``, every weekday's row, in order: a caller's bookings on
different days must serialise too); SQLite, which ignores that clause, starts every
transaction with ``BEGIN IMMEDIATE`` (one writer at a time, others wait up to the busy
timeout instead of failing on a lock upgrade).
"""

from __future__ import annotations

import secrets
import threading
import time as time_module
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from services.llm.db import schema as t
from services.llm.db.availability import free_starts, overlapping
from services.llm.quotas import QuotaExceeded, Quotas, Refusal

SERVICE_TYPES = [
    ("oil_change", "Oil change", 30, 4900),
    ("tire_rotation", "Tire rotation", 30, 2900),
    ("brake_inspection", "Brake inspection", 60, 7900),
    ("annual_service", "Annual service", 120, 24900),
]
"""(code, name, duration_minutes, price_cents) seeded on start-up."""

OPENING_HOURS = {
    0: (time(7), time(18)), 1: (time(7), time(18)), 2: (time(7), time(18)),
    3: (time(7), time(18)), 4: (time(7), time(18)), 5: (time(8), time(14)),
}
"""Service department hours by weekday (0 = Monday); Sunday is closed."""


class BookingError(ValueError):
    """A booking request that cannot be honoured; the message is told to the model."""


@dataclass(frozen=True)
class Booker:
    """Who asks for a booking, and the quotas that apply to them.

    Attributes:
        session_id: The session booking; its bookings count against the session cap.
        user_id: The user booking; empty (anonymous) means only the session cap applies.
        quotas: The caps to enforce.
    """

    session_id: str
    user_id: str
    quotas: Quotas


@dataclass(frozen=True)
class ServiceType:
    """One bookable service."""

    id: int
    code: str
    name: str
    duration_minutes: int
    price_cents: int


def default_url(state_dir: str) -> str:
    """``sqlite:///<state_dir>/voxmesh.db``, creating the directory."""
    directory = Path(state_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'voxmesh.db'}"


SQLITE_BUSY_TIMEOUT_S = 15.0
"""How long a SQLite transaction waits for another process's write to finish."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``; on SQLite, transactions take the write lock when they begin."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own BEGIN is deferred; SQLAlchemy emits ours below instead.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class BookingStore:
    """The dealership's customers, services, hours and appointments."""

    def __init__(self, url: str, bays: int = 3) -> None:
        """Connect to ``url`` (tables are made by :meth:`create`)."""
        self.engine: Engine = make_engine(url)
        self.bays = bays
        self._lock = threading.Lock()

    def create(self) -> None:
        """Create missing tables and seed service types and hours (idempotent).

        Services starting together on one database may race; the loser retries once,
        then finds the winner's tables and rows.
        """
        try:
            self._create()
        except DBAPIError:
            time_module.sleep(0.2)
            self._create()

    def _create(self) -> None:
        t.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            t.add_missing_columns(conn)
            known = set(conn.scalars(select(t.service_types.c.code)))
            rows = [dict(code=c, name=n, duration_minutes=d, price_cents=p)
                    for c, n, d, p in SERVICE_TYPES if c not in known]
            if rows:
                conn.execute(insert(t.service_types), rows)
            days = set(conn.scalars(select(t.opening_hours.c.weekday)))
            hours = [dict(weekday=w, opens=o, closes=c)
                     for w, (o, c) in OPENING_HOURS.items() if w not in days]
            if hours:
                conn.execute(insert(t.opening_hours), hours)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def service_types(self) -> list[ServiceType]:
        """All bookable services, by code."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.service_types).order_by(t.service_types.c.code))
            return [ServiceType(r.id, r.code, r.name, r.duration_minutes, r.price_cents)
                    for r in rows]

    def service_type(self, code: str) -> ServiceType:
        """The service with ``code``.

        Raises:
            BookingError: no such service (the message lists the known codes).
        """
        services = self.service_types()
        for service in services:
            if service.code == code:
                return service
        known = ", ".join(s.code for s in services)
        raise BookingError(f"service_type: unknown service {code!r} (known: {known})")

    def free_starts(self, code: str, day: date, now: datetime | None = None) -> list[time]:
        """Free start times of service ``code`` on ``day``."""
        service = self.service_type(code)
        with self.engine.connect() as conn:
            return free_starts(day, self._hours(conn, day), service.duration_minutes,
                               self._booked(conn, day), self.bays, now)

    def book(self, code: str, starts_at: datetime, name: str, phone: str,
             now: datetime | None = None, booker: Booker | None = None) -> dict[str, Any]:
        """Book service ``code`` at ``starts_at`` for the customer with ``phone``.

        The customer is found by phone or created. Returns the confirmation. With
        ``booker``, the booking is recorded as theirs and refused past their quotas;
        without, no quota applies (the caller is trusted code, not a model).

        Raises:
            BookingError: closed then, outside hours, or all bays taken.
            QuotaExceeded: ``booker`` already holds as many bookings as allowed.
        """
        service = self.service_type(code)
        ends_at = starts_at + timedelta(minutes=service.duration_minutes)
        now = now or datetime.now()
        if starts_at <= now:
            raise BookingError(f"date/time: {starts_at:%Y-%m-%d %H:%M} is in the past")
        with self._lock, self.engine.begin() as conn:
            self._lock_bookings(conn)
            if booker is not None:
                self._check_quotas(conn, booker, now)
            hours = self._hours(conn, starts_at.date())
            if hours is None:
                raise BookingError(f"date: the service department is closed on "
                                   f"{starts_at:%A %Y-%m-%d}")
            if starts_at.time() < hours[0] or ends_at.time() > hours[1] or (
                    ends_at.date() != starts_at.date()):
                raise BookingError(
                    f"time: {service.name} takes {service.duration_minutes} minutes and must fit "
                    f"in opening hours {hours[0]:%H:%M}-{hours[1]:%H:%M}")
            if overlapping(starts_at, ends_at, self._booked(conn, starts_at.date())) >= self.bays:
                raise BookingError(f"time: {starts_at:%Y-%m-%d %H:%M} is fully booked "
                                   f"(all {self.bays} bays taken); offer another time")
            customer_id = self._customer(conn, name, phone)
            confirmation = "MM-" + secrets.token_hex(3).upper()
            conn.execute(insert(t.appointments).values(
                confirmation_id=confirmation, customer_id=customer_id,
                service_type_id=service.id, starts_at=starts_at, ends_at=ends_at,
                status="booked", created_at=now,
                session_id=booker.session_id if booker else None,
                user_id=(booker.user_id or None) if booker else None))
        return {"confirmation_id": confirmation, "service_type": service.code,
                "service_name": service.name, "date": starts_at.date().isoformat(),
                "time": starts_at.strftime("%H:%M"), "ends": ends_at.strftime("%H:%M"),
                "name": name, "phone": phone, "price_cents": service.price_cents}

    def cancel(self, confirmation_id: str, phone: str) -> dict[str, Any]:
        """Cancel a booked appointment, if ``phone`` is its customer's.

        Raises:
            BookingError: unknown confirmation id, other phone, or already cancelled.
        """
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(
                select(t.appointments.c.id, t.appointments.c.status, t.customers.c.phone,
                       t.appointments.c.starts_at)
                .join(t.customers, t.customers.c.id == t.appointments.c.customer_id)
                .where(t.appointments.c.confirmation_id == confirmation_id)).first()
            if row is None or row.phone != phone:
                raise BookingError("confirmation_id: no appointment with this confirmation id "
                                   "for this phone number")
            if row.status != "booked":
                raise BookingError("confirmation_id: this appointment is already cancelled")
            conn.execute(update(t.appointments).where(t.appointments.c.id == row.id)
                         .values(status="cancelled"))
        return {"confirmation_id": confirmation_id, "status": "cancelled",
                "starts_at": row.starts_at.isoformat(timespec="minutes")}

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _lock_bookings(conn: Connection) -> None:
        """Serialise bookings across replicas: lock every opening-hours row, in order.

        Quotas span days, so locking only the booked day's row would let one caller's
        bookings of two days race past a cap; the fixed order rules out deadlocks.
        """
        conn.execute(select(t.opening_hours.c.weekday).order_by(
            t.opening_hours.c.weekday).with_for_update()).all()

    @staticmethod
    def _check_quotas(conn: Connection, booker: Booker, now: datetime) -> None:
        """Refuse a booking past ``booker``'s caps (under the booking lock)."""
        a = t.appointments.c
        booked = select(func.count()).select_from(t.appointments).where(a.status == "booked")
        quotas = booker.quotas
        in_session = int(conn.scalar(booked.where(a.session_id == booker.session_id)) or 0)
        if in_session >= quotas.max_bookings_per_session:
            raise QuotaExceeded(Refusal.SESSION_BOOKINGS, (
                f"limit reached: you already have {in_session} bookings in this call; that "
                f"is the limit per call. Nothing was booked; the caller may change or cancel "
                f"one of them instead."))
        if not booker.user_id:
            return  # anonymous: nothing ties its sessions together
        upcoming = int(conn.scalar(booked.where(
            and_(a.user_id == booker.user_id, a.starts_at > now))) or 0)
        if upcoming >= quotas.max_bookings_per_user:
            raise QuotaExceeded(Refusal.USER_BOOKINGS, (
                f"limit reached: this caller already has {upcoming} upcoming bookings; that "
                f"is the limit per customer. Nothing was booked; they may cancel one first."))

    @staticmethod
    def _hours(conn: Connection, day: date) -> tuple[time, time] | None:
        """Opening hours of ``day``, or None when closed."""
        row = conn.execute(select(t.opening_hours.c.opens, t.opening_hours.c.closes).where(
            t.opening_hours.c.weekday == day.weekday())).first()
        return None if row is None else (row.opens, row.closes)

    @staticmethod
    def _booked(conn: Connection, day: date) -> list[tuple[datetime, datetime]]:
        start = datetime.combine(day, time())
        rows = conn.execute(select(t.appointments.c.starts_at, t.appointments.c.ends_at).where(
            and_(t.appointments.c.status == "booked", t.appointments.c.starts_at < start
                 + timedelta(days=1), t.appointments.c.ends_at > start)))
        return [(r.starts_at, r.ends_at) for r in rows]

    @staticmethod
    def _customer(conn: Connection, name: str, phone: str) -> int:
        found = conn.scalar(select(t.customers.c.id).where(t.customers.c.phone == phone))
        if found is not None:
            return int(found)
        new_id = conn.execute(insert(t.customers).values(name=name, phone=phone)
                              ).inserted_primary_key
        assert new_id is not None
        return int(new_id[0])


def count(store: BookingStore) -> int:
    """Booked appointments in the store (for tests and health pages)."""
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(t.appointments).where(
            t.appointments.c.status == "booked")) or 0)
