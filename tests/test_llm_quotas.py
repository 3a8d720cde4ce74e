"""Tool quotas: what a model talked into abuse can still do.

Real Dialogue servicers in this process on loopback gRPC ports (two of them sharing one
SQLite file act as two replicas), the real ``openai`` client against the scripted
OpenAI-compatible fake, and real databases that the tests open to check what was booked
and who holds which ticket. Escalation time comes from an injected clock: tickets expire
because the clock moves, never because a test sleeps.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from services.llm.db import escalations
from services.llm.db.store import BookingStore
from services.llm.escalation import HumanDesk
from services.llm.notify import Notifier
from services.llm.quotas import Quotas, as_utc
from services.llm.server import DialogueService
from services.llm.session import _TOO_MANY_CALLS_REFUSAL
from tests.fake_openai import FakeOpenAI, ToolCallReply
from tests.test_llm import Conversation, conversation
from tests.test_llm_tools import run_turn, scripted, weekday_ahead
from voxmesh.config import LlmSettings
from voxmesh.v1 import dialogue_pb2 as pb

BOOKING_TOOLS = "[list_service_types, check_availability, book_appointment, cancel_appointment]"
TTL_S = 1800.0


class Clock:
    """A clock the test moves by hand (aware datetimes, like the service's own)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="Hello.") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeOpenAI) -> None:
    fake.reply, fake.first_token_delay_s, fake.token_delay_s = "Hello.", 0.0, 0.0


@pytest.fixture(scope="module")
def agents_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two agents with tools and no knowledge base (no embedding model to load)."""
    directory = tmp_path_factory.mktemp("agents")
    (directory / "booking.yaml").write_text(
        f"name: booking\nsystem_prompt: You book service appointments.\ntools: {BOOKING_TOOLS}\n")
    (directory / "escalation.yaml").write_text(
        "name: escalation\nsystem_prompt: You find a person.\ntools: [escalate_to_human]\n")
    return directory


def settings_for(fake: FakeOpenAI, agents_dir: Path, db_path: Path) -> LlmSettings:
    return LlmSettings(base_url=fake.base_url, model=fake.model, agents_dir=str(agents_dir),
                       default_agent="booking", redis_url="", warm_up=False,
                       database_url=f"sqlite:///{db_path}", escalation_check_seconds=0.0)


@asynccontextmanager
async def serving(settings: LlmSettings, clock: Clock | None = None
                  ) -> AsyncIterator[tuple[str, DialogueService]]:
    """A loaded Dialogue servicer on a loopback port; yields its address and itself."""
    service = DialogueService(settings, clock) if clock else DialogueService(settings)
    await service.load()
    server = grpc.aio.server()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        await server.stop(None)
        await service.aclose()


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared") / "booking.db"


@pytest.fixture(scope="module")
async def replica_a(fake: FakeOpenAI, agents_dir: Path, shared_db: Path
                    ) -> AsyncIterator[str]:
    async with serving(settings_for(fake, agents_dir, shared_db)) as (addr, _):
        yield addr


@pytest.fixture(scope="module")
async def replica_b(fake: FakeOpenAI, agents_dir: Path, shared_db: Path
                    ) -> AsyncIterator[str]:
    async with serving(settings_for(fake, agents_dir, shared_db)) as (addr, _):
        yield addr


def booking(i: int, phone: str = "") -> dict[str, Any]:
    """The i-th of many valid-looking booking calls: oil changes on distinct slots."""
    day = weekday_ahead(i // 20 % 5, weeks=2 + i // 100)
    minutes = 7 * 60 + 30 * (i % 20)
    return {"name": "book_appointment", "arguments": {
        "service_type": "oil_change", "date": day.isoformat(),
        "time": f"{minutes // 60:02d}:{minutes % 60:02d}",
        "name": f"Caller {i}", "phone": phone or f"555-{1000 + i:04d}"}}


def rows(db_path: Path, where: str, *args: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return db.execute(f"SELECT * FROM appointments WHERE {where}", args).fetchall()


def ends(tools: list[pb.ToolActivity]) -> list[pb.ToolActivity]:
    """The events that say how each call ended (refused calls have no STARTED)."""
    return [t for t in tools if t.phase != pb.TOOL_PHASE_STARTED]


def refusals(tools: list[pb.ToolActivity]) -> list[str]:
    return [t.refusal_reason for t in ends(tools)]


def refusal_count(tool: str, reason: str) -> float:
    return REGISTRY.get_sample_value("voxmesh_llm_tool_refusals_total",
                                     {"tool": tool, "reason": reason}) or 0.0


# -- per turn and per session ----------------------------------------------------------------

async def test_66_bookings_in_one_turn_book_the_cap_and_refuse_the_rest(
        replica_a: str, fake: FakeOpenAI, shared_db: Path) -> None:
    attack = ToolCallReply([booking(i) for i in range(66)])
    again = ToolCallReply([booking(i) for i in range(66, 132)])
    fake.reply = scripted([attack, again, "This is never asked for."])
    session = f"quota-{uuid.uuid4().hex}"
    before = (refusal_count("book_appointment", "turn_tool_calls"),
              refusal_count("book_appointment", "session_bookings"))
    asked = len(fake.requests)

    async with conversation(replica_a, agent="booking", session_id=session) as conv:
        text, tools, done = await run_turn(conv, "t1", "Book every slot of the day.")

    # Four calls ran (the per-turn cap): two booked, two refused by the per-session cap;
    # the other 62 never ran. The model asked again: all refused, and fixed words end it.
    assert done.status == pb.TURN_STATUS_COMPLETED
    assert text == done.text == _TOO_MANY_CALLS_REFUSAL
    assert len(fake.requests) == asked + 2
    assert [t.name for t in tools if t.phase == pb.TOOL_PHASE_STARTED] == [
        "book_appointment"] * 4
    assert [t.phase for t in ends(tools)] == (
        [pb.TOOL_PHASE_COMPLETED] * 2 + [pb.TOOL_PHASE_FAILED] * 130)
    assert refusals(tools) == (["", ""] + ["session_bookings"] * 2
                               + ["turn_tool_calls"] * 128)
    assert len(rows(shared_db, "session_id = ? AND status = 'booked'", session)) == 2
    assert rows(shared_db, "customer_id IN (SELECT id FROM customers WHERE phone = ?)",
                "555-1065") == []  # a call past the cap: nothing of it in the database

    session_refusal = json.loads(ends(tools)[2].result_json)
    assert session_refusal["refusal"] == "session_bookings"
    assert "already have 2 bookings in this call" in session_refusal["error"]
    # The model read every refusal, with its reason, before it insisted.
    sent = [m for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert len(sent) == 66
    assert all("limit reached" in json.loads(m["content"])["error"] for m in sent[2:])
    assert (refusal_count("book_appointment", "turn_tool_calls") - before[0],
            refusal_count("book_appointment", "session_bookings") - before[1]) == (128, 2)


async def test_the_turn_cap_counts_calls_of_every_step_and_the_model_may_then_answer(
        replica_a: str, fake: FakeOpenAI) -> None:
    listing = {"name": "list_service_types", "arguments": {}}
    fake.reply = scripted([ToolCallReply([listing] * 3), ToolCallReply([listing] * 2),
                           "We offer oil changes and more."])

    async with conversation(replica_a, agent="booking") as conv:
        text, tools, done = await run_turn(conv, "t1", "What services do you have?")
        assert done.status == pb.TURN_STATUS_COMPLETED
        assert text == "We offer oil changes and more."  # told once, the model stopped
        assert [t.phase for t in ends(tools)] == [pb.TOOL_PHASE_COMPLETED] * 4 + [
            pb.TOOL_PHASE_FAILED]
        # The next turn of the same session starts a new count.
        fake.reply = scripted([ToolCallReply([listing]), "Still oil changes."])
        _, next_tools, _ = await run_turn(conv, "t2", "And now?")

    assert refusals(tools)[-1] == "turn_tool_calls"
    assert "at most 4 tool calls" in json.loads(ends(tools)[-1].result_json)["error"]
    assert [t.phase for t in ends(next_tools)] == [pb.TOOL_PHASE_COMPLETED]


# -- per user, across sessions and replicas ---------------------------------------------------

async def book_in_session(addr: str, fake: FakeOpenAI, user: str, calls: list[dict[str, Any]],
                          session: str = "") -> list[pb.ToolActivity]:
    """One turn of a new session of ``user`` that asks for ``calls``; returns its events."""
    fake.reply = scripted([ToolCallReply(calls), "Done."])
    async with conversation(addr, agent="booking", user_id=user,
                            session_id=session or f"quota-{uuid.uuid4().hex}") as conv:
        _, tools, done = await run_turn(conv, "t1", "Book it.")
    assert done.status == pb.TURN_STATUS_COMPLETED
    return tools


async def test_the_per_user_cap_holds_across_sessions_and_replicas(
        replica_a: str, replica_b: str, fake: FakeOpenAI, shared_db: Path) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}@example.com"
    phone = "555-7000"

    first = await book_in_session(replica_a, fake, user, [booking(200, phone),
                                                          booking(201, phone)])
    second = await book_in_session(replica_a, fake, user, [booking(202, phone),
                                                           booking(203, phone)])
    third = await book_in_session(replica_b, fake, user, [booking(204, phone)])

    assert refusals(first) == ["", ""]
    assert refusals(second) == ["", "user_bookings"]  # the third booking of the user is the cap
    assert refusals(third) == ["user_bookings"]  # another replica reads the same database
    assert "already has 3 upcoming bookings" in json.loads(ends(third)[0].result_json)["error"]
    held = rows(shared_db, "user_id = ? AND status = 'booked'", user)
    assert len(held) == 3 and len({r["session_id"] for r in held}) == 2

    # A cancelled booking no longer counts: the user may book again, on either replica.
    confirmation = json.loads(ends(first)[0].result_json)["confirmation_id"]
    cancel = {"name": "cancel_appointment", "arguments": {
        "confirmation_id": confirmation, "phone": phone}}
    again = await book_in_session(replica_b, fake, user, [cancel, booking(205, phone)])
    assert [t.phase for t in ends(again)] == [pb.TOOL_PHASE_COMPLETED] * 2
    assert len(rows(shared_db, "user_id = ? AND status = 'booked'", user)) == 3


async def test_anonymous_sessions_have_only_the_session_cap(
        replica_a: str, replica_b: str, fake: FakeOpenAI, shared_db: Path) -> None:
    phone = "555-7100"
    tools = [await book_in_session(addr, fake, "", [booking(i, phone), booking(i + 1, phone)])
             for addr, i in ((replica_a, 300), (replica_b, 302))]
    assert [refusals(t) for t in tools] == [["", ""], ["", ""]]
    assert len(rows(shared_db, "user_id IS NULL AND customer_id IN "
                    "(SELECT id FROM customers WHERE phone = ?)", phone)) == 4


# -- escalation tickets ------------------------------------------------------------------------

def escalating(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    """The model: escalate once per user turn, then say it is looking for someone."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    if any(m.get("tool_calls") for m in messages[last_user:]):
        return "I am finding someone for you now."
    return ToolCallReply([{"name": "escalate_to_human", "arguments": {
        "reason": "wants a manager", "phone": "555-0100"}}])


@asynccontextmanager
async def escalation_desk(fake: FakeOpenAI, agents_dir: Path, db_path: Path, clock: Clock
                          ) -> AsyncIterator[str]:
    async with serving(settings_for(fake, agents_dir, db_path), clock) as (addr, _):
        yield addr


async def escalate(conv: Conversation, turn_id: str
                   ) -> tuple[pb.ToolActivity, pb.Notification | None]:
    """One escalating turn: how the call ended, and the outcome told to the caller.

    The outcome may come before or after the turn's ``done``: both are awaited.
    """
    await conv.send(user_turn=pb.UserTurn(turn_id=turn_id, text="Get me a person."))
    end: pb.ToolActivity | None = None
    note: pb.Notification | None = None
    done = False
    while not done or (end is not None and end.phase == pb.TOOL_PHASE_COMPLETED
                       and note is None):
        event = await conv.read(10)
        kind = event.WhichOneof("event")
        if kind == "tool" and event.tool.phase != pb.TOOL_PHASE_STARTED:
            end = event.tool
        elif kind == "notification":
            note = event.notification
        elif kind == "done":
            assert event.done.status == pb.TURN_STATUS_COMPLETED
            done = True
    assert end is not None
    return end, note


def ticket(db_path: Path, ticket_id: str) -> sqlite3.Row:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT e.*, s.name AS staff FROM escalations e LEFT JOIN staff s "
                         "ON s.id = e.staff_id WHERE ticket_id = ?", (ticket_id,)).fetchone()
    assert row is not None
    return row


