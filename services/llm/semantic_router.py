"""Semantic intent classification: a turn's embedding against each route's vectors.

A route's vectors are its ``description`` and ``examples``, embedded once with the
service's shared sentence-transformers model (the one RAG uses). A turn is embedded and
scored against every route of the routing agent:

- ``learned`` (the default): a multinomial logistic regression fitted on the routes'
  vectors when they are first needed (milliseconds). Its weights are one learned
  prototype per route, so a turn is still scored by a dot product with unit vectors,
  but the prototypes weigh what tells the routes apart ("how much is" against "book")
  over what they share (oil changes, tires). The confidence is the predicted probability.
- ``cosine``: the mean of the five best cosine similarities to each route's vectors;
  the confidence is a softmax over the routes' scores. Kept for comparison: on the
  routing eval (bench/routing.py) it decides the right desk less often.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.llm.agents import AgentConfig, Route
from services.llm.rag.embedder import Embedder

Scoring = Literal["learned", "cosine"]

_REGULARISATION = 10.0
"""Inverse regularisation strength (scikit-learn's ``C``) of the learned prototypes;
chosen by leave-one-out over the reference routes' examples (10 to 100 tie)."""
_COSINE_TOP_K = 5
_COSINE_TEMPERATURE = 0.05
"""Softmax temperature of the cosine scores: a 0.1 lead over the next route is e^2."""


@dataclass(frozen=True)
class Ranked:
    """One route's standing for a turn.

    Attributes:
        route: The route.
        confidence: 0 to 1; the routes of one turn sum to 1.
    """

    route: Route
    confidence: float


def route_texts(route: Route) -> list[str]:
    """What a route is compared by: its description (or intent) and its examples."""
    return [route.description or route.intent.replace("_", " "), *route.examples]


class _RouteModel:
    """The embedded vectors of one agent's routes and, when learned, the fitted model."""

    def __init__(self, routes: tuple[Route, ...], vectors: np.ndarray, labels: np.ndarray,
                 scoring: Scoring) -> None:
        self.routes = routes
        self.vectors = vectors
        self.labels = labels
        self.classifier: Any = None
        if scoring == "learned" and len(routes) > 1:
            # Imported here: scikit-learn (a sentence-transformers dependency) takes seconds.
            from sklearn.linear_model import LogisticRegression

            # Balanced: an intent with twice the examples must not get twice the prior.
            self.classifier = LogisticRegression(
                C=_REGULARISATION, class_weight="balanced", max_iter=5000)
            self.classifier.fit(vectors, labels)

    def rank(self, vector: np.ndarray) -> list[Ranked]:
        """Every route, best first, for one unit ``vector``."""
        if self.classifier is not None:
            confidences = self.classifier.predict_proba(vector[None, :])[0]
        else:
            similarities = self.vectors @ vector
            top = np.array([np.sort(similarities[self.labels == i])[-_COSINE_TOP_K:].mean()
                            for i in range(len(self.routes))])
            exp = np.exp((top - top.max()) / _COSINE_TEMPERATURE)
            confidences = exp / exp.sum()
        order = np.argsort(-confidences, kind="stable")  # ties: the route listed first
        return [Ranked(self.routes[i], float(confidences[i])) for i in order]


class SemanticRouter:
    """Ranks a turn against the routes of routing agents, sharing one embedding model.

    Route vectors and fitted models are cached per distinct tuple of routes, so agents
    that share routes (per-user overrides cannot change them) share one entry.
    """

    def __init__(self, embedder: Embedder, scoring: Scoring = "learned") -> None:
        """Embed with ``embedder`` (the service's loaded model, never a second copy)."""
        self.embedder = embedder
        self.scoring: Scoring = scoring
        self._models: dict[tuple[Route, ...], _RouteModel] = {}
        self._lock = threading.Lock()

    def prepare(self, agents: Iterable[AgentConfig]) -> int:
        """Embed (and fit) the routes of ``agents`` now (blocking); returns how many sets."""
        sets = {agent.routes for agent in agents if agent.routes}
        for routes in sets:
            self._model(routes)
        return len(sets)

    def _model(self, routes: tuple[Route, ...]) -> _RouteModel:
        with self._lock:  # two first turns of a new set of routes build it once
            model = self._models.get(routes)
            if model is None:
                texts = [route_texts(route) for route in routes]
                vectors = self.embedder.embed([text for group in texts for text in group])
                labels = np.repeat(np.arange(len(routes)), [len(group) for group in texts])
                model = self._models[routes] = _RouteModel(routes, vectors, labels,
                                                           self.scoring)
            return model

    def rank_sync(self, routes: Sequence[Route], text: str) -> list[Ranked]:
        """:meth:`rank`, blocking (embeds ``text`` on this thread)."""
        model = self._model(tuple(routes))
        return model.rank(self.embedder.embed([text.strip()])[0])

    async def rank(self, routes: Sequence[Route], text: str) -> list[Ranked]:
        """Every one of ``routes``, best first, for the user's ``text``; off the event loop."""
        return await asyncio.to_thread(self.rank_sync, routes, text)
