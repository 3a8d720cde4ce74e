"""Agent routing: the router agent classifies each turn and hands the session over.

A real dialogue service process with the real embedding model (routing is semantic),
real Redis, and the scripted OpenAI-compatible fake for replies. The fake also answers
classification requests (recognised by their system prompt) with JSON, which must never
be asked for: the model tie-breaker is off by default (it is tested in process, in
tests/test_llm_semantic_routing.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.llm.agents import AgentError, load_agent, load_agents
from services.llm.router import CLASSIFIER_HEADER, parse_answer
from tests.conftest import StackFactory
from tests.fake_openai import FakeOpenAI
from tests.test_llm import Conversation, conversation
from voxmesh.launcher import Stack
from voxmesh.v1 import dialogue_pb2 as pb

AGENTS = Path(__file__).resolve().parents[1] / "agents"
ANSWER = "Sure, let me help with that."


def classifier(answer: str) -> Callable[[list[dict[str, Any]]], str]:
    """A scripted reply: ``answer`` to classification requests, ANSWER to the rest."""
    def reply(messages: list[dict[str, Any]]) -> str:
        if str(messages[0].get("content", "")).startswith(CLASSIFIER_HEADER):
            return answer
        return ANSWER
    return reply


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=ANSWER, first_token_delay_s=0.01, token_delay_s=0.0) as server:
        yield server


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, fake: FakeOpenAI) -> Stack:
    return stack_factory(services=("llm",), llm_base_url=fake.base_url)


async def events_of_turn(conv: Conversation, turn_id: str, text: str) -> list[pb.ConverseResponse]:
    """Send a turn; every event up to and including its ``done``."""
    await conv.send(user_turn=pb.UserTurn(turn_id=turn_id, text=text))
    events = []
    while True:
        event = await conv.read()
        events.append(event)
        if event.WhichOneof("event") == "done":
            return events


def reply_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [body for body in fake.requests if body.get("stream")]


def classify_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [body for body in fake.requests if not body.get("stream")
            and body["messages"][0]["content"].startswith(CLASSIFIER_HEADER)]


async def test_a_booking_request_hands_off_to_booking_before_the_reply(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = classifier('{"intent": "faq", "confidence": 0.99}')  # never asked
    booking = load_agent(AGENTS / "booking.yaml")
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "I'd like to book an oil change.")
    kinds = [e.WhichOneof("event") for e in events]

    assert conv.ready.agent == "router"
    assert kinds[0] == "handoff" and kinds.count("handoff") == 1 and "delta" in kinds
    handoff = events[0].handoff
    assert (handoff.turn_id, handoff.from_agent, handoff.to_agent) == ("t1", "router", "booking")
    assert (handoff.voice, handoff.speed) == (booking.voice, pytest.approx(booking.speed))
    assert (handoff.intent, handoff.method) == ("booking", pb.ROUTE_METHOD_SEMANTIC)
    assert 0.5 <= handoff.confidence <= 1.0
    assert handoff.reason == f"intent booking (semantic, confidence {handoff.confidence:.2f})"
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED and events[-1].done.text == ANSWER
    last = reply_requests(fake)[-1]
    assert last["messages"][0]["content"].startswith("You are the service desk of Maple Motors")
    assert last["messages"][-1]["content"] == "I'd like to book an oil change."
    assert {t["function"]["name"] for t in last.get("tools", [])} >= {"book_appointment"}
    assert classify_requests(fake) == []


async def test_a_faq_question_routes_to_the_information_desk(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = ANSWER
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "What is your address?")

    assert events[0].handoff.to_agent == "faq"
    assert (events[0].handoff.intent, events[0].handoff.method) == (
        "faq", pb.ROUTE_METHOD_SEMANTIC)
    # Only the information desk retrieves from the knowledge base.
    retrievals = [e.retrieval for e in events if e.WhichOneof("event") == "retrieval"]
    assert [r.knowledge_base for r in retrievals] == ["maple_motors"]
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED


async def test_the_current_agents_own_intent_does_not_hand_off(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = classifier('{"intent": "booking", "confidence": 0.99}')  # never asked
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "Hi there!")

    assert [e.WhichOneof("event") for e in events if e.WhichOneof("event") == "handoff"] == []
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED
    assert reply_requests(fake)[-1]["messages"][0]["content"].startswith(
        "You are the front door of Maple Motors")


async def test_a_resumed_session_stays_with_the_agent_it_was_handed_to(
        stack: Stack, fake: FakeOpenAI) -> None:
    session = f"route-{uuid.uuid4().hex}"
    fake.reply = ANSWER
    async with conversation(stack.addr("llm"), agent="router", session_id=session) as conv:
        first = await events_of_turn(conv, "t1", "Book me an oil change please.")

    async with conversation(stack.addr("llm"), agent="router", session_id=session) as conv:
        events = await events_of_turn(conv, "t2", "Tomorrow at nine.")
    body = reply_requests(fake)[-1]

    assert first[0].handoff.to_agent == "booking"
    assert conv.ready.agent == "booking"
    # Still classified by the router's routes; not clearly another desk, so no handoff.
    assert "handoff" not in [e.WhichOneof("event") for e in events]
    assert body["messages"][0]["content"].startswith("You are the service desk")
    assert [m["content"] for m in body["messages"] if m["role"] == "user"] == [
        "Book me an oil change please.", "Tomorrow at nine."]


def test_a_route_to_an_unknown_agent_fails_naming_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "front.yaml").write_text(
        "name: front\nsystem_prompt: Hi.\nroutes:\n"
        "  - {intent: faq, agent: front}\n  - {intent: sales, agent: nobody}\n")
    with pytest.raises(AgentError) as caught:
        load_agents(tmp_path)
    assert "front.yaml" in str(caught.value) and "routes.1.agent" in str(caught.value)
    assert "'nobody'" in str(caught.value)


def test_parse_answer_is_defensive() -> None:
    intents = {"faq", "booking"}
    assert parse_answer('```json\n{"intent": "Booking", "confidence": "0.7"}\n```',
                        intents) == ("booking", 0.7)
    assert parse_answer(json.dumps({"intent": "faq", "confidence": 90}), intents) == ("faq", 0.9)
    assert parse_answer('{"intent": "weather", "confidence": 0.9}', intents) is None
    assert parse_answer('{"intent": "faq"}', intents) is None
    assert parse_answer("faq", intents) is None


async def test_a_specialist_hands_a_confident_new_intent_back_through_the_router(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: "Reply from " + messages[0]["content"][:30]
    async with conversation(stack.addr("llm"), agent="router") as conv:
        first = await events_of_turn(conv, "t1", "Book me an oil change please.")
        second = await events_of_turn(conv, "t2",
                                      "Actually, I'd like to test drive the new hatchback.")

    assert first[0].handoff.to_agent == "booking"
    assert second[0].handoff.from_agent == "booking"
    assert second[0].handoff.to_agent == "concierge"
    assert second[0].handoff.intent == "test_drive"
    assert second[0].handoff.confidence >= 0.8  # VOXMESH_LLM_SWITCH_MIN_CONFIDENCE
    deltas = "".join(e.delta.delta for e in second if e.WhichOneof("event") == "delta")
    # Only the new agent's reply; the booking desk's speculative one was discarded unseen.
    assert deltas.startswith("Reply from You are the concierge")
    assert "service desk" not in deltas


# "phone" and "number" are faq keywords; "Hello again" is the router's own intent.
@pytest.mark.parametrize("text", ["My phone number is 555 0199.", "Yes, that works.",
                                  "Hello again."])
async def test_a_specialist_keeps_the_caller_without_a_confident_decision_for_another_desk(
        stack: Stack, fake: FakeOpenAI, text: str) -> None:
    fake.reply = classifier('{"intent": "faq", "confidence": 0.99}')  # never asked
    async with conversation(stack.addr("llm"), agent="router") as conv:
        await events_of_turn(conv, "t1", "Book me an oil change please.")
        events = await events_of_turn(conv, "t2", text)

    assert "handoff" not in [e.WhichOneof("event") for e in events]
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED
    assert events[-1].done.text == ANSWER
    assert reply_requests(fake)[-1]["messages"][0]["content"].startswith(
        "You are the service desk")
    assert classify_requests(fake) == []
