"""The FAQ table, kept equal to a knowledge base's ``faq.yaml`` (blocking)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import Engine, delete, insert, select

from services.llm.db import schema as t


def read_faq(path: Path) -> list[tuple[str, str]]:
    """(question, answer) pairs of a ``faq.yaml`` list; entries without both are skipped."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    pairs = []
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and entry.get("question") and entry.get("answer"):
            pairs.append((str(entry["question"]).strip(), str(entry["answer"]).strip()))
    return pairs


def sync_faq(engine: Engine, pairs: list[tuple[str, str]]) -> int:
    """Make the table hold exactly ``pairs`` (one transaction); returns the row count."""
    wanted = dict(pairs)
    with engine.begin() as conn:
        stored = {row.question: row.answer for row in conn.execute(
            select(t.faq.c.question, t.faq.c.answer))}
        stale = [q for q, a in stored.items() if wanted.get(q) != a]
        if stale:
            conn.execute(delete(t.faq).where(t.faq.c.question.in_(stale)))
        new = [{"question": q, "answer": a} for q, a in wanted.items()
               if stored.get(q) != a]
        if new:
            conn.execute(insert(t.faq), new)
    return len(wanted)
