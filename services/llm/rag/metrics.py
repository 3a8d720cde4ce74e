"""Prometheus collectors of retrieval (bounded labels: knowledge base name and outcome)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RETRIEVAL_SECONDS = Histogram(
    "voxmesh_llm_retrieval_seconds",
    "Time to embed a user turn and search a knowledge base.",
    ["knowledge_base"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
RETRIEVAL_TOP_SCORE = Histogram(
    "voxmesh_llm_retrieval_top_score",
    "Cosine similarity of the best passage for a user turn, before the min_score cut.",
    ["knowledge_base"],
    buckets=(0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
RETRIEVALS = Counter(
    "voxmesh_llm_retrievals_total",
    "Searches of a knowledge base, by outcome (hit: a passage reached min_score; else miss).",
    ["knowledge_base", "outcome"],
)
