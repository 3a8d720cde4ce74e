"""Split streamed text (LLM deltas) into segments worth synthesising on their own.

Speech can start before the reply is complete: the first segment is released
at the first clause boundary once it has a few words, later ones at sentence
ends, so the first audio waits for one clause while the rest keeps natural
sentence prosody. Released segments are cleaned of markdown and emoji.

A delta boundary can fall anywhere ("$3." before "50", "Dr" before ". Smith"),
so a mark is judged only once the text after it is known: a period needs the
whitespace after it and the first character of the next word ("Dr. Smith",
"a.m. tomorrow", "Nov. 21" and "3.50" do not end sentences; "etc. Call" does).
Every decision depends on the text alone, never on how it was split into
deltas, so any split yields the same segments.
"""

from __future__ import annotations

import re

from services.tts.speech_text import clean_for_speech

# Words after which a period never ends a sentence (titles, Latin abbreviations, units).
_NEVER_ENDS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "ft", "capt", "gen", "lt", "col",
    "sgt", "rev", "hon", "vs", "e.g", "i.e", "cf", "approx", "fig", "dept", "est", "ave", "blvd",
    "rd", "apt", "ste", "ext", "tel", "min", "hr", "hrs", "sec", "oz", "lb", "lbs",
})
# Words after which a period ends a sentence only if the next word starts with a capital
# ("Nov. 21" and "No. 5" do not end; "etc. Call us" does).
_ENDS_IF_CAPITAL = frozenset({
    "etc", "inc", "ltd", "co", "corp", "no", "a.m", "p.m", "am", "pm", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})
_INITIALISM = re.compile(r"^(?:[a-z]\.)+[a-z]$")  # u.s, u.k: "the U.S. Army" stays whole
_CLOSERS = r"[\"'\u201d\u2019)\]*_]*"
# A candidate boundary; ``$`` lets a mark at the end of the buffer be seen (and waited on).
_BOUNDARY = re.compile(
    rf"(?P<sentence>[.!?\u2026]+){_CLOSERS}(?=\s|\Z)"
    rf"|(?P<clause>[,;:]|(?<=\s)--?|[\u2013\u2014]){_CLOSERS}(?=\s|\Z)"
    r"|(?P<newline>\n)"
)
_CLAUSE_MARK = re.compile(rf"(?:[,;:]|(?<=\s)--?|[\u2013\u2014]){_CLOSERS}(?=\s)")
_NEXT_CHAR = re.compile(r"\S")
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
        self._at_line_start = True

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
        head, rest = self._buffer[:cut], self._buffer[cut:]
        self._buffer = rest.lstrip()
        skipped = rest[: len(rest) - len(self._buffer)]
        segment = clean_for_speech(head, line_start=self._at_line_start)
        # The next segment starts a line if a newline ends this one or sits in the gap.
        self._at_line_start = "\n" in skipped or head.endswith("\n") or not head
        if segment:
            into.append(segment)
            self._released_any = True

    def _next_cut(self) -> int | None:
        """Index to cut the buffer at, or None to wait for more text."""
        text = self._buffer
        for match in _BOUNDARY.finditer(text):
            cut = match.start() if match.lastgroup == "newline" else match.end()
            if cut > self._max_chars:
                break
            verdict = self._verdict(text, match)
            if verdict is None:
                return None  # the text after the mark decides; wait for it
            if verdict:
                return cut
        if len(text) > self._max_chars:
            return _fallback_cut(text, self._max_chars)
        return None

    def _verdict(self, text: str, match: re.Match[str]) -> bool | None:
        """Whether ``match`` is a cut; None while the text after it is still unknown."""
        kind = match.lastgroup
        if kind == "newline":
            return bool(_WORD.search(text, 0, match.start()))
        if kind == "clause":
            if self._released_any or len(_WORD.findall(text, 0, match.start())) < (
                    self._min_clause_words):
                return False
            following = _next_char(text, match.end())
            if following is None:
                return None
            # "Nov. 21, 2026" and "1, 2, 3" stay whole.
            return not (text[match.start() - 1].isdigit() and following.isdigit())
        return _sentence_end(text, match.start("sentence"), match.end("sentence"), match.end())


def _next_char(text: str, start: int) -> str | None:
    """First non-space character at or after ``start``; None if there is none yet."""
    found = _NEXT_CHAR.search(text, start)
    return found.group() if found else None


def _sentence_end(text: str, mark: int, mark_end: int, end: int) -> bool | None:
    """Whether the marks at ``text[mark:mark_end]`` end a sentence; None to wait for more."""
    if end == len(text):
        return None  # "3." may become "3.50", "Wait." may become "Wait..."
    marks = text[mark:mark_end]
    if "!" in marks or "?" in marks:
        return True
    following = _next_char(text, end)
    if marks != ".":  # an ellipsis trails off unless a new sentence starts
        return None if following is None else following.isupper()
    line_start = text.rfind("\n", 0, mark) + 1
    word_start = max(text.rfind(" ", line_start, mark) + 1, line_start)
    word = text[word_start:mark].lstrip(_LEADING)
    lowered = word.lower()
    if not word:
        return True
    if word.isdigit() and not text[line_start:word_start].strip():
        return False  # "1. " numbering a list item
    initial = len(word) == 1 and word.isupper() and word != "I"  # "J. Smith"
    initialism = _INITIALISM.match(lowered) and lowered not in _ENDS_IF_CAPITAL  # not a.m.
    if lowered in _NEVER_ENDS or initialism or initial:
        return False
    if following is None:
        return None
    if lowered in _ENDS_IF_CAPITAL:
        return following.isupper()
    return not following.islower()


def _fallback_cut(text: str, limit: int) -> int:
    """Cut an over-long run: after its last clause mark, else at a space between words."""
    window = text[:limit]
    marks = [
        m.end() for m in _CLAUSE_MARK.finditer(window)
        if not (window[max(0, m.start() - 1)].isdigit()
                and (_next_char(text, m.end()) or "").isdigit())
    ]
    if marks:
        return marks[-1]
    # A space between two letters is never inside "3.5 km", "Dr. Smith" or a phone number.
    for i in range(len(window) - 1, 0, -1):
        if window[i] == " " and window[i - 1].isalpha() and text[i + 1 : i + 2].isalpha():
            return i
    space = window.rfind(" ")
    return space if space > 0 else limit
