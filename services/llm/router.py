"""Intent routing: which agent should answer a user turn.

An agent with ``routes`` classifies each user turn semantically: the turn's embedding
against the routes' descriptions and examples (:mod:`services.llm.semantic_router`),
with a confidence in [0, 1]. The semantic decision always stands, except:

- when it is ambiguous (confidence below ``min_confidence``) and the model tie-breaker
  is on, one short non-streamed call asks the model for JSON
  ``{"intent": ..., "confidence": 0..1}``; a usable, confident answer decides. The
  embedded SmolLM2-135M never gave one (bench/results/llm.md), hence off by default;
- when the turn cannot be embedded (or no embedding model is loaded), the routes'
  keywords decide, so a caller asking to "book an oil change" still reaches the desk.

Keywords as a tie-breaker of ambiguous semantic decisions are measured by
bench/routing.py; they changed no eval decision for the better, so they are off by default.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from services.llm.agents import AgentConfig, Route
from services.llm.semantic_router import Ranked, SemanticRouter
from services.llm.upstream import Upstream, UpstreamError
from voxmesh.v1 import dialogue_pb2 as pb

log = logging.getLogger(__name__)

Method = Literal["semantic", "keywords", "model", "none"]

CLASSIFIER_HEADER = "You classify what a caller wants."
"""First words of the classification prompt (tests recognise the request by them)."""

_MAX_TOKENS = 40  # {"intent": "booking", "confidence": 0.9} and some slack
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


@dataclass(frozen=True)
class Decision:
    """The outcome of classifying one turn.

    Attributes:
        route: The matching route, or None when nothing matched (stay on the agent).
        intent: The intent decided, "" when none.
        confidence: 0 to 1: the semantic classifier's or the model's; 0 for keywords.
        method: How it was decided: "semantic", "keywords", "model" or "none".
    """

    route: Route | None
    intent: str
    confidence: float
    method: Method

    def reason(self) -> str:
        """A short human-readable account, e.g. "intent booking (semantic, confidence 0.92)"."""
        if self.route is None:
            return "no intent recognised"
        return f"intent {self.intent} ({self.method}, confidence {self.confidence:.2f})"

    def proto_method(self) -> pb.RouteMethod:
        """:attr:`method` as the Handoff event's enum."""
        return _PROTO_METHOD[self.method]


_PROTO_METHOD: dict[str, pb.RouteMethod] = {
    "semantic": pb.ROUTE_METHOD_SEMANTIC, "keywords": pb.ROUTE_METHOD_KEYWORDS,
    "model": pb.ROUTE_METHOD_MODEL, "none": pb.ROUTE_METHOD_UNSPECIFIED}


def classification_prompt(agent: AgentConfig) -> str:
    """The system prompt listing ``agent``'s intents and the JSON answer expected."""
    lines = [f"- {route.intent}: {route.description or route.intent}" for route in agent.routes]
    return (
        f"{CLASSIFIER_HEADER} Pick the one intent that best matches the caller's "
        "last message.\nIntents:\n" + "\n".join(lines) + "\n"
        'Answer with JSON only, exactly like {"intent": "<intent>", "confidence": <0 to 1>}.'
    )


def parse_answer(text: str, intents: set[str]) -> tuple[str, float] | None:
    """``(intent, confidence)`` from the model's answer; None when unusable.

    Tolerates prose or code fences around the object and a confidence given as a
    string or a percentage; an unknown intent or a missing confidence is unusable.
    """
    for candidate in [text.strip(), *_JSON_OBJECT.findall(text)]:
        try:
            data: Any = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        intent = str(data.get("intent", "")).strip().lower()
        try:
            confidence = float(data.get("confidence"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if confidence > 1.0:
            confidence /= 100.0  # "confidence": 90
        if intent in intents and 0.0 <= confidence <= 1.0:
            return intent, confidence
        return None
    return None


def match_keywords(agent: AgentConfig, text: str) -> Route | None:
    """The route with the most keyword hits in ``text`` (first listed on a tie); None: none."""
    words = text.lower()
    best: Route | None = None
    best_hits = 0
    for route in agent.routes:
        hits = sum(1 for keyword in route.keywords
                   if re.search(rf"\b{re.escape(keyword.lower())}\b", words))
        if hits > best_hits:
            best, best_hits = route, hits
    return best


class Router:
    """Classifies user turns for agents that have routes."""

    def __init__(self, upstream: Upstream | None, min_confidence: float,
                 semantic: SemanticRouter | None = None, *, llm_tiebreak: bool = False,
                 keyword_tiebreak: bool = False) -> None:
        """Classify with ``semantic``; without it, with the model and then keywords.

        Args:
            upstream: The model, asked only as a tie-breaker (or without ``semantic``).
            min_confidence: Semantic decisions below it are ambiguous; model answers
                below it are ignored.
            semantic: The embedding classifier; None falls back to model and keywords.
            llm_tiebreak: Ask the model when the semantic decision is ambiguous.
            keyword_tiebreak: When it is still ambiguous, prefer whichever of the two
                best routes the keywords name.
        """
        self.upstream = upstream
        self.min_confidence = min_confidence
        self.semantic = semantic
        self.llm_tiebreak = llm_tiebreak
        self.keyword_tiebreak = keyword_tiebreak

    async def classify(self, agent: AgentConfig, text: str) -> Decision:
        """Decide which of ``agent``'s routes ``text`` belongs to.

        Never raises for upstream or embedding trouble: the turn goes on with what is
        left (the semantic decision, else keywords).
        """
        ranked: list[Ranked] = []
        if self.semantic is not None:
            try:
                ranked = await self.semantic.rank(agent.routes, text)
            except Exception:  # a broken model must not break the turn; keywords decide
                log.exception("semantic routing failed", extra={"agent": agent.name})
        if ranked and ranked[0].confidence >= self.min_confidence:
            return _semantic(ranked[0])
        if self.upstream is not None and (self.llm_tiebreak or self.semantic is None):
            answer = await self._ask_model(agent, text)
            if answer is not None:
                return answer
        if ranked:
            if self.keyword_tiebreak:
                route = match_keywords(agent, text)
                if route is not None and route in (r.route for r in ranked[:2]):
                    return Decision(route, route.intent, 0.0, "keywords")
            return _semantic(ranked[0])
        route = match_keywords(agent, text)
        if route is not None:
            return Decision(route, route.intent, 0.0, "keywords")
        return Decision(None, "", 0.0, "none")

    async def _ask_model(self, agent: AgentConfig, text: str) -> Decision | None:
        """The model's confident answer, or None (unusable, unsure or failed)."""
        assert self.upstream is not None
        by_intent = {route.intent: route for route in agent.routes}
        try:
            answer = await self.upstream.complete(
                [{"role": "system", "content": classification_prompt(agent)},
                 {"role": "user", "content": text}], _MAX_TOKENS)
        except UpstreamError:
            return None
        parsed = parse_answer(answer, set(by_intent))
        if parsed is None or parsed[1] < self.min_confidence:
            return None
        return Decision(by_intent[parsed[0]], parsed[0], parsed[1], "model")


def _semantic(best: Ranked) -> Decision:
    return Decision(best.route, best.route.intent, round(best.confidence, 4), "semantic")
