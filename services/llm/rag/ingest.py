"""``voxmesh-ingest``: build or refresh knowledge base indexes ahead of the service's start.

Usage: ``voxmesh-ingest [--knowledge-dir DIR] [--name KB ...] [--rebuild]``

Without ``--name`` every knowledge base under the knowledge root is indexed. Prints a
progress bar over the passages embedded (stderr), then one summary line per knowledge
base (stdout). Exit status 2 names a knowledge base that does not exist; 1 a file that
cannot be parsed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm

from services.llm.rag.chunks import KnowledgeError
from services.llm.rag.embedder import load_embedder
from services.llm.rag.knowledge import (
    index_dir,
    knowledge_base_dir,
    knowledge_root,
    open_knowledge_base,
)
from voxmesh.config import LlmSettings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="voxmesh-ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--knowledge-dir", default="",
                        help="root holding one directory per knowledge base "
                        "(default: VOXMESH_LLM_KNOWLEDGE_DIR, else ./knowledge)")
    parser.add_argument("--name", action="append", default=[], metavar="KB",
                        help="knowledge base to index (repeatable; default: all)")
    parser.add_argument("--rebuild", action="store_true",
                        help="embed again even when the cached index is current")
    parser.add_argument("--index-dir", default="",
                        help="where indexes are cached (default: VOXMESH_LLM_INDEX_DIR, "
                        "else <state_dir>/rag)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = LlmSettings()
    if args.knowledge_dir:
        settings.knowledge_dir = args.knowledge_dir
    if args.index_dir:
        settings.index_dir = args.index_dir
    root, cache = knowledge_root(settings), index_dir(settings)
    names: list[str] = args.name
    if not names and root.is_dir():
        names = sorted(p.name for p in root.iterdir()
                       if p.is_dir() and not p.name.startswith("."))
    if not names:
        print(f"voxmesh-ingest: no knowledge bases in {root}", file=sys.stderr)
        return 2
    try:
        for name in names:
            knowledge_base_dir(root, name)
    except KnowledgeError as exc:
        print(f"voxmesh-ingest: {exc}", file=sys.stderr)
        return 2
    embedder = load_embedder(settings.embedding_model, settings.embedding_threads)
    for name in names:
        with ProgressBar(name) as progress:
            try:
                kb, report = open_knowledge_base(name, root, cache, embedder, args.rebuild,
                                                 progress)
            except KnowledgeError as exc:
                print(f"voxmesh-ingest: {exc}", file=sys.stderr)
                return 1
        state = "built" if report.built else "up to date"
        print(f"{name}: {len(kb.index.passages)} passages, {kb.index.dimensions} dimensions, "
              f"{report.seconds:.2f} s ({state}), index {report.path}", flush=True)
    return 0


class ProgressBar:
    """A tqdm bar over passages, created at the first batch (the total is known then)."""

    def __init__(self, name: str) -> None:
        """A bar labelled ``name``."""
        self.name = name
        self.bar: tqdm | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` passages embedded."""
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.name, unit="passage", mininterval=0,
                            file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
