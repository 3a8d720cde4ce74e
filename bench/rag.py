#!/usr/bin/env python3
"""Retrieval speed and quality on a knowledge base (default: knowledge/maple_motors).

In this process, with the embedding model the dialogue service uses (default: the
packaged all-MiniLM-L6-v2 on the CPU):

1. ingest: loads the model, then builds the knowledge base's index from scratch into a
   temporary cache (parse + embed + save), ``--repeats`` times; passages per second;
2. query latency: every question of the eval set (``knowledge/<kb>.eval.yaml``, shared
   with tests/test_llm_rag.py) searched ``--repeats`` times, each timed as the dialogue
   service sees it (``KnowledgeBase.search``: query embedding + cosine top-k), p50/p95;
3. quality: hit@1, hit@3 and MRR (a hit is any of the question's expected sources), the
   lowest top score of an answerable question and the highest of an off-topic one
   (``min_score`` should lie between them).

Prints markdown tables and saves them to ``bench/results/rag.md``, raw numbers to
``bench/results/rag.json``. The machine is shared, so read timings as an order of magnitude.

Usage: .venv/bin/python bench/rag.py [--knowledge-base NAME] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, save_results  # noqa: E402
from bench.stt import code_version  # noqa: E402
from services.llm.rag.embedder import load_embedder  # noqa: E402
from services.llm.rag.knowledge import KnowledgeBase, knowledge_root, open_knowledge_base  # noqa: E402
from voxmesh.config import LlmSettings  # noqa: E402

TOP_K = 10  # ranks beyond 3 only feed MRR


def ingest(kb_name: str, root: Path, repeats: int, settings: LlmSettings) -> tuple[
        KnowledgeBase, dict[str, Any]]:
    """Load the model and build the index ``repeats`` times; the last build is kept."""
    started = time.perf_counter()
    embedder = load_embedder(settings.embedding_model, settings.embedding_threads)
    load_s = time.perf_counter() - started
    builds: list[float] = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(repeats):
            kb, report = open_knowledge_base(kb_name, root, Path(cache), embedder, rebuild=True)
            builds.append(report.seconds)
        reload = open_knowledge_base(kb_name, root, Path(cache), embedder)[1]
    passages = len(kb.index.passages)
    return kb, {
        "model": str(embedder.path), "model_identity": embedder.identity,
        "dimensions": kb.index.dimensions, "passages": passages,
        "model_load_s": round(load_s, 3), "build_s": [round(b, 4) for b in builds],
        "build_median_s": round(statistics.median(builds), 4),
        "passages_per_s": round(passages / statistics.median(builds), 1),
        "cached_load_s": round(reload.seconds, 4),
    }


async def evaluate(kb: KnowledgeBase, eval_set: dict[str, Any], repeats: int,
                   min_score: float) -> dict[str, Any]:
    """Latency and ranking quality over the eval set."""
    latencies: list[float] = []
    rows: list[dict[str, Any]] = []
    for item in eval_set["questions"]:
        for _ in range(repeats):
            result = await kb.search(item["question"], TOP_K, -1.0)
            latencies.append(result.seconds * 1000)
        sources = [p.source for p in result.passages]
        rank = next((i for i, s in enumerate(sources, 1) if s in item["sources"]), None)
        rows.append({"question": item["question"], "rank": rank,
                     "top_score": round(result.top_score, 4), "top_source": sources[0]})
    off_topic = []
    for question in eval_set.get("off_topic", []):
        result = await kb.search(question, 1, min_score)
        off_topic.append({"question": question, "top_score": round(result.top_score, 4),
                          "hit": result.hit})
    ranks = [r["rank"] for r in rows]
    n = len(ranks)
    return {
        "questions": n, "repeats": repeats,
        "latency_ms_p50": round(percentile(latencies, 50), 2),
        "latency_ms_p95": round(percentile(latencies, 95), 2),
        "hit_at_1": round(sum(r == 1 for r in ranks) / n, 4),
        "hit_at_3": round(sum(r is not None and r <= 3 for r in ranks) / n, 4),
        "mrr": round(sum(1 / r for r in ranks if r is not None) / n, 4),
        "min_answerable_top_score": min(r["top_score"] for r in rows),
        "max_off_topic_top_score": max((o["top_score"] for o in off_topic), default=None),
        "min_score": min_score,
        "rows": rows, "off_topic": off_topic,
    }


def report(meta: dict[str, Any], built: dict[str, Any], quality: dict[str, Any]) -> str:
    """Markdown tables of one run."""
    misses = [r for r in quality["rows"] if r["rank"] != 1]
    model_name = "/".join(Path(built["model"]).parts[-2:])
    lines = [
        f"# Retrieval benchmark: {meta['knowledge_base']}", "",
        f"{meta['date']}, {meta['cpu']} ({meta['nproc']} CPUs, load {meta['loadavg']}), "
        f"{meta['platform']}; code {meta['code']}; torch threads {meta['threads']}.",
        f"Model {model_name} ({built['dimensions']} dimensions). "
        f"Command: `{meta['command']}`.", "",
        "| Measure | Value |", "|---|---|",
        f"| Passages | {built['passages']} |",
        f"| Model load | {built['model_load_s']:.2f} s |",
        f"| Ingest (parse + embed + save), median of {len(built['build_s'])} | "
        f"{built['build_median_s']:.2f} s ({built['passages_per_s']:.0f} passages/s) |",
        f"| Cached index load (unchanged knowledge base) | "
        f"{built['cached_load_s'] * 1000:.1f} ms |",
        f"| Query latency p50 / p95 (embed + search, {quality['questions']} questions "
        f"x {quality['repeats']}) | {quality['latency_ms_p50']:.1f} / "
        f"{quality['latency_ms_p95']:.1f} ms |",
        f"| hit@1 | {quality['hit_at_1']:.3f} |",
        f"| hit@3 | {quality['hit_at_3']:.3f} |",
        f"| MRR | {quality['mrr']:.3f} |",
        f"| Lowest top score, answerable questions | {quality['min_answerable_top_score']:.3f} |",
        f"| Highest top score, off-topic questions | {quality['max_off_topic_top_score']:.3f} |",
        f"| Default min_score | {quality['min_score']} |",
    ]
    if misses:
        lines += ["", "Questions whose expected source was not ranked first:", "",
                  "| Question | Rank | Ranked first |", "|---|---|---|"]
        lines += [f"| {r['question']} | {r['rank'] or '>' + str(TOP_K)} | {r['top_source']} |"
                  for r in misses]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knowledge-base", default="maple_motors")
    parser.add_argument("--repeats", type=int, default=5, help="builds and searches per question")
    parser.add_argument("--min-score", type=float, default=0.25)
    opts = parser.parse_args()
    if opts.repeats < 1:
        parser.error("--repeats must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = LlmSettings()
    root = knowledge_root(settings)
    eval_path = root / f"{opts.knowledge_base}.eval.yaml"
    eval_set = yaml.safe_load(eval_path.read_text(encoding="utf-8"))

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path(
            "/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meta: dict[str, Any] = {
        "knowledge_base": opts.knowledge_base, "eval_set": str(eval_path),
        "command": f".venv/bin/python bench/rag.py --knowledge-base {opts.knowledge_base} "
        f"--repeats {opts.repeats}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu,
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "threads": settings.embedding_threads or min(2, os.cpu_count() or 1),
        "code": code_version(),
    }
    print(f"loading the model and indexing {opts.knowledge_base}...", flush=True)
    kb, built = ingest(opts.knowledge_base, root, opts.repeats, settings)
    print(f"searching {len(eval_set['questions'])} questions x {opts.repeats}...", flush=True)
    quality = asyncio.run(evaluate(kb, eval_set, opts.repeats, opts.min_score))
    text = report(meta, built, quality)
    print("\n" + text)
    saved = save_results("rag", text, {"meta": meta, "ingest": built, "quality": quality})
    print(f"saved {saved}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
