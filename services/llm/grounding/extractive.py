"""Answers a knowledge question with the knowledge base's own sentences.

A 135M-parameter model paraphrases passages into wrong facts ("open Monday to Friday
from 7 AM to 2 PM"); the passage itself is right. So a knowledge question is answered
with the sentences of the best retrieved passage that are closest to the question,
chosen by the same MiniLM embeddings that retrieved it: exact facts, and faster than
the model's first token.

How sure the answer is comes from the passage's retrieval score. Measured on the
dealership eval (bench/results/answers.md): the best passage holds the facts for about
nine answerable questions in ten, but the score of a passage that does not answer an
out-of-scope question (up to 0.61) overlaps that of a right one (down to 0.3). So two
bands: at or above ``confident_score`` the sentences are the answer; between
``closest_score`` and it they are offered as the closest thing found, and the agent's
wording (``closest_reply``) says so and gives the phone number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.llm.rag.prompt import spoken_source

MAX_SENTENCES = 2
"""Sentences said from the passage: one rarely holds both facts of "how much is it and
how long does it take" (71 of 85 eval questions answered with one, 78 with two or
more), and each more is seconds of speech."""
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
    """The sentences taken from a passage, the passage, and whether its retrieval score
    made it the answer (``confident``) or only the closest thing found."""

    sentences: tuple[str, ...]
    evidence: Evidence
    confident: bool

    @property
    def text(self) -> str:
        """The sentences, in the passage's order."""
        return " ".join(self.sentences)

    @property
    def page(self) -> str:
        """The passage's page in spoken words ("services and prices")."""
        return spoken_source(self.evidence.source.partition("#")[0])


def passage_sentences(text: str) -> list[str]:
    """The spoken sentences of a passage: markup stripped, one per list item or sentence."""
    out: list[str] = []
    for line in text.splitlines():
        line = _MARKUP.sub("", line).strip()
        if line:
            out.extend(s.strip() for s in _SPLIT.split(line) if s.strip())
    return out


def answer_sentences(evidence: Evidence) -> list[str]:
    """What a passage can say: an FAQ entry's answer, a page section's sentences (less a
    first line that is only the section's heading, as plain-text files write it)."""
    first, _, rest = evidence.text.partition("\n")
    if evidence.is_faq or first.strip() == evidence.source.partition("#")[2].strip():
        return passage_sentences(rest)
    return passage_sentences(evidence.text)


def extract_answer(embedder: SentenceEmbedder, question: str, evidence: Sequence[Evidence],
                   confident_score: float, closest_score: float) -> ExtractedAnswer | None:
    """The answer to ``question`` from the best retrieved passage (blocking: it embeds).

    None when no passage scores ``closest_score``. Otherwise the ``MAX_SENTENCES``
    sentences of the best passage closest to the question (each compared with the
    section's heading before it: "Address and directions" is what makes "We are at 12
    Harbor Road" the answer to "where are you"), in the passage's order; confident when
    the passage scores at least ``confident_score``.
    """
    if not evidence:
        return None
    best = max(evidence, key=lambda found: found.score)
    sentences = answer_sentences(best)
    if best.score < closest_score or not sentences:
        return None
    heading = "" if best.is_faq else best.source.partition("#")[2]
    vectors = embedder.embed([question, *(f"{heading}: {s}" if heading else s
                                          for s in sentences)])
    scores = vectors[1:] @ vectors[0]
    chosen = sorted(np.argsort(-scores, kind="stable")[:MAX_SENTENCES])
    return ExtractedAnswer(tuple(sentences[i] for i in chosen), best,
                           best.score >= confident_score)