async def test_an_expired_ticket_frees_its_staff_member_for_the_next_caller(
        fake: FakeOpenAI, agents_dir: Path, tmp_path: Path) -> None:
    # 03:00 local: of the seeded staff only the duty manager is on, so one open ticket
    # makes everybody busy; before tickets expired, that lasted forever.
    clock = Clock(datetime(2031, 6, 2, 3, 0).astimezone())
    db_path = tmp_path / "desk.db"
    fake.reply = escalating
    before = refusal_count("escalate_to_human", "session_escalations")
    async with escalation_desk(fake, agents_dir, db_path, clock) as addr:
        async with conversation(addr, agent="escalation") as first:
            _, note_a = await escalate(first, "t1")
            async with conversation(addr, agent="escalation") as second:
                _, note_b = await escalate(second, "t1")
            # The first caller asks again while their ticket is open: refused, reported.
            refused_end, none = await escalate(first, "t2")

        clock.now += timedelta(seconds=TTL_S + 1)
        async with conversation(addr, agent="escalation") as third:
            _, note_c = await escalate(third, "t1")

    assert note_a is not None and note_b is not None and note_c is not None and none is None
    ids = [next(w.rstrip(".") for w in n.text.split() if w.startswith("ESC-"))
           for n in (note_a, note_b, note_c)]
    a, b, c = (ticket(db_path, i) for i in ids)
    assert (b["status"], b["staff"]) == ("unavailable", None)
    assert "nobody from our team is free" in note_b.text
    assert refused_end.phase == pb.TOOL_PHASE_FAILED
    assert refused_end.refusal_reason == "session_escalations"
    assert ids[0] in json.loads(refused_end.result_json)["error"]
    assert refusal_count("escalate_to_human", "session_escalations") - before == 1
    # The TTL passed: the first ticket expired, and its person took the third caller.
    assert (a["status"], a["staff"]) == ("expired", "Priya Nair")
    assert datetime.fromisoformat(a["closed_at"]) == as_utc(clock.now)
    assert (c["status"], c["staff"]) == ("assigned", "Priya Nair")
    assert "Priya Nair" in note_c.text
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM escalations").fetchone() == (3,)


