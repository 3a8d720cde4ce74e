"""A knowledge base's embeddings, cached on disk and rebuilt when its files or model change.

The cache is ``<index_dir>/<name>.npz`` (the embedding matrix) beside ``<name>.json``
(passages, fingerprint, model). The fingerprint is a sha256 over the sorted file names
and contents, the chunker version and the embedding model's identity, so an edited file
or another model rebuilds the index and an unchanged knowledge base loads without
embedding anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.llm.rag.chunks import CHUNKER_VERSION, Passage, knowledge_files, load_passages
from services.llm.rag.embedder import Embedder

log = logging.getLogger(__name__)

#: Bumped when the cache layout changes.
FORMAT_VERSION = 1


def fingerprint(directory: Path, model_identity: str) -> str:
    """sha256 of the knowledge base's file names and contents, chunker and model."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION}\0chunker {CHUNKER_VERSION}\0"
                            f"model {model_identity}\0".encode())
    for path in knowledge_files(directory):
        content = path.read_bytes()
        digest.update(f"{path.relative_to(directory).as_posix()}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


@dataclass
class Index:
    """Passages and their unit embeddings (one row each), searchable by cosine similarity."""

    passages: list[Passage]
    matrix: np.ndarray
    fingerprint: str
    model: str

    @property
    def dimensions(self) -> int:
        """Length of each embedding."""
        return int(self.matrix.shape[1])

    def search(self, query: np.ndarray, top_k: int) -> list[tuple[Passage, float]]:
        """The ``top_k`` passages closest to the unit vector ``query``, best first."""
        if top_k <= 0 or not self.passages:
            return []
        scores = self.matrix @ query.astype(np.float32)
        k = min(top_k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.passages[i], float(scores[i])) for i in best]

    def save(self, stem: Path) -> None:
        """Write ``<stem>.npz`` and ``<stem>.json`` (each replaced atomically)."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
        partial = stem.with_name(f"{stem.name}.{os.getpid()}.partial.npz")
        with partial.open("wb") as out:
            np.savez(out, embeddings=self.matrix, fingerprint=np.array(self.fingerprint))
        os.replace(partial, npz)
        data = {
            "format": FORMAT_VERSION, "fingerprint": self.fingerprint, "model": self.model,
            "dimensions": self.dimensions,
            "passages": [{"source": p.source, "text": p.text, "headings": list(p.headings)}
                         for p in self.passages],
        }
        partial = stem.with_name(f"{stem.name}.{os.getpid()}.partial.json")
        partial.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(partial, meta)

    @classmethod
    def load(cls, stem: Path) -> Index | None:
        """The index cached at ``stem``, or None when absent, unreadable or inconsistent."""
        try:
            data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
            with np.load(stem.with_suffix(".npz"), allow_pickle=False) as arrays:
                matrix = np.asarray(arrays["embeddings"], dtype=np.float32)
                stored = str(arrays["fingerprint"])
            passages = [Passage(p["source"], p["text"], tuple(p["headings"]))
                        for p in data["passages"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if stem.with_suffix(".json").exists():
                log.warning("index %s unreadable, rebuilding: %s", stem, exc)
            return None
        if (data.get("format") != FORMAT_VERSION or stored != data.get("fingerprint")
                or matrix.ndim != 2 or matrix.shape[0] != len(passages)):
            log.warning("index %s inconsistent, rebuilding", stem)
            return None
        return cls(passages, matrix, stored, str(data.get("model", "")))


@dataclass(frozen=True)
class IndexReport:
    """How :func:`ensure_index` got its index."""

    index: Index
    path: Path
    built: bool
    seconds: float


def ensure_index(
    directory: Path,
    stem: Path,
    embedder: Embedder,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Load the index cached at ``stem`` if its fingerprint matches, else build and save it.

    Blocking (reads files, may embed for seconds); async callers use asyncio.to_thread.

    Args:
        directory: The knowledge base directory.
        stem: Cache path without suffix (``<index_dir>/<name>``).
        embedder: The model; its identity is part of the fingerprint.
        rebuild: Build even when the cache is current.
        progress: Called as ``progress(done, total)`` passages after each batch.

    Raises:
        KnowledgeError: a file cannot be read or parsed, or there are no passages.
    """
    started = time.perf_counter()
    expected = fingerprint(directory, embedder.identity)
    if not rebuild:
        cached = Index.load(stem)
        if cached is not None and cached.fingerprint == expected:
            return IndexReport(cached, stem.with_suffix(".npz"), False,
                               time.perf_counter() - started)
    passages = load_passages(directory)
    done = 0
    if progress is not None:
        progress(0, len(passages))

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, len(passages))

    matrix = embedder.embed([p.embedding_text for p in passages], progress=step)
    index = Index(passages, matrix, expected, embedder.identity)
    index.save(stem)
    log.info("indexed %s: %d passages in %.2f s", directory, len(passages),
             time.perf_counter() - started)
    return IndexReport(index, stem.with_suffix(".npz"), True, time.perf_counter() - started)
