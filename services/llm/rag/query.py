"""Mends a caller's question before it is searched, with the knowledge base's own words
as the reference.

Spoken questions reach the knowledge base as a recogniser wrote them ("the show room",
"thanks giving", "dealer ship") and typed ones as people type ("whats ur address"). A
sentence embedding scores such words far from the passage that answers them. Three
repairs, each unable to turn a real word into another one:

- fillers ("uh", "um") are dropped and chat shorthand ("ur", "wat") is spelled out;
- two words whose concatenation is a word of the knowledge base are joined;
- a word that is neither in the embedding model's dictionary nor in the knowledge base
  is replaced by a knowledge-base word one edit away (a swap of two letters is one),
  when that word follows the same previous word somewhere in the knowledge base
  ("credit crads" -> "credit cards").

Only the search and the choice of sentences use the mended text; the conversation keeps
what the caller said.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from rapidfuzz.distance import OSA

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
FILLERS = frozenset({"uh", "uhh", "um", "umm", "er", "erm", "hmm", "mm"})
SHORTHAND = {"ur": "your", "u": "you", "r": "are", "wat": "what", "wot": "what",
             "wich": "which", "whats": "what is", "thru": "through", "pls": "please",
             "plz": "please", "tmrw": "tomorrow"}
MIN_JOINED = 6
"""Shorter joins ("a" + "re") are too likely to be two real words."""


def words(text: str) -> list[str]:
    """Lower-case words of ``text``; hyphens separate words."""
    return _WORD.findall(text.lower().replace("-", " "))


def dictionary_of(vocab_file: Path) -> frozenset[str]:
    """Whole words of a WordPiece vocabulary (``vocab.txt`` of a BERT-style model)."""
    if not vocab_file.is_file():
        return frozenset()
    with vocab_file.open(encoding="utf-8") as lines:
        return frozenset(w for w in (line.strip() for line in lines) if w.isalpha())


class QueryRepair:
    """Mends questions against one knowledge base's vocabulary (see the module doc)."""

    def __init__(self, corpus: Iterable[str], dictionary: frozenset[str]) -> None:
        """``corpus``: the knowledge base's texts; ``dictionary``: known English words.

        With an empty dictionary no word can be told apart from a slip, so words are
        only joined, never replaced.
        """
        self.vocabulary: set[str] = set()
        self.followers: dict[str, set[str]] = {}
        for text in corpus:
            found = words(text)
            self.vocabulary.update(found)
            for before, after in zip(found, found[1:], strict=False):
                self.followers.setdefault(before, set()).add(after)
        self.dictionary = dictionary

    def __call__(self, text: str) -> str:
        """``text`` mended for searching (lower case, punctuation dropped)."""
        spelled = " ".join(SHORTHAND.get(w, w) for w in words(text) if w not in FILLERS)
        return " ".join(self._respell(self._join(spelled.split())))

    def _join(self, found: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(found):
            if i + 1 < len(found):
                joined = found[i] + found[i + 1]
                if len(joined) >= MIN_JOINED and joined in self.vocabulary:
                    out.append(joined)
                    i += 2
                    continue
            out.append(found[i])
            i += 1
        return out

    def _respell(self, found: list[str]) -> list[str]:
        if not self.dictionary:
            return found
        out = list(found)
        for i in range(1, len(out)):
            word = out[i]
            if len(word) < 3 or word in self.dictionary or word in self.vocabulary:
                continue
            near = sorted(w for w in self.followers.get(out[i - 1], ())
                          if OSA.distance(word, w) == 1)
            if len(near) == 1:  # two candidates: no way to tell which was meant
                out[i] = near[0]
        return out
