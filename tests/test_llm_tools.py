"""Tool calling in the dialogue service: a real process, the real ``openai`` client, the
scripted OpenAI-compatible fake speaking the streaming tool-call protocol, and a real
SQLite booking database that the tests open to check what was booked.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.llm.agents import AgentError, load_agent
from services.llm.db.availability import free_starts
from services.llm.db.store import BookingError, BookingStore, count
from tests.conftest import StackFactory
from tests.fake_openai import FakeOpenAI, ToolCallReply
from tests.test_llm import Conversation, conversation
from voxmesh.launcher import Stack
from voxmesh.v1 import dialogue_pb2 as pb

Script = list[str | ToolCallReply]


def weekday_ahead(weekday: int, weeks: int = 1) -> date:
    """A day of ``weekday`` (0 = Monday) at least ``weeks`` weeks from today."""
    day = date.today() + timedelta(weeks=weeks)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def scripted(steps: Script) -> Any:
    """A reply function: step n answers the n-th model call of the current user turn."""
    def reply(messages: list[dict[str, Any]]) -> str | ToolCallReply:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        n = sum(1 for m in messages[last_user:] if m.get("tool_calls"))
        return steps[min(n, len(steps) - 1)]
    return reply


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="Hello.") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fake(fake: FakeOpenAI) -> None:
    fake.reply, fake.first_token_delay_s, fake.token_delay_s = "Hello.", 0.05, 0.005


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("db") / "booking.db"


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, fake: FakeOpenAI, db_path: Path) -> Stack:
    # The bays, not the quotas (tests/test_llm_quotas.py), are what these tests fill.
    return stack_factory(services=("llm",), llm_base_url=fake.base_url,
                         extra_env={"VOXMESH_LLM_DATABASE_URL": f"sqlite:///{db_path}",
                                    "VOXMESH_LLM_MAX_BOOKINGS_PER_SESSION": "10"})


async def run_turn(conv: Conversation, turn_id: str, text: str
                   ) -> tuple[str, list[pb.ToolActivity], pb.TurnComplete]:
    await conv.send(user_turn=pb.UserTurn(turn_id=turn_id, text=text))
    return await rest_of_turn(conv)


def appointments(db_path: Path, phone: str) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT s.code, a.starts_at, c.phone, a.status FROM appointments a "
            "JOIN customers c ON c.id = a.customer_id "
            "JOIN service_types s ON s.id = a.service_type_id WHERE c.phone = ?",
            (phone,)).fetchall()


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


async def test_a_scripted_booking_dialogue_books_a_row(
        stack: Stack, fake: FakeOpenAI, db_path: Path) -> None:
    day = weekday_ahead(0).isoformat()
    availability = ToolCallReply([{"name": "check_availability",
                                   "arguments": {"service_type": "oil_change", "date": day}}])
    booking = {"service_type": "oil_change", "date": day, "time": "09:00",
               "name": "Ada Lovelace", "phone": "555-0100"}
    book = ToolCallReply([{"name": "book_appointment", "arguments": booking}])
    fake.reply = scripted([availability, book, "You are booked for an oil change."])

    async with conversation(stack.addr("llm"), agent="booking") as conv:
        text, tools, done = await run_turn(conv, "t1", "Oil change next Monday at nine.")

    assert done.status == pb.TURN_STATUS_COMPLETED, done.error_message
    assert text == "You are booked for an oil change."
    phases = [(t.name, t.phase) for t in tools]
    assert phases == [("check_availability", pb.TOOL_PHASE_STARTED),
                      ("check_availability", pb.TOOL_PHASE_COMPLETED),
                      ("book_appointment", pb.TOOL_PHASE_STARTED),
                      ("book_appointment", pb.TOOL_PHASE_COMPLETED)]
    assert tools[0].call_id == availability.call_ids[0] == tools[1].call_id
    assert json.loads(tools[2].arguments_json) == booking
    assert "09:00" in json.loads(tools[1].result_json)["free_start_times"]
    confirmation = json.loads(tools[3].result_json)["confirmation_id"]
    assert confirmation.startswith("MM-")
    assert appointments(db_path, "555-0100") == [
        ("oil_change", f"{day} 09:00:00.000000", "555-0100", "booked")]
    # The model got the assistant tool_calls message and the result of each call.
    last = fake.requests[-1]
    assert [m["tool_call_id"] for m in tool_messages(last)] == [
        availability.call_ids[0], book.call_ids[0]]
    assert confirmation in tool_messages(last)[-1]["content"]
    assert last["tools"] and {t["function"]["name"] for t in last["tools"]} >= {
        "book_appointment", "check_availability"}


async def test_booking_beyond_the_bays_is_refused_to_the_model(
        stack: Stack, fake: FakeOpenAI, db_path: Path) -> None:
    day = weekday_ahead(1).isoformat()
    calls = [{"name": "book_appointment", "arguments": {
        "service_type": "brake_inspection", "date": day, "time": "10:00",
        "name": f"Driver {i}", "phone": f"555-020{i}"}} for i in range(4)]
    fake.reply = scripted([ToolCallReply(calls), "Three booked, one slot was full."])

    async with conversation(stack.addr("llm"), agent="booking") as conv:
        _, tools, done = await run_turn(conv, "t1", "Book four brake inspections.")

    assert done.status == pb.TURN_STATUS_COMPLETED
    ends = [t for t in tools if t.phase != pb.TOOL_PHASE_STARTED]
    assert [t.phase for t in ends] == [pb.TOOL_PHASE_COMPLETED] * 3 + [pb.TOOL_PHASE_FAILED]
    error = json.loads(ends[3].result_json)["error"]
    assert "fully booked" in error and "3 bays" in error
    assert appointments(db_path, "555-0203") == []
    assert len(appointments(db_path, "555-0202")) == 1
    sent = tool_messages(fake.requests[-1])
    assert len(sent) == 4 and "fully booked" in sent[3]["content"]


async def test_invalid_arguments_fail_the_call_and_reach_the_model(
        stack: Stack, fake: FakeOpenAI, db_path: Path) -> None:
    bad = {"service_type": "oil_change", "date": "yesterday", "time": "09:00",
           "name": "Bad Args", "phone": "abc"}
    fake.reply = scripted([ToolCallReply([{"name": "book_appointment", "arguments": bad}]),
                           "Could you give me the date and your phone number again?"])

    async with conversation(stack.addr("llm"), agent="booking") as conv:
        text, tools, done = await run_turn(conv, "t1", "Book me yesterday, phone abc.")

    assert done.status == pb.TURN_STATUS_COMPLETED and text.startswith("Could you")
    assert [t.phase for t in tools] == [pb.TOOL_PHASE_STARTED, pb.TOOL_PHASE_FAILED]
    error = json.loads(tools[1].result_json)["error"]
    assert "date:" in error and "phone:" in error
    sent = tool_messages(fake.requests[-1])
    assert json.loads(sent[-1]["content"])["error"] == error
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM customers WHERE name = 'Bad Args'"
                          ).fetchone() == (0,)


async def test_exceeding_max_tool_steps_fails_the_turn(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = ToolCallReply([{"name": "list_service_types", "arguments": {}}])

    async with conversation(stack.addr("llm"), agent="booking") as conv:
        text, tools, done = await run_turn(conv, "t1", "What services do you have?")

    assert done.status == pb.TURN_STATUS_FAILED
    assert "VOXMESH_LLM_MAX_TOOL_STEPS=4" in done.error_message
    assert text.startswith("Sorry") and done.text == text
    assert [t.phase for t in tools].count(pb.TOOL_PHASE_COMPLETED) == 4


async def test_a_cancelled_tool_call_turn_never_runs_the_tool(
        stack: Stack, fake: FakeOpenAI, db_path: Path) -> None:
    args = {"service_type": "oil_change", "date": weekday_ahead(2).isoformat(),
            "time": "11:00", "name": "Never Booked", "phone": "555-0999"}
    fake.reply = ToolCallReply([{"name": "book_appointment", "arguments": args}])
    # Argument fragments 2 s apart: the call cannot complete before the cancel below.
    fake.first_token_delay_s, fake.token_delay_s = 0.3, 2.0
    closed_before = fake.closed_early

    async with conversation(stack.addr("llm"), agent="booking") as conv:
        await conv.send(user_turn=pb.UserTurn(turn_id="t1", text="Book it."))
        await asyncio.sleep(0.5)  # the call's id and name are out, its arguments are not
        await conv.send(cancel=pb.CancelTurn(turn_id="t1"))
        events = []
        while (event := await conv.read()).WhichOneof("event") != "done":
            events.append(event.WhichOneof("event"))

    assert event.done.status == pb.TURN_STATUS_CANCELLED
    assert "tool" not in events
    clock = asyncio.get_running_loop().time
    deadline = clock() + 5  # the fake notices the disconnect on its next write
    while fake.closed_early == closed_before and clock() < deadline:
        await asyncio.sleep(0.05)
    assert fake.closed_early > closed_before
    assert appointments(db_path, "555-0999") == []


# -- units ---------------------------------------------------------------------------------

MONDAY = date(2031, 6, 2)
HOURS = (time(7), time(18))


def at(hour: int, minute: int = 0) -> datetime:
    return datetime.combine(MONDAY, time(hour, minute))


def test_free_starts_fit_the_service_in_opening_hours() -> None:
    starts = free_starts(MONDAY, HOURS, 120, [], bays=3)
    assert starts[0] == time(7) and starts[-1] == time(16)
    assert len(starts) == 19  # every half hour from 7:00 to 16:00
    assert free_starts(MONDAY, None, 30, [], bays=3) == []


def test_free_starts_respect_the_bays_and_now() -> None:
    booked = [(at(9), at(10))] * 3
    starts = free_starts(MONDAY, HOURS, 60, booked, bays=3)
    assert time(8, 30) not in starts and time(9, 30) not in starts
    assert time(8) in starts and time(10) in starts
    assert time(9) in free_starts(MONDAY, HOURS, 60, booked[:2], bays=3)
    assert free_starts(MONDAY, HOURS, 30, [], bays=3, now=at(17))[0] == time(17, 30)


def test_store_seeds_once_books_and_cancels(tmp_path: Path) -> None:
    store = BookingStore(f"sqlite:///{tmp_path / 'db.sqlite'}", bays=1)
    store.create()
    store.create()
    assert len(store.service_types()) == 4
    now = datetime(2031, 1, 1)
    first = store.book("oil_change", at(9), "Ada", "555-0100", now=now)
    with pytest.raises(BookingError, match="fully booked"):
        store.book("oil_change", at(9), "Bob", "555-0101", now=now)
    with pytest.raises(BookingError, match="closed"):
        store.book("oil_change", at(9) + timedelta(days=6), "Bob", "555-0101", now=now)
    with pytest.raises(BookingError, match="opening hours"):
        store.book("annual_service", at(17), "Bob", "555-0101", now=now)
    with pytest.raises(BookingError, match="confirmation_id"):
        store.cancel(first["confirmation_id"], "555-0101")
    assert store.cancel(first["confirmation_id"], "555-0100")["status"] == "cancelled"
    assert count(store) == 0
    assert time(9) in store.free_starts("oil_change", MONDAY)
    store.dispose()


def test_an_unknown_tool_fails_the_agent_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nsystem_prompt: hi\ntools: [book_appointment, teleport]\n")
    with pytest.raises(AgentError, match=r"bad\.yaml.*field 'tools'.*teleport"):
        load_agent(path)


async def test_a_speculative_turn_runs_no_tool_until_committed(
        stack: Stack, fake: FakeOpenAI, db_path: Path) -> None:
    day = weekday_ahead(2).isoformat()
    booking = {"service_type": "tire_rotation", "date": day, "time": "11:00",
               "name": "Eager Ed", "phone": "555-0311"}
    fake.reply = scripted([ToolCallReply([{"name": "book_appointment", "arguments": booking}]),
                           "Booked."])
    async with conversation(stack.addr("llm"), agent="booking") as conv:
        asked = len(fake.requests)
        await conv.send(user_turn=pb.UserTurn(turn_id="t1", text="Tires Wednesday at eleven.",
                                              speculative=True))
        await until(lambda: len(fake.requests) > asked)  # the model asked for the tool
        await asyncio.sleep(0.5)  # ample for a tool that would run; none may
        assert appointments(db_path, "555-0311") == []
        assert len(fake.requests) == asked + 1  # and the loop waits: no second model call
        await conv.send(commit=pb.CommitTurn(turn_id="t1"))
        text, tools, done = await rest_of_turn(conv)

    assert done.status == pb.TURN_STATUS_COMPLETED and text == "Booked."
    assert [t.phase for t in tools] == [pb.TOOL_PHASE_STARTED, pb.TOOL_PHASE_COMPLETED]
    assert len(appointments(db_path, "555-0311")) == 1


async def test_a_discarded_speculative_turn_leaves_no_trace(
        stack: Stack, fake: FakeOpenAI, db_path: Path) -> None:
    day = weekday_ahead(3).isoformat()
    booking = {"service_type": "oil_change", "date": day, "time": "15:00",
               "name": "Eager Eve", "phone": "555-0312"}
    fake.reply = scripted([ToolCallReply([{"name": "book_appointment", "arguments": booking}]),
                           "Booked."])
    async with conversation(stack.addr("llm"), agent="booking") as conv:
        asked = len(fake.requests)
        await conv.send(user_turn=pb.UserTurn(turn_id="t1", text="Oil change Thursday at",
                                              speculative=True))
        await until(lambda: len(fake.requests) > asked)  # its tool call is pending
        await conv.send(cancel=pb.CancelTurn(turn_id="t1", discard=True))
        _, tools, done = await rest_of_turn(conv)
        assert done.status == pb.TURN_STATUS_CANCELLED and tools == []
        fake.reply = "Which time on Thursday?"
        text, _, _ = await run_turn(conv, "t1", "Oil change Thursday at three, I mean.")

    assert text == "Which time on Thursday?"
    assert appointments(db_path, "555-0312") == []
    users = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] == "user"]
    assert users == ["Oil change Thursday at three, I mean."]  # the withdrawn words are gone


async def rest_of_turn(conv: Conversation
                       ) -> tuple[str, list[pb.ToolActivity], pb.TurnComplete]:
    """Text, tool events and completion of the turn under way."""
    deltas: list[str] = []
    tools: list[pb.ToolActivity] = []
    while True:
        event = await conv.read()
        kind = event.WhichOneof("event")
        if kind == "delta":
            deltas.append(event.delta.delta)
        elif kind == "tool":
            tools.append(event.tool)
        elif kind == "done":
            return "".join(deltas), tools, event.done


async def until(condition: Any, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")
