"""What the user's words mean for turn-taking: backchannels, noise, and same-text checks.

Pure functions, so the rules are unit-tested without audio.
"""

from __future__ import annotations

import re

BACKCHANNELS = frozenset({
    "yeah", "yes", "yep", "yup", "ok", "okay", "right", "sure", "uh", "huh", "uh-huh",
    "uhhuh", "mhm", "mm", "mmm", "hmm", "mm-hmm", "mmhmm", "hm", "ah", "oh", "aha", "cool",
    "great", "got", "it", "i", "see", "alright", "fine", "good", "nice", "um", "er",
})
"""Words that on their own only tell the speaker "go on" (\"got it\", \"I see\", \"uh-huh\")."""

MAX_BACKCHANNEL_WORDS = 3
"""A listener's feedback is short; more words than this are a real turn."""

_NON_SPEECH = re.compile(r"[\[(*][^\])*]*[\])*]")  # Whisper's "(coughs)", "[Music]", "*sigh*"
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-case words of ``text``, without Whisper's non-speech annotations."""
    return _WORD.findall(_NON_SPEECH.sub(" ", text.lower()))


def is_backchannel(text: str) -> bool:
    """True when ``text`` carries no request: empty, noise, or a short "go on"."""
    said = words(text)
    return len(said) <= MAX_BACKCHANNEL_WORDS and all(w in BACKCHANNELS for w in said)


def same_words(a: str, b: str) -> bool:
    """Whether two transcripts say the same thing (case, punctuation and noise aside)."""
    return words(a) == words(b)
