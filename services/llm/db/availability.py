"""Free start times of a day: pure logic, no database, so it is unit-tested directly."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

SLOT_MINUTES = 30
"""Appointments start on the hour or the half hour."""


def overlapping(start: datetime, end: datetime,
                booked: Iterable[tuple[datetime, datetime]]) -> int:
    """How many of the ``booked`` (start, end) intervals overlap ``[start, end)``."""
    return sum(1 for b_start, b_end in booked if b_start < end and start < b_end)


def free_starts(day: date, hours: tuple[time, time] | None, duration_minutes: int,
                booked: list[tuple[datetime, datetime]], bays: int,
                now: datetime | None = None) -> list[time]:
    """Start times on ``day`` at which a service of ``duration_minutes`` fits.

    Args:
        day: The day asked for.
        hours: (opens, closes) of that day, or None when closed.
        duration_minutes: Length of the service; it must end by closing time.
        booked: (start, end) of the booked appointments of that day.
        bays: How many appointments may overlap at any moment.
        now: Starts before this are not offered (default: none excluded).
    """
    if hours is None:
        return []
    opens, closes = (datetime.combine(day, t) for t in hours)
    length = timedelta(minutes=duration_minutes)
    out: list[time] = []
    start = opens
    while start + length <= closes:
        if (now is None or start > now) and overlapping(start, start + length, booked) < bays:
            out.append(start.time())
        start += timedelta(minutes=SLOT_MINUTES)
    return out
