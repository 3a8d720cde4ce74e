"""How an answer taken from the knowledge base is said."""

from __future__ import annotations

from services.llm.agents import AgentConfig
from services.llm.grounding.extractive import ExtractedAnswer


def spoken_answer(agent: AgentConfig, extracted: ExtractedAnswer) -> str:
    """The reply: a confident answer names its page (an FAQ entry is said as written); a
    closest one goes in the agent's ``closest_reply``, which says it may not answer."""
    if not extracted.confident:
        return agent.closest_reply.format(answer=extracted.text, page=extracted.page)
    if extracted.evidence.is_faq:
        return extracted.text
    return f"Our {extracted.page} page says: {extracted.text}"
