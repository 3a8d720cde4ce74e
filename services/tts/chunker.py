"""Split streamed text (LLM deltas) into segments worth synthesising on their own.

Speech can start before the reply is complete: the first segment is released
at the first clause boundary once it has a few words, later ones at sentence
ends, so the first audio waits for one clause while the rest keeps natural
sentence prosody. Periods that do not end a sentence (``Dr. Smith``,
``$3.50``, ``e.g. this``) are recognised; released segments are cleaned of
markdown and emoji.
"""

from __future__ import annotations

import re

from services.tts.speech_text import clean_for_speech

# Words after which a period never ends a sentence.
_NEVER_ENDS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "ft", "capt", "gen", "lt", "col",
    "sgt", "rev", "hon", "vs", "e.g", "i.e", "cf", "approx", "fig", "dept", "est",
})
# Words after which a period ends a sentence only if the next word is capitalised.
_ENDS_IF_CAPITAL = frozenset({"etc", "inc", "ltd", "co", "corp", "no", "a.m", "p.m"})
_INITIALISM = re.compile(r"^(?:[a-z]\.)+[a-z]$")  # u.s, u.k: ambiguous like "etc"
_CLOSERS = r"[\"'\u201d\u2019)\]*_]*"
_BOUNDARY = re.compile(
    rf"(?P<sentence>[.!?\u2026]+){_CLOSERS}(?=\s)"
    rf"|(?P<clause>[,;:]|(?<=\s)--?|[\u2013\u2014]){_CLOSERS}(?=\s)"
    r"|(?P<newline>\n)"
)
_WORD = re.compile(r"\w+")
_LEADING = "([\"'\u201c\u2018*_"


class TextChunker:
    """Buffers text chunks and releases speakable segments.

    Example:
        >>> c = TextChunker()
        >>> c.push("Thank you for calling, how can")
        ['Thank you for calling,']
    """

    def __init__(self, min_clause_words: int = 3, max_chars: int = 300) -> None:
        """Create an empty chunker.

        Args:
            min_clause_words: Words the first segment needs before a clause boundary releases it.
            max_chars: Longest segment; longer runs are split at a clause or a space.
        """
        self._min_clause_words = min_clause_words
        self._max_chars = max_chars
        self._buffer = ""
        self._released_any = False

    @property
    def pending(self) -> str:
        """Text received but not released yet."""
        return self._buffer

    def push(self, text: str) -> list[str]:
        """Add a chunk of text; return the segments it completes (possibly none)."""
        self._buffer += text
        segments: list[str] = []
        while (cut := self._next_cut()) is not None:
            self._take(cut, segments)
        return segments

    def flush(self) -> list[str]:
        """Release everything buffered, complete sentence or not."""
        segments = self.push("")
        self._take(len(self._buffer), segments)
        return segments

    def _take(self, cut: int, into: list[str]) -> None:
        head, self._buffer = self._buffer[:cut], self._buffer[cut:].lstrip()
        segment = clean_for_speech(head)
        if segment:
            into.append(segment)
            self._released_any = True

    def _next_cut(self) -> int | None:
        """Index to cut the buffer at, or None to wait for more text."""
        text = self._buffer
        # Only the first max_chars can hold the next cut, so a huge chunk costs no rescans.
        for match in _BOUNDARY.finditer(text, 0, self._max_chars + 2):
            kind = match.lastgroup
            if kind == "newline":
                if _WORD.search(text, 0, match.start()):
                    return match.start()
            elif kind == "clause":
                if not self._released_any and self._words(text[: match.start()]):
                    return match.end()
            else:
                verdict = _sentence_end(text, match.start("sentence"), match.end())
                if verdict is None:
                    return None  # the next word decides; wait for it
                if verdict:
                    return match.end()
        if len(text) > self._max_chars:
            return _fallback_cut(text, self._max_chars)
        return None

    def _words(self, text: str) -> bool:
        return len(_WORD.findall(text)) >= self._min_clause_words


def _sentence_end(text: str, mark: int, end: int) -> bool | None:
    """Whether the punctuation at ``mark`` ends a sentence; None if the next word must decide."""
    if text[mark] != ".":
        return True
    line_start = text.rfind("\n", 0, mark) + 1
    word_start = max(text.rfind(" ", line_start, mark) + 1, line_start)
    word = text[word_start:mark].lstrip(_LEADING)
    lowered = word.lower()
    if not word:
        return True
    if word.isdigit() and not text[line_start:word_start].strip():
        return False  # "1. " numbering a list item
    if lowered in _NEVER_ENDS or (len(word) == 1 and word.isupper() and word != "I"):
        return False
    if lowered in _ENDS_IF_CAPITAL or _INITIALISM.match(lowered):
        rest = text[end:].lstrip()
        if not rest:
            return None
        return rest[0].isupper()
    return True


def _fallback_cut(text: str, limit: int) -> int:
    """Cut an over-long run: after its last clause mark, else at its last space."""
    window = text[:limit]
    marks = [m.end() for m in re.finditer(rf"[,;:\u2013\u2014]{_CLOSERS}(?=\s)", window)]
    if marks:
        return marks[-1]
    space = window.rfind(" ")
    return space if space > 0 else limit