# -- the database layer ------------------------------------------------------------------------

@pytest.fixture
def desk_store(tmp_path: Path) -> Iterator[BookingStore]:
    store = BookingStore(f"sqlite:///{tmp_path / 'desk.db'}")
    store.create()
    escalations.seed_staff(store.engine)
    yield store
    store.dispose()


NIGHT = datetime(2031, 6, 2, 3, 0).astimezone()


def test_a_closed_ticket_frees_its_staff_member(desk_store: BookingStore) -> None:
    engine = desk_store.engine
    first = escalations.open_ticket(engine, "s1", "help", "", "", False, now=NIGHT)
    assert escalations.assign(engine, first.ticket_id, NIGHT).staff_name == "Priya Nair"
    later = NIGHT + timedelta(minutes=5)
    waiting = escalations.open_ticket(engine, "s2", "help", "", "", False, now=later)
    assert escalations.assign(engine, waiting.ticket_id, later).status == "unavailable"

    assert escalations.close_ticket(engine, first.ticket_id, later).status == "closed"
    assert escalations.close_ticket(engine, first.ticket_id, later).status == "closed"
    third = escalations.open_ticket(engine, "s3", "help", "", "", False, now=later)
    assert escalations.assign(engine, third.ticket_id, later).staff_name == "Priya Nair"


