"""Text as it should be spoken: markdown symbols and emoji removed, whitespace collapsed."""

from __future__ import annotations

import re

# Emoji and pictographs, with the joiners and modifiers that glue them into sequences.
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags, skin tones
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats
    "\u2b00-\u2bff"  # arrows and stars
    "\u2190-\u21ff"  # arrows
    "\u231a\u231b\u23e9-\u23fa"  # watches, hourglasses, media buttons
    "\ufe0e\ufe0f\u200d\u20e3"  # variation selectors, zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_CODE_FENCE = re.compile(r"```[^\n]*")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^>\s]*)>")
# A list bullet, list number ("1." or "2)"), heading or quote marker at the start of a line.
_LINE_MARKER = re.compile(r"(?m)^[ \t]*(?:[-*+>\u2022]|#{1,6}|\d{1,2}[.)])[ \t]+")
# Emphasis and code symbols anywhere; underscores only as word-edge emphasis (not snake_case).
_SYMBOLS = re.compile(r"[*#`~]+|(?<!\w)_+|_+(?!\w)")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_MARK = re.compile(r"\s+(?=[,.!?;:])")
_SPEAKABLE = re.compile(r"\w", re.UNICODE)


def clean_for_speech(text: str, *, line_start: bool = True) -> str:
    """Return ``text`` without markdown symbols, bullets or emoji, on one line.

    Args:
        text: Text as an LLM wrote it, possibly with markdown.
        line_start: Whether ``text`` begins a line; a piece cut from mid-line keeps a
            leading "-" or "2." since there it is not a list marker.

    Returns:
        The words to speak, single-spaced; empty if nothing speakable is left.
    """
    text = _CODE_FENCE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    if line_start:
        text = _LINE_MARKER.sub("", text)
    else:  # only lines after the first start a line
        first, newline, rest = text.partition("\n")
        text = first + newline + _LINE_MARKER.sub("", rest)
    text = _EMOJI.sub(" ", text)
    text = _SYMBOLS.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    text = _SPACE_BEFORE_MARK.sub("", text)
    return text if _SPEAKABLE.search(text) else ""
