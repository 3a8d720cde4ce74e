"""Intent routing: which agent should answer a user turn.

An agent with ``routes`` classifies each user turn with one short, non-streamed call
to the same model, which must answer JSON ``{"intent": ..., "confidence": 0..1}``.
Small models often answer something else, or guess; then the route's keywords decide,
so a caller asking to "book an oil change" reaches the booking desk regardless.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.llm.agents import AgentConfig, Route
from services.llm.upstream import Upstream, UpstreamError

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
        confidence: The model's confidence, 0 when keywords decided.
        source: "model", "keywords" or "none".
    """

    route: Route | None
    intent: str
    confidence: float
    source: str

    def reason(self) -> str:
        """A short human-readable account, e.g. "intent booking (model, confidence 0.92)"."""
        if self.route is None:
            return "no intent recognised"
        return f"intent {self.intent} ({self.source}, confidence {self.confidence:.2f})"


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

    def __init__(self, upstream: Upstream, min_confidence: float) -> None:
        """Classify through ``upstream``; model answers below ``min_confidence`` are ignored."""
        self.upstream = upstream
        self.min_confidence = min_confidence

    async def classify(self, agent: AgentConfig, text: str) -> Decision:
        """Decide which of ``agent``'s routes ``text`` belongs to.

        Never raises for upstream trouble: a failed call is treated like an unusable
        answer, so the keywords decide and the turn goes on.
        """
        by_intent = {route.intent: route for route in agent.routes}
        try:
            answer = await self.upstream.complete(
                [{"role": "system", "content": classification_prompt(agent)},
                 {"role": "user", "content": text}], _MAX_TOKENS)
        except UpstreamError:
            answer = ""
        parsed = parse_answer(answer, set(by_intent))
        if parsed is not None and parsed[1] >= self.min_confidence:
            return Decision(by_intent[parsed[0]], parsed[0], parsed[1], "model")
        route = match_keywords(agent, text)
        if route is not None:
            return Decision(route, route.intent, 0.0, "keywords")
        return Decision(None, "", parsed[1] if parsed else 0.0, "none")
