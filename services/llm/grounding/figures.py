"""Figures in text: prices, clock times, phone numbers, counts, street numbers, dates.

A reply may state a figure only if its facts support it (the retrieved passages, the
agent's prompt, the user's own words, tool results). A small model invents figures
fluently ("$100 to $250", "510-239-7486"), so each figure is pulled out of the text in a
normal form and looked up in the figures of the support. Normal forms make "$29",
"29 dollars" and "twenty-nine dollars" one figure, and "8 AM", "8:00 a.m." and
"eight in the morning" another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a figure measures."""

    PHONE = "phone"
    TIME = "time"
    MONEY = "money"
    NUMBER = "number"
    """Counts, durations, distances, street numbers, years, percentages."""


@dataclass(frozen=True)
class Figure:
    """One figure: its kind, normal form (``"29"``, ``"8:00"``, ``"5550142"``) and text."""

    kind: Kind
    value: str
    text: str


_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000}
_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
# "twenty-nine", "two hundred and forty nine", "five thousand"
_WORD_NUMBER = rf"(?:(?:{_WORD})(?:[\s-]+(?:and\s+)?(?:{_WORD}))*)"
_DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"

_PHONE = re.compile(r"(?<![\d-])(?:\(?\d{3}\)?[\s.-]?)?\d{3}[\s.-]\d{4}(?![\d-])")
_TIME = re.compile(
    rf"\b(?P<hour>\d{{1,2}}|{_WORD_NUMBER})(?::(?P<minute>\d{{2}}))?\s*"
    r"(?P<half>a\.?\s?m\.?|p\.?\s?m\.?|o'?clock|in the morning|in the afternoon|"
    r"in the evening|at night|noon)(?![a-z])", re.IGNORECASE)
_NOON = re.compile(r"\b(?:noon|midday|midnight)\b", re.IGNORECASE)
_MONEY = re.compile(
    rf"\$\s?(?P<a>{_DIGITS})|(?P<b>{_DIGITS}|{_WORD_NUMBER})\s*(?:dollars?|bucks|usd)\b",
    re.IGNORECASE)
_NUMBER = re.compile(rf"(?<![\w.$])(?P<n>{_DIGITS})(?![\w])|\b(?P<w>{_WORD_NUMBER})\b",
                     re.IGNORECASE)

IGNORED_NUMBERS = frozenset({"0", "1"})
"""'one' and 'zero' are words of speech ("one moment", "which one"), not facts."""


def word_number(text: str) -> int | None:
    """``"two hundred and forty-nine"`` -> 249; None when ``text`` is not one."""
    total, current = 0, 0
    words = [w for w in re.split(r"[\s-]+", text.lower()) if w and w != "and"]
    if not words:
        return None
    for word in words:
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES:
            current = max(current, 1) * _SCALES[word]
            if _SCALES[word] >= 1000:
                total, current = total + current, 0
        else:
            return None
    return total + current


def _number(text: str) -> str | None:
    """Normal form of a digit or word number: ``"5,000"`` -> ``"5000"``, ``"49.00"`` -> ``"49"``."""
    text = text.strip()
    if text[:1].isdigit():
        value = float(text.replace(",", ""))
        return str(int(value)) if value == int(value) else f"{value:g}"
    number = word_number(text)
    return None if number is None else str(number)


def _time(hour_text: str, minute: str | None, half: str) -> str | None:
    hour = _number(hour_text)
    if hour is None or not hour.isdigit() or not 0 < int(hour) <= 12:
        return None
    h = int(hour)
    half = half.lower().replace(".", "").replace(" ", "")
    if half.startswith("p") or half in ("intheafternoon", "intheevening", "atnight"):
        h = h % 12 + 12
    elif half.startswith("a") or half == "inthemorning":
        h = h % 12
    if half.startswith("o"):  # "o'clock" says nothing about the half of the day
        return f"{h % 12}:{minute or '00'}~"
    return f"{h}:{minute or '00'}"


def extract(text: str) -> list[Figure]:
    """Every figure in ``text``, in order; each character belongs to at most one figure."""
    taken = [False] * len(text)
    found: list[tuple[int, Figure]] = []

    def claim(match: re.Match[str], kind: Kind, value: str | None) -> None:
        start, end = match.span()
        if value is None or any(taken[start:end]):
            return
        for i in range(start, end):
            taken[i] = True
        found.append((start, Figure(kind, value, match.group(0))))

    for match in _PHONE.finditer(text):
        claim(match, Kind.PHONE, re.sub(r"\D", "", match.group(0))[-7:])
    for match in _TIME.finditer(text):
        claim(match, Kind.TIME, _time(match["hour"], match["minute"], match["half"]))
    for match in _NOON.finditer(text):
        claim(match, Kind.TIME, "0:00" if match.group(0).lower() == "midnight" else "12:00")
    for match in _MONEY.finditer(text):
        claim(match, Kind.MONEY, _number(match["a"] or match["b"]))
    for match in _NUMBER.finditer(text):
        value = _number(match["n"] or match["w"])
        if value not in IGNORED_NUMBERS:
            claim(match, Kind.NUMBER, value)
    return [figure for _, figure in sorted(found, key=lambda item: item[0])]


class Support:
    """The figures a reply may state: those of its facts."""

    def __init__(self, *texts: str) -> None:
        self.figures = [f for text in texts for f in extract(text)]
        self._values = {(f.kind, f.value) for f in self.figures}

    def supports(self, figure: Figure) -> bool:
        """Whether ``figure`` occurs in the facts, as the same kind of figure.

        "$29" is backed by "29 dollars" or "costs 29"; a count is not backed by a price
        ("20 cars" by "$20"), 8 PM not by 8 AM. Only a time that names no half of the
        day ("eight o'clock", or a bare "at eight") is backed by either.
        """
        if (figure.kind, figure.value) in self._values:
            return True
        if figure.kind is Kind.MONEY:  # "$29" is backed by "costs 29" too
            return (Kind.NUMBER, figure.value) in self._values
        if figure.kind is Kind.NUMBER and figure.value.isdigit() and 0 < int(figure.value) <= 12:
            # "we open at eight": a bare hour, backed by that clock time in either half
            if any((Kind.TIME, f"{int(figure.value) % 12 + offset}:00") in self._values
                   for offset in (0, 12)):
                return True
        if figure.kind is Kind.TIME and figure.value.endswith("~"):
            hour, minute = figure.value.rstrip("~").split(":")
            return any((Kind.TIME, f"{int(hour) + offset}:{minute}") in self._values
                       for offset in (0, 12))
        return False

    def unsupported(self, text: str) -> list[Figure]:
        """The figures of ``text`` the facts do not back."""
        return [f for f in extract(text) if not self.supports(f)]
