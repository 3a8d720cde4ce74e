"""Answers a knowledge question with the knowledge base's own sentences.

A 135M-parameter model paraphrases passages into wrong facts ("open Monday to Friday
from 7 AM to 2 PM"); the passage itself is right. When retrieval is confident, the
reply is the best-matching sentences of the best passage, chosen by the same MiniLM
embeddings that retrieved it: exact facts, and faster than the model's first token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.llm.rag.prompt import spoken_source

MAX_SENTENCES = 2
SECOND_SENTENCE_MARGIN = 0.08
FAQ_ALLOWANCE = 0.1
"""An FAQ entry is compared as question and answer together, whose longer text scores
about this much lower than one sentence that says the same, so it answers from
``min_score - FAQ_ALLOWANCE`` (measured on the dealership set: "what is your street
address" scores 0.52 against its entry, 0.41 against the nearest wrong one)."""
"""A second sentence joins the answer when it scores within this of the best one
("how much is it and how long does it take" often needs both)."""
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\"])")
_MARKUP = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+|#+\s+)|[*_`]+")


class SentenceEmbedder(Protocol):
    """The part of :class:`~services.llm.rag.embedder.Embedder` this module needs."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text."""
        ...


@dataclass(frozen=True)
class Evidence:
    """One retrieved passage: where it comes from, its text and its retrieval score."""

    source: str
    text: str
    score: float

    @property
    def is_faq(self) -> bool:
        """A question/answer entry: its first line is the question, the rest the answer."""
        return ".yaml#" in self.source and "\n" in self.text


@dataclass(frozen=True)
class ExtractedAnswer:
    """The reply taken from a passage, the passage, and how close the reply is to the
    question (cosine similarity of their embeddings)."""

    text: str
    evidence: Evidence
    score: float


@dataclass(frozen=True)
class _Unit:
    """Something that may answer: an FAQ entry as a whole, or one sentence of a page."""

    match: str
    """What is compared with the question (an FAQ entry: its question and answer)."""
    reply: str
    evidence: Evidence


def passage_sentences(text: str) -> list[str]:
    """The spoken sentences of a passage: markup stripped, one per list item or sentence."""
    out: list[str] = []
    for line in text.splitlines():
        line = _MARKUP.sub("", line).strip()
        if line:
            out.extend(s.strip() for s in _SPLIT.split(line) if s.strip())
    return out


def _units(evidence: Sequence[Evidence]) -> list[_Unit]:
    units: list[_Unit] = []
    for found in evidence:
        if found.is_faq:
            answer = passage_sentences(found.text.split("\n", 1)[1])[:MAX_SENTENCES]
            if answer:
                units.append(_Unit(found.text, " ".join(answer), found))
        else:
            # The section's heading goes with each sentence: "Address and directions"
            # is what makes "We are at 12 Harbor Road" the answer to "where are you".
            heading = found.source.partition("#")[2]
            units.extend(_Unit(f"{heading}: {s}" if heading else s, s, found)
                         for s in passage_sentences(found.text))
    return units


def extract_answer(embedder: SentenceEmbedder, question: str, evidence: Sequence[Evidence],
                   min_score: float) -> ExtractedAnswer | None:
    """The answer to ``question`` from the retrieved passages (blocking: it embeds).

    Every FAQ entry and every sentence of the other passages is compared with the
    question; the closest answers if it reaches ``min_score``. An FAQ entry answers
    with its own answer; a page's sentence is joined by the next closest sentence of
    the same page when nearly as close (multi-fact questions), in the page's order,
    and the page is named. Below ``min_score`` nothing is taken: the model answers.
    """
    units = _units(evidence)
    if not units:
        return None
    vectors = embedder.embed([question, *(u.match for u in units)])
    scores = vectors[1:] @ vectors[0]
    best = int(np.argmax(scores))
    top, unit = float(scores[best]), units[best]
    if top < min_score - (FAQ_ALLOWANCE if unit.evidence.is_faq else 0.0):
        return None
    if unit.evidence.is_faq:
        return ExtractedAnswer(unit.reply, unit.evidence, top)
    chosen = [i for i, u in enumerate(units)
              if u.evidence is unit.evidence and not u.evidence.is_faq
              and scores[i] >= top - SECOND_SENTENCE_MARGIN]
    chosen = sorted(sorted(chosen, key=lambda i: -scores[i])[:MAX_SENTENCES])
    text = " ".join(units[i].reply for i in chosen)
    page = spoken_source(unit.evidence.source.partition("#")[0])
    return ExtractedAnswer(f"Our {page} page says: {text}", unit.evidence, top)
