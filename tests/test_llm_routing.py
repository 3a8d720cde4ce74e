"""Agent routing: the router agent classifies each turn and hands the session over.

A real dialogue service process, real Redis, and the scripted OpenAI-compatible fake,
which answers the classification request (recognised by its system prompt) with JSON.
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
    fake.reply = classifier('{"intent": "booking", "confidence": 0.93}')
    booking = load_agent(AGENTS / "booking.yaml")
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "I'd like to book an oil change.")
    kinds = [e.WhichOneof("event") for e in events]

    assert conv.ready.agent == "router"
    assert kinds[0] == "handoff" and kinds.count("handoff") == 1 and "delta" in kinds
    handoff = events[0].handoff
    assert (handoff.turn_id, handoff.from_agent, handoff.to_agent) == ("t1", "router", "booking")
    assert (handoff.voice, handoff.speed) == (booking.voice, pytest.approx(booking.speed))
    assert "booking" in handoff.reason and "model" in handoff.reason
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED and events[-1].done.text == ANSWER
    last = reply_requests(fake)[-1]
    assert last["messages"][0]["content"].startswith("You are the service desk of Maple Motors")
    assert last["messages"][-1]["content"] == "I'd like to book an oil change."
    assert {t["function"]["name"] for t in last.get("tools", [])} >= {"book_appointment"}
    assert "book an oil change" in classify_requests(fake)[-1]["messages"][-1]["content"]


async def test_a_faq_question_routes_to_the_information_desk(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = classifier('{"intent": "faq", "confidence": 0.8}')
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "What is your address?")

    assert events[0].handoff.to_agent == "faq"
    first = reply_requests(fake)[-1]["messages"][0]["content"]
    assert first.startswith("You are the information desk of Maple Motors")


@pytest.mark.parametrize("answer", ["I think they want to book something.",
                                    '{"intent": "faq", "confidence": 0.1}'])
async def test_an_unusable_answer_falls_back_to_keywords(
        stack: Stack, fake: FakeOpenAI, answer: str) -> None:
    fake.reply = classifier(answer)
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "Can I schedule an appointment for my tires?")

    assert events[0].handoff.to_agent == "booking"
    assert "keywords" in events[0].handoff.reason


async def test_the_current_agents_own_intent_does_not_hand_off(
        stack: Stack, fake: FakeOpenAI) -> None:
    fake.reply = classifier('{"intent": "other", "confidence": 0.9}')
    async with conversation(stack.addr("llm"), agent="router") as conv:
        events = await events_of_turn(conv, "t1", "Hi there!")

    assert [e.WhichOneof("event") for e in events if e.WhichOneof("event") == "handoff"] == []
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED
    assert reply_requests(fake)[-1]["messages"][0]["content"].startswith(
        "You are the front door of Maple Motors")


async def test_a_resumed_session_stays_with_the_agent_it_was_handed_to(
        stack: Stack, fake: FakeOpenAI) -> None:
    session = f"route-{uuid.uuid4().hex}"
    fake.reply = classifier('{"intent": "booking", "confidence": 0.9}')
    async with conversation(stack.addr("llm"), agent="router", session_id=session) as conv:
        await events_of_turn(conv, "t1", "Book me an oil change please.")
    classified = len(classify_requests(fake))

    async with conversation(stack.addr("llm"), agent="router", session_id=session) as conv:
        events = await events_of_turn(conv, "t2", "Tomorrow at nine.")
    body = reply_requests(fake)[-1]

    assert conv.ready.agent == "booking"
    assert "handoff" not in [e.WhichOneof("event") for e in events]
    # Still classified by the router's routes; "booking" again, so no handoff.
    assert len(classify_requests(fake)) == classified + 1
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
    answers = iter(['{"intent": "booking", "confidence": 0.9}',
                    '{"intent": "faq", "confidence": 0.95}'])
    current = next(answers)

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"].startswith(CLASSIFIER_HEADER):
            return current
        return "Reply from " + messages[0]["content"][:30]

    fake.reply = reply
    async with conversation(stack.addr("llm"), agent="router") as conv:
        first = await events_of_turn(conv, "t1", "Book me an oil change please.")
        current = next(answers)
        second = await events_of_turn(conv, "t2", "Actually, when are you open on Saturday?")

    assert first[0].handoff.to_agent == "booking"
    assert second[0].handoff.from_agent == "booking"
    assert second[0].handoff.to_agent == "faq"
    deltas = "".join(e.delta.delta for e in second if e.WhichOneof("event") == "delta")
    # Only the new agent's reply; the booking desk's speculative one was discarded unseen.
    assert deltas == "Reply from You are the information desk o"


@pytest.mark.parametrize("answer", ['{"intent": "faq", "confidence": 0.6}',
                                    '{"intent": "other", "confidence": 0.99}',
                                    "no idea"])
async def test_a_specialist_keeps_the_caller_without_a_confident_model_answer(
        stack: Stack, fake: FakeOpenAI, answer: str) -> None:
    answers = iter(['{"intent": "booking", "confidence": 0.9}', answer])
    current = next(answers)

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[0]["content"].startswith(CLASSIFIER_HEADER):
            return current
        return "Sure."

    fake.reply = reply
    async with conversation(stack.addr("llm"), agent="router") as conv:
        await events_of_turn(conv, "t1", "Book me an oil change please.")
        current = next(answers)
        # "phone" and "number" are faq keywords: keywords alone never pull a caller away.
        events = await events_of_turn(conv, "t2", "My phone number is 555 0199.")

    assert "handoff" not in [e.WhichOneof("event") for e in events]
    assert events[-1].done.status == pb.TURN_STATUS_COMPLETED
    assert events[-2].delta.delta == "Sure."
