"""Semantic routing in process: the real embedding model against the reference routes.

The eval set (bench/data/routing.yaml, also run by bench/routing.py) must stay held out
from the routes' examples; the router must send it to the right desks without a model;
the model is asked only to break ambiguous decisions, and only when that is switched on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.routing import load_eval
from services.llm.agents import AgentConfig, Route, load_agents
from services.llm.rag.embedder import load_embedder
from services.llm.router import CLASSIFIER_HEADER, Router
from services.llm.semantic_router import Ranked, SemanticRouter, route_texts
from services.llm.upstream import Upstream
from services.orchestrator.links import handoff_audit
from tests.fake_openai import FakeOpenAI
from voxmesh.config import LlmSettings
from voxmesh.v1 import dialogue_pb2 as pb

AGENTS = Path(__file__).resolve().parents[1] / "agents"
AMBIGUOUS = "Tomorrow at nine."
"""A booking-desk answer, not a request: no route is a clear match."""


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def agents() -> dict[str, AgentConfig]:
    return load_agents(AGENTS)


@pytest.fixture(scope="module")
def semantic(agents: dict[str, AgentConfig]) -> SemanticRouter:
    """The packaged model, loaded once for the module (seconds), routes prepared."""
    router = SemanticRouter(load_embedder())
    router.prepare(agents.values())
    return router


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="Sure.") as server:
        yield server


def classify_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [body for body in fake.requests if not body.get("stream")
            and str(body["messages"][0]["content"]).startswith(CLASSIFIER_HEADER)]


def test_the_eval_set_is_held_out_from_every_routes_examples(
        agents: dict[str, AgentConfig]) -> None:
    taught = {normalized(text) for agent in agents.values() for route in agent.routes
              for text in route_texts(route)}
    items = load_eval()
    overlap = [item["text"] for item in items if normalized(item["text"]) in taught]
    intents = {route.intent for route in agents["router"].routes}

    assert len(items) >= 100 and overlap == []
    assert {item["intent"] for item in items} == intents
    assert len({normalized(item["text"]) for item in items}) == len(items)  # no repeats


async def test_the_front_door_sends_the_eval_set_to_the_right_desks_without_a_model(
        agents: dict[str, AgentConfig], semantic: SemanticRouter) -> None:
    router = Router(None, 0.5, semantic)
    front = agents["router"]
    desks = {route.intent: route.agent for route in front.routes}
    decided = [(item, await router.classify(front, item["text"])) for item in load_eval()]
    right = [item for item, d in decided if d.route is not None
             and d.route.agent == desks[item["intent"]]]

    assert {d.method for _, d in decided} == {"semantic"}
    assert all(0.0 <= d.confidence <= 1.0 for _, d in decided)
    # bench/routing.py measured 91% (197/216); this guards against a regression.
    assert len(right) / len(decided) >= 0.88


async def test_clear_requests_are_confident_and_answers_to_a_desk_are_not(
        agents: dict[str, AgentConfig], semantic: SemanticRouter) -> None:
    router = Router(None, 0.5, semantic)
    front = agents["router"]
    clear = {"Can I schedule an appointment for my tires?": "booking",
             "I would like to test drive the new hatchback.": "test_drive",
             "Where is the dealership located?": "faq", "Hi there!": "other"}
    for text, intent in clear.items():
        decision = await router.classify(front, text)
        assert (decision.intent, decision.method) == (intent, "semantic")
        assert decision.confidence >= 0.8, text  # enough to move a caller between desks
    for text in (AMBIGUOUS, "My phone number is 555 0199."):
        assert (await router.classify(front, text)).confidence < 0.5, text


async def test_the_model_breaks_only_ambiguous_decisions_and_only_when_enabled(
        agents: dict[str, AgentConfig], semantic: SemanticRouter, fake: FakeOpenAI) -> None:
    fake.reply = '{"intent": "escalation", "confidence": 0.9}'
    upstream = Upstream(LlmSettings(base_url=fake.base_url))
    front = agents["router"]
    try:
        asked = len(classify_requests(fake))
        off = await Router(upstream, 0.5, semantic).classify(front, AMBIGUOUS)
        assert off.method == "semantic" and len(classify_requests(fake)) == asked

        tiebreak = Router(upstream, 0.5, semantic, llm_tiebreak=True)
        clear = await tiebreak.classify(front, "I'd like to book an oil change.")
        assert clear.intent == "booking" and clear.method == "semantic"
        assert len(classify_requests(fake)) == asked

        broken = await tiebreak.classify(front, AMBIGUOUS)
        assert (broken.intent, broken.method, broken.confidence) == ("escalation", "model", 0.9)
        assert classify_requests(fake)[-1]["messages"][-1]["content"] == AMBIGUOUS

        fake.reply = "I think they want to book something."  # unusable: semantic stands
        kept = await tiebreak.classify(front, AMBIGUOUS)
        assert kept.method == "semantic" and kept.intent == off.intent
    finally:
        await upstream.aclose()


class FailingSemanticRouter(SemanticRouter):
    """A semantic router whose model fails on every turn (``fake_error``)."""

    fake_error = RuntimeError("embedding model unavailable")

    def rank_sync(self, routes: object, text: str) -> list[Ranked]:
        raise self.fake_error


async def test_keywords_decide_when_the_turn_cannot_be_embedded(
        agents: dict[str, AgentConfig], semantic: SemanticRouter) -> None:
    router = Router(None, 0.5, FailingSemanticRouter(semantic.embedder))
    decision = await router.classify(agents["router"], "I need to cancel my appointment.")
    nothing = await router.classify(agents["router"], "Hello there.")

    assert (decision.intent, decision.method, decision.confidence) == ("booking", "keywords", 0)
    assert (nothing.route, nothing.method) == (None, "none")


async def test_routes_without_examples_are_compared_by_their_description(
        semantic: SemanticRouter) -> None:
    routes = (Route(intent="billing", agent="a", description="questions about an invoice"),
              Route(intent="parts", agent="b", description="ordering spare parts"))
    ranked = await semantic.rank(routes, "I have a question about my invoice")

    assert ranked[0].route.intent == "billing"
    assert sum(r.confidence for r in ranked) == pytest.approx(1.0)


def test_the_handoff_audit_entry_records_intent_confidence_and_method() -> None:
    handoff = pb.Handoff(turn_id="t1", from_agent="router", to_agent="booking", voice="v",
                         reason="intent booking (semantic, confidence 0.91)",
                         intent="booking", confidence=0.91234,
                         method=pb.ROUTE_METHOD_SEMANTIC)

    assert handoff_audit(handoff) == {
        "from_agent": "router", "to_agent": "booking", "voice": "v",
        "reason": "intent booking (semantic, confidence 0.91)", "intent": "booking",
        "confidence": 0.912, "method": "semantic"}
    assert handoff_audit(pb.Handoff())["method"] == "unspecified"
