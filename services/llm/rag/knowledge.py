"""Knowledge bases the dialogue service retrieves from: load or build, then search.

Directories come from settings: ``VOXMESH_LLM_KNOWLEDGE_DIR`` holds one directory per
knowledge base (default ``./knowledge`` of the checkout); indexes are cached in
``VOXMESH_LLM_INDEX_DIR`` (default ``<state_dir>/rag``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.llm.rag import metrics
from services.llm.rag.chunks import KnowledgeError, Passage
from services.llm.rag.embedder import Embedder, load_embedder
from services.llm.rag.index import Index, IndexReport, ensure_index
from services.llm.rag.query import QueryRepair, dictionary_of
from voxmesh.config import LlmSettings
from voxmesh.v1 import dialogue_pb2


def default_knowledge_dir() -> Path:
    """``./knowledge`` when run from a checkout's root, else the checkout's knowledge dir."""
    here = Path("knowledge")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[3] / "knowledge"


def knowledge_root(settings: LlmSettings) -> Path:
    """The directory holding one directory per knowledge base."""
    return Path(settings.knowledge_dir).expanduser() if settings.knowledge_dir else (
        default_knowledge_dir())


def index_dir(settings: LlmSettings) -> Path:
    """Where indexes are cached."""
    if settings.index_dir:
        return Path(settings.index_dir).expanduser()
    return Path(settings.state_dir).expanduser() / "rag"


def knowledge_base_dir(root: Path, name: str) -> Path:
    """The directory of knowledge base ``name`` under ``root``.

    Raises:
        KnowledgeError: no such directory (the message names the root and what it has).
    """
    directory = root / name
    if "/" in name or name.startswith(".") or not directory.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()
                       and not p.name.startswith(".")) if root.is_dir() else []
        raise KnowledgeError(f"knowledge base {name!r} not found in {root} "
                             f"(known: {', '.join(known) or 'none'})")
    return directory


@dataclass(frozen=True)
class ScoredPassage:
    """A retrieved passage and its cosine similarity to the query."""

    passage: Passage
    score: float

    @property
    def source(self) -> str:
        """File and section the passage comes from."""
        return self.passage.source

    @property
    def text(self) -> str:
        """The passage text."""
        return self.passage.text


@dataclass(frozen=True)
class SearchResult:
    """What one search found.

    Attributes:
        knowledge_base: Name of the knowledge base searched.
        query: The user text searched for.
        passages: Passages scoring at least ``min_score``, best first (maybe none).
        seconds: Time spent embedding the query and searching.
        top_score: Best score of any passage, even one below ``min_score``
            (-1.0 when nothing was searched).
    """

    knowledge_base: str
    query: str
    passages: tuple[ScoredPassage, ...]
    seconds: float
    top_score: float

    @property
    def hit(self) -> bool:
        """Whether at least one passage reached ``min_score``."""
        return bool(self.passages)

    def to_proto(self, turn_id: str) -> dialogue_pb2.Retrieval:
        """The Retrieval event for the turn ``turn_id``."""
        return dialogue_pb2.Retrieval(
            turn_id=turn_id, knowledge_base=self.knowledge_base,
            retrieval_ms=self.seconds * 1000.0,
            citations=[dialogue_pb2.Citation(source=p.source, score=p.score, text=p.text)
                       for p in self.passages])


@dataclass
class KnowledgeBase:
    """One loaded knowledge base: its index and the shared embedding model."""

    name: str
    directory: Path
    index: Index
    embedder: Embedder
    index_path: Path = field(default=Path())
    repair: QueryRepair = field(default_factory=lambda: QueryRepair((), frozenset()))
    """Mends the caller's words before searching (see :mod:`services.llm.rag.query`)."""

    def search_sync(self, query: str, top_k: int, min_score: float) -> SearchResult:
        """:meth:`search`, blocking (embeds the query on this thread)."""
        started = time.perf_counter()
        found: list[tuple[Passage, float]] = []
        searched = self.repair(query)
        if searched:
            vector = self.embedder.embed([searched])[0]
            found = self.index.search(vector, top_k)
        top = found[0][1] if found else -1.0
        result = SearchResult(
            knowledge_base=self.name, query=query,
            passages=tuple(ScoredPassage(p, s) for p, s in found if s >= min_score),
            seconds=time.perf_counter() - started, top_score=top)
        metrics.RETRIEVAL_SECONDS.labels(self.name).observe(result.seconds)
        if found:
            metrics.RETRIEVAL_TOP_SCORE.labels(self.name).observe(top)
        metrics.RETRIEVALS.labels(self.name, "hit" if result.hit else "miss").inc()
        return result

    async def search(self, query: str, top_k: int, min_score: float) -> SearchResult:
        """The ``top_k`` passages closest to ``query`` that score at least ``min_score``.

        Embedding runs off the event loop. A blank query searches nothing (a miss).

        Args:
            query: The user's words.
            top_k: Most passages returned.
            min_score: Cosine similarity below which passages are left out.
        """
        return await asyncio.to_thread(self.search_sync, query, top_k, min_score)


def open_knowledge_base(
    name: str,
    root: Path,
    cache: Path,
    embedder: Embedder,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[KnowledgeBase, IndexReport]:
    """Load or build knowledge base ``name`` (blocking).

    Raises:
        KnowledgeError: unknown name, or a file that cannot be read or parsed.
    """
    directory = knowledge_base_dir(root, name)
    report = ensure_index(directory, cache / name, embedder, rebuild, progress)
    repair = QueryRepair((f"{p.source} {p.text}" for p in report.index.passages),
                         dictionary_of(embedder.path / "vocab.txt"))
    return KnowledgeBase(name, directory, report.index, embedder, report.path, repair), report


async def load_knowledge_bases(
    names: set[str], settings: LlmSettings, embedder: Embedder | None = None
) -> dict[str, KnowledgeBase]:
    """Load (or build, when stale) the named knowledge bases, sharing one embedder.

    Args:
        names: Knowledge base names (``AgentConfig.knowledge.base`` of the agents).
        settings: Where knowledge bases, the model and the cache are.
        embedder: An already loaded model; by default the settings' model is loaded
            (only when ``names`` is not empty).

    Raises:
        KnowledgeError: an unknown name (naming it and the directory searched) or a
            file that cannot be read or parsed.
        FileNotFoundError: the embedding model directory does not exist.
    """
    if not names:
        return {}
    root, cache = knowledge_root(settings), index_dir(settings)
    for name in sorted(names):  # fail on a typo before loading the model for seconds
        knowledge_base_dir(root, name)
    if embedder is None:
        embedder = await asyncio.to_thread(load_embedder, settings.embedding_model,
                                           settings.embedding_threads)
    loaded: dict[str, KnowledgeBase] = {}
    for name in sorted(names):
        loaded[name], _ = await asyncio.to_thread(open_knowledge_base, name, root, cache,
                                                  embedder)
    return loaded
