"""Retrieval-augmented generation: knowledge bases searched on every user turn.

A knowledge base is a directory of markdown, text and YAML files under the knowledge
root (``VOXMESH_LLM_KNOWLEDGE_DIR``, default ``./knowledge``); an agent names one in its
YAML (``knowledge: {base: maple_motors, top_k: 3, min_score: 0.25}``). Indexes are cached
under ``<state_dir>/rag`` and rebuilt when a file or the embedding model changes;
``voxmesh-ingest`` builds them ahead of time.

Wiring, in the dialogue service::

    from services.llm.rag import cited_passages_block, load_knowledge_bases

    # start-up (loads the embedding model once; seconds):
    names = {a.knowledge.base for a in agents.values() if a.knowledge}
    knowledge = await load_knowledge_bases(names, settings)

    # each user turn of an agent with ``cfg = agent.knowledge``:
    result = await knowledge[cfg.base].search(user_text, cfg.top_k, cfg.min_score)
    system_prompt += "\\n\\n" + cited_passages_block(result)
    retrieval = result.to_proto(turn_id)  # a dialogue_pb2.Retrieval, citations best first

``load_knowledge_bases`` raises :class:`KnowledgeError` naming an unknown base and the
directory searched, or a malformed file. Searching runs the model off the event loop and
records ``voxmesh_llm_retrieval_*`` metrics. Importing this package does not import torch.
"""

from __future__ import annotations

from services.llm.rag.chunks import KnowledgeError, Passage
from services.llm.rag.knowledge import (
    KnowledgeBase,
    ScoredPassage,
    SearchResult,
    load_knowledge_bases,
)
from services.llm.rag.prompt import cited_passages_block

__all__ = [
    "KnowledgeBase",
    "KnowledgeError",
    "Passage",
    "ScoredPassage",
    "SearchResult",
    "cited_passages_block",
    "load_knowledge_bases",
]