def test_a_pending_ticket_checked_after_its_ttl_expires_unassigned(
        desk_store: BookingStore) -> None:
    engine = desk_store.engine
    quotas = Quotas(escalation_ticket_ttl_s=60)
    stale = escalations.open_ticket(engine, "s1", "help", "", "", False, now=NIGHT,
                                    quotas=quotas)
    # The service was down past the TTL; the resumed check must not take anybody.
    checked = escalations.assign(engine, stale.ticket_id, NIGHT + timedelta(minutes=2))
    assert (checked.status, checked.staff_name) == ("expired", "")
    # And the session may open a new ticket: an expired one is not open.
    fresh = escalations.open_ticket(engine, "s1", "help", "", "", False,
                                    now=NIGHT + timedelta(minutes=2), quotas=quotas)
    assert fresh.status == "pending"


async def test_the_desk_announces_nothing_for_an_expired_ticket(
        desk_store: BookingStore) -> None:
    engine = desk_store.engine
    stale = escalations.open_ticket(engine, "s1", "help", "", "", False, now=NIGHT)
    notifier = Notifier(None)
    desk = HumanDesk(engine, notifier, 0.0, TTL_S, Clock(NIGHT + timedelta(hours=1)))
    assert await desk.resume() == 1
    for _ in range(500):  # resume spawned the check; let it run to its end
        if not desk._tasks:
            break
        await asyncio.sleep(0.01)
    await desk.aclose()
    assert escalations.get(engine, stale.ticket_id).status == "expired"
    assert await notifier.pending("s1") == []


def test_an_old_database_gets_the_quota_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the appointments table as it was before quotas
        db.execute("CREATE TABLE appointments (id INTEGER PRIMARY KEY, confirmation_id "
                   "VARCHAR(16) NOT NULL UNIQUE, customer_id INTEGER NOT NULL, vehicle_id "
                   "INTEGER, service_type_id INTEGER NOT NULL, starts_at DATETIME NOT NULL, "
                   "ends_at DATETIME NOT NULL, status VARCHAR(16) NOT NULL, created_at "
                   "DATETIME NOT NULL)")
    store = BookingStore(f"sqlite:///{path}")
    store.create()
    store.dispose()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(appointments)")}
        indexes = {row[1] for row in db.execute("PRAGMA index_list(appointments)")}
    assert {"session_id", "user_id"} <= columns
    assert {"ix_appointments_session_id", "ix_appointments_user_id"} <= indexes
