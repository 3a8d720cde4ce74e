"""The dialogue session's hook into the knowledge bases: passages for one turn's prompt."""

from __future__ import annotations

import asyncio
import logging

from services.llm.agents import AgentConfig
from services.llm.grounding.extractive import Evidence, ExtractedAnswer, extract_answer
from services.llm.rag.knowledge import KnowledgeBase
from services.llm.rag.prompt import cited_passages_block
from voxmesh.v1 import dialogue_pb2 as pb

log = logging.getLogger(__name__)


class KnowledgeRetriever:
    """Searches the agent's knowledge base with the user's words (see session.Retriever)."""

    def __init__(self, knowledge: dict[str, KnowledgeBase]) -> None:
        """Search the loaded ``knowledge`` bases, by name."""
        self.knowledge = knowledge

    async def warm_up(self) -> None:
        """Run one search per base, so the first caller does not pay torch's first call."""
        for kb in self.knowledge.values():
            await kb.search("opening hours", 1, 1.0)

    async def __call__(self, agent: AgentConfig, turn_id: str, text: str
                       ) -> tuple[str, pb.Retrieval | None]:
        """The passages block for the prompt and the event reporting them.

        A failed search never fails the turn: the agent answers without passages.
        """
        config = agent.knowledge
        kb = self.knowledge.get(config.base) if config else None
        if config is None or kb is None:
            return "", None
        try:
            result = await kb.search(text, config.top_k, config.min_score)
        except Exception:
            log.exception("retrieval failed", extra={"knowledge_base": config.base})
            return "", None
        return cited_passages_block(result), result.to_proto(turn_id)

    async def answer(self, agent: AgentConfig, question: str, found: pb.Retrieval
                     ) -> ExtractedAnswer | None:
        """The reply taken from the best retrieved passage when it scores at least
        ``knowledge.closest_min_score`` (else ``answer_min_score``); None leaves the turn
        to the model (or, for a strict agent, to its unsupported_reply)."""
        config = agent.knowledge
        kb = self.knowledge.get(config.base) if config else None
        if config is None or kb is None or config.answer_min_score is None:
            return None
        evidence = [Evidence(c.source, c.text, c.score) for c in found.citations]
        closest = (config.answer_min_score if config.closest_min_score is None
                   else config.closest_min_score)
        try:
            return await asyncio.to_thread(extract_answer, kb.embedder, kb.repair(question),
                                           evidence, config.answer_min_score, closest)
        except Exception:
            log.exception("extractive answer failed", extra={"knowledge_base": config.base})
            return None
