"""Checks a streamed reply sentence by sentence before any of it is spoken.

The model's text arrives in small pieces; the gate holds each sentence until it ends,
then lets it through only if every figure in it is backed by the turn's facts (see
:mod:`.figures`). A sentence with an invented price, time or phone number is dropped
whole: half a sentence is worse than none. The cost is the time to finish the first
sentence (tens of milliseconds at a small model's speed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.llm.grounding.figures import Figure, Support

MAX_HELD_CHARS = 120
"""Text without a sentence end is checked and let go in pieces of about this size, cut
at a space, so a run-on reply still streams."""
# A sentence ends at . ! ? followed by a space ("7.5" has none; "a.m." is not an end).
_SENTENCE_END = re.compile(r"(?<!\b[ap]\.m)[.!?]+[\"')\]]*\s+|\n+", re.IGNORECASE)


@dataclass
class Dropped:
    """A sentence the gate withheld and the figures that caused it."""

    sentence: str
    figures: list[Figure]


@dataclass
class SentenceGate:
    """Lets through the sentences whose figures ``support`` backs.

    Example::

        gate = SentenceGate(Support(prompt, passages))
        for piece in stream:
            for sentence in gate.push(piece):
                speak(sentence)
        for sentence in gate.flush():
            speak(sentence)
    """

    support: Support
    dropped: list[Dropped] = field(default_factory=list)
    passed: int = 0
    _pending: str = ""

    def push(self, piece: str) -> Iterator[str]:
        """Add streamed text; yields each sentence it completed that may be spoken."""
        self._pending += piece
        while (cut := self._cut()) is not None:
            sentence, self._pending = self._pending[:cut], self._pending[cut:]
            yield from self._check(sentence)

    def _cut(self) -> int | None:
        """Where the first complete sentence (or over-long run) of the pending text ends."""
        end = _SENTENCE_END.search(self._pending)
        if end is not None:
            return end.end()
        if len(self._pending) > MAX_HELD_CHARS:
            space = self._pending.rfind(" ", 0, MAX_HELD_CHARS)
            return space + 1 if space > 0 else None
        return None

    def flush(self) -> Iterator[str]:
        """The last, unterminated sentence, if it may be spoken."""
        sentence, self._pending = self._pending, ""
        if sentence.strip():
            yield from self._check(sentence)

    def _check(self, sentence: str) -> Iterator[str]:
        unsupported = self.support.unsupported(sentence)
        if unsupported:
            self.dropped.append(Dropped(sentence.strip(), unsupported))
            return
        self.passed += 1
        yield sentence
