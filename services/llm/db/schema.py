"""Tables of the booking database; portable SQL only, so one URL switches to PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    inspect,
)
from sqlalchemy import Table as _Table
from sqlalchemy.schema import CreateColumn

metadata = MetaData()

customers = _Table(
    "customers", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(32), nullable=False, unique=True),
)
vehicles = _Table(
    "vehicles", metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", ForeignKey("customers.id"), nullable=False),
    Column("make", String(100), nullable=False),
    Column("model", String(100), nullable=False),
    Column("year", Integer),
    Column("plate", String(32)),
)
service_types = _Table(
    "service_types", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(50), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("duration_minutes", Integer, nullable=False),
    Column("price_cents", Integer, nullable=False),
)
opening_hours = _Table(
    "opening_hours", metadata,
    Column("weekday", Integer, primary_key=True),  # 0 = Monday; a missing day is closed
    Column("opens", Time, nullable=False),
    Column("closes", Time, nullable=False),
)
appointments = _Table(
    "appointments", metadata,
    Column("id", Integer, primary_key=True),
    Column("confirmation_id", String(16), nullable=False, unique=True),
    Column("customer_id", ForeignKey("customers.id"), nullable=False),
    Column("vehicle_id", ForeignKey("vehicles.id")),
    Column("service_type_id", ForeignKey("service_types.id"), nullable=False),
    Column("starts_at", DateTime, nullable=False, index=True),
    Column("ends_at", DateTime, nullable=False),
    Column("status", String(16), nullable=False),  # booked | cancelled
    Column("created_at", DateTime, nullable=False),
    # Who booked it, for the per-session and per-user quotas (NULL: booked before quotas).
    Column("session_id", String(128), index=True),
    Column("user_id", String(128), index=True),
)
faq = _Table(
    "faq", metadata,
    Column("id", Integer, primary_key=True),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    UniqueConstraint("question"),
)
staff = _Table(
    "staff", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(100), nullable=False),
    Column("phone_extension", String(16), nullable=False),
    # On duty every day from starts to ends (local time); 00:00-00:00 means around the clock.
    Column("starts", Time, nullable=False),
    Column("ends", Time, nullable=False),
)
escalations = _Table(
    "escalations", metadata,
    Column("id", Integer, primary_key=True),
    Column("ticket_id", String(16), nullable=False, unique=True),
    Column("session_id", String(128), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("name", String(200)),
    Column("phone", String(32)),
    Column("urgent", Integer, nullable=False),  # 0 or 1: portable boolean
    # pending | assigned | unavailable | closed | expired; only pending and assigned are open.
    Column("status", String(16), nullable=False, index=True),
    Column("staff_id", ForeignKey("staff.id")),
    # Times in UTC, naive (portable); an open ticket past expires_at counts as expired
    # even before a sweep marks it (NULL: opened before expiry existed, so expired).
    Column("created_at", DateTime, nullable=False),
    Column("resolved_at", DateTime),
    Column("expires_at", DateTime),
    Column("closed_at", DateTime),
)


def add_missing_columns(conn: Connection) -> list[str]:
    """Add columns this schema has and an older database lacks; returns them as table.column.

    ``create_all`` makes missing tables only; the columns added since are all nullable, so
    ``ALTER TABLE ... ADD COLUMN`` (portable) is the whole migration.
    """
    added: list[str] = []
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        for column in missing:
            ddl = CreateColumn(column).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            added.append(f"{table.name}.{column.name}")
        names = {column.name for column in missing}
        for index in table.indexes:
            if names & {column.name for column in index.columns}:
                index.create(conn, checkfirst=True)
    return added
