"""Booking tools of the dealership's service department."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.llm.db.store import Booker, BookingError, BookingStore
from services.llm.quotas import as_local
from services.llm.tools.base import Tool, ToolContext

_PHONE_CHARS = re.compile(r"^\+?[0-9 ()./-]+$")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(_Args):
    """No arguments."""


class AvailabilityArgs(_Args):
    """Arguments of check_availability."""

    service_type: str = Field(description="Service code from list_service_types.")
    date: dt.date = Field(description="Day asked for, YYYY-MM-DD.")


def check_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if not _PHONE_CHARS.match(value) or not 7 <= len(digits) <= 15:
        raise ValueError("must be a phone number of 7 to 15 digits")
    return value.strip()


class BookArgs(AvailabilityArgs):
    """Arguments of book_appointment."""

    time: dt.time = Field(description="Start time, HH:MM, 24-hour clock.")
    name: str = Field(min_length=1, max_length=200, description="Customer's full name.")
    phone: str = Field(description="Customer's phone number.")

    _phone = field_validator("phone")(check_phone)


class CancelArgs(_Args):
    """Arguments of cancel_appointment."""

    confirmation_id: str = Field(min_length=1, description="Confirmation id of the booking.")
    phone: str = Field(description="Phone number the booking was made with.")

    _phone = field_validator("phone")(check_phone)


def _not_past(day: dt.date, now: dt.datetime) -> None:
    if day < now.date():
        raise BookingError(f"date: {day.isoformat()} is in the past")


def list_service_types(store: BookingStore, _: NoArgs, _ctx: ToolContext) -> dict[str, Any]:
    """Services with their code, duration and price."""
    return {"service_types": [
        {"code": s.code, "name": s.name, "duration_minutes": s.duration_minutes,
         "price": f"{s.price_cents / 100:.2f}"} for s in store.service_types()]}


def check_availability(store: BookingStore, args: AvailabilityArgs,
                       ctx: ToolContext) -> dict[str, Any]:
    """Free start times of a service on a day."""
    now = as_local(ctx.now())  # the dealership's wall clock
    _not_past(args.date, now)
    starts = store.free_starts(args.service_type, args.date, now=now)
    return {"service_type": args.service_type, "date": args.date.isoformat(),
            "free_start_times": [s.strftime("%H:%M") for s in starts]}


def book_appointment(store: BookingStore, args: BookArgs, ctx: ToolContext) -> dict[str, Any]:
    """Book a service for the conversation's session and user, within their quotas."""
    now = as_local(ctx.now())
    _not_past(args.date, now)
    return store.book(args.service_type, dt.datetime.combine(args.date, args.time),
                      args.name.strip(), args.phone, now=now,
                      booker=Booker(ctx.session_id, ctx.user_id, ctx.quotas))


def cancel_appointment(store: BookingStore, args: CancelArgs, _ctx: ToolContext) -> dict[str, Any]:
    """Cancel a booking by confirmation id and phone."""
    return store.cancel(args.confirmation_id.strip(), args.phone)


BOOKING_TOOLS = [
    Tool("list_service_types", "List the service types that can be booked, with code, "
         "duration and price.", NoArgs, list_service_types),
    Tool("check_availability", "Free start times of a service type on a date, within the "
         "service department's opening hours.", AvailabilityArgs, check_availability),
    Tool("book_appointment", "Book a service appointment; returns a confirmation id.",
         BookArgs, book_appointment),
    Tool("cancel_appointment", "Cancel a booked appointment by its confirmation id and the "
         "customer's phone number.", CancelArgs, cancel_appointment),
]
