"""The STT benchmark's corpus and how its transcripts are scored.

Each :class:`Utterance` is something a caller or a car dealership's assistant
says: ``text`` is the reference as a person would write it ("9:30 a.m.",
"$39", "555-0142"), ``spoken`` is what the synthesizer is given (numbers
spelled the way people say them, because espeak-ng reads "$28,500" as
"dollar twenty-eight thousand..."). Whisper may write either form, so both
sides go through :func:`normalize_spoken` before :func:`word_errors` counts
the edits.

Sources: 27 utterances are espeak-ng (3 voices x 3 speeds, 3 each) and 12 go
through the TTS service at 24 kHz: Kokoro-82M ``jf_alpha`` and ``jm_kumo``
(Japanese voices reading English) and hibari ``heart`` (distilled from
Kokoro ``af_heart``), 4 each. Sentences differ between sources, so per-source
WER mixes voice and sentence difficulty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ESPEAK_VOICES = ("en-us", "en-gb", "en-us+f3")
ESPEAK_WPM = (130, 160, 200)
TTS_VOICES = ("jf_alpha", "jm_kumo", "heart")
KOKORO_VOICES = ("jf_alpha", "jm_kumo")
"""The TTS voices that are Kokoro-82M itself (``heart`` is hibari, a distilled model)."""

# (reference as written, what the synthesizer says when that differs)
_SENTENCES: list[tuple[str, str | None]] = [
    ("What time does the service department open on Saturday?", None),
    ("Can I book an oil change for Tuesday at 9:30 a.m.?",
     "Can I book an oil change for Tuesday at nine thirty a.m.?"),
    ("We are open Monday to Friday from 7 a.m. to 6 p.m.",
     "We are open Monday to Friday from seven a.m. to six p.m."),
    ("How much is a tire rotation?", None),
    ("A tire rotation costs $39 and takes about 30 minutes.",
     "A tire rotation costs thirty nine dollars and takes about thirty minutes."),
    ("My name is Sarah Johnson and my number is 555-0142.",
     "My name is Sarah Johnson and my number is five five five, zero one four two."),
    ("Please call me back at 555-0198 after 5 p.m.",
     "Please call me back at five five five, zero one nine eight, after five p.m."),
    ("I would like to schedule a test drive for Friday afternoon.", None),
    ("Your appointment is confirmed for March 14th at 10:15 a.m.",
     "Your appointment is confirmed for March fourteenth at ten fifteen a.m."),
    ("Do you have the new hybrid SUV in stock?", None),
    ("The base model starts at $28,500.",
     "The base model starts at twenty eight thousand five hundred dollars."),
    ("Is there a shuttle service while my car is being repaired?", None),
    ("The brake inspection takes about 45 minutes.",
     "The brake inspection takes about forty five minutes."),
    ("Can I drop off my car the night before?", None),
    ("Our showroom closes at 8 p.m. on weekdays.",
     "Our showroom closes at eight p.m. on weekdays."),
    ("I need to cancel my appointment on Thursday.", None),
    ("What is the warranty on a certified used car?", None),
    ("Certified cars come with a 12 month warranty.",
     "Certified cars come with a twelve month warranty."),
    ("My car has about 60,000 miles on it.", "My car has about sixty thousand miles on it."),
    ("Could you send the quote to my email?", None),
    ("The 30,000 mile service costs $420.",
     "The thirty thousand mile service costs four hundred twenty dollars."),
    ("We can fit you in on April 2nd at 1:45 p.m.",
     "We can fit you in on April second at one forty five p.m."),
    ("Do you offer financing for first time buyers?", None),
    ("Ask for Michael in the parts department.", None),
    ("The car wash is free with every service visit.", None),
    ("Is the dealership open on Sunday?", None),
    ("Your car will be ready by 4:30 this afternoon.",
     "Your car will be ready by four thirty this afternoon."),
    # -- from here on: the TTS service --
    ("How long does a battery replacement take?", None),
    ("I want to trade in my Honda Civic.", None),
    ("The lease is $299 a month for 36 months.",
     "The lease is two hundred ninety nine dollars a month for thirty six months."),
    ("Please hold while I check the schedule.", None),
    ("Can someone look at my check engine light today?", None),
    ("The parts will arrive on Wednesday, June 21st.",
     "The parts will arrive on Wednesday, June twenty first."),
    ("You can reach the service desk at 555-0177.",
     "You can reach the service desk at five five five, zero one seven seven."),
    ("Thank you, David, we will see you on Monday at 8.",
     "Thank you, David, we will see you on Monday at eight."),
    ("Do I need an appointment for a wheel alignment?", None),
    ("My name is Emily Chen, that is C H E N.", None),
    ("We are closed on July 4th.", "We are closed on July fourth."),
    ("Can you text me a reminder the day before?", None),
]
_ESPEAK_COUNT = 27


@dataclass(frozen=True)
class Utterance:
    """One benchmark clip: what is said, by which synthesizer and voice."""

    index: int
    text: str
    spoken: str
    engine: str
    """``espeak`` (espeak-ng in this process) or ``tts`` (the VoxMesh TTS service)."""
    voice: str
    wpm: int = 0
    """espeak-ng speaking rate; 0 for the TTS service (its default speed)."""

    @property
    def source(self) -> str:
        """A short label such as ``espeak en-gb 200wpm`` or ``tts jf_alpha``."""
        if self.engine == "espeak":
            return f"espeak {self.voice} {self.wpm}wpm"
        return f"tts {self.voice}"


def _build() -> list[Utterance]:
    utterances = []
    for i, (text, spoken) in enumerate(_SENTENCES):
        if i < _ESPEAK_COUNT:
            # Voice changes every clip, speed every 3: each of the 9 pairs gets 3 clips.
            voice, wpm = ESPEAK_VOICES[i % 3], ESPEAK_WPM[(i // 3) % 3]
            utterances.append(Utterance(i, text, spoken or text, "espeak", voice, wpm))
        else:
            voice = TTS_VOICES[(i - _ESPEAK_COUNT) % len(TTS_VOICES)]
            utterances.append(Utterance(i, text, spoken or text, "tts", voice))
    return utterances


UTTERANCES: list[Utterance] = _build()
QUICK: list[Utterance] = [UTTERANCES[i] for i in (0, 4, 10, 14, 20, 27, 28, 29)]
"""Eight clips for a smoke run: espeak voices and speeds, and each TTS voice once."""

# -- normalisation ---------------------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {
    "first": "one", "second": "two", "third": "three", "fourth": "four", "fifth": "five",
    "sixth": "six", "seventh": "seven", "eighth": "eight", "ninth": "nine", "tenth": "ten",
    "eleventh": "eleven", "twelfth": "twelve", "thirteenth": "thirteen",
    "fourteenth": "fourteen", "fifteenth": "fifteen", "sixteenth": "sixteen",
    "seventeenth": "seventeen", "eighteenth": "eighteen", "nineteenth": "nineteen",
    "twentieth": "twenty", "thirtieth": "thirty",
}
_NUMBER_WORDS = set(_ONES) | set(_TENS[2:]) | {"hundred", "thousand", "million"}

_AM_PM = re.compile(r"(?<![a-z'])([ap])\.?\s?m\b\.?")
_MONEY = re.compile(r"\$\s?(\d[\d,]*)(?:\.(\d\d))?")
_PHONE = re.compile(r"\b(\d{3})[-. ](\d{4})\b|\b(\d{7,})\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d\d)\b")
_DOTTED_TIME = re.compile(r"\b(\d{1,2})\.(\d\d)(?=\s*[ap]m\b)")
_ORDINAL_DIGITS = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_INTEGER = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")


def number_words(n: int) -> str:
    """Cardinal words for ``0 <= n < 10**9``, the American way: 420 -> "four hundred twenty"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{number_words(head)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def _integer(match: re.Match[str]) -> str:
    raw = match.group(0).replace(",", "")
    whole, _, fraction = raw.partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        return _digits(whole)  # "0142": read digit by digit
    words = number_words(int(whole))
    return f"{words} point {_digits(fraction)}" if fraction else words


def normalize_spoken(text: str) -> list[str]:
    """Words of ``text`` in one spoken form, so written and spoken numbers compare equal.

    Lower-cased, punctuation and hyphens dropped, and:

    * "9:30" (or "9.30 pm") -> "nine thirty", "8:00" -> "eight", "9:05" -> "nine zero five";
      "o'clock" is dropped;
    * "a.m.", "AM", "a m" -> "am" (likewise "pm");
    * "$28,500" -> "twenty eight thousand five hundred dollars" ("$5.99" adds "ninety nine cents");
    * phone numbers ("555-0142", "555 0142", 7+ digits) and digit runs with a leading zero
      are read digit by digit; "oh" -> "zero";
    * other numbers are cardinal words without "and" ("four hundred and twenty" ->
      "four hundred twenty");
    * ordinals become cardinals ("14th", "fourteenth" -> "fourteen"; "first" -> "one"), so
      "March 14" and "March fourteenth" agree;
    * "%" -> "percent", "ok"/"okay" -> "okay";
    * spelled letters are one word: "C H E N", "C-H-E-N" -> "chen", like "CHEN".

    Args:
        text: A reference or a transcript.

    Returns:
        The normalised words, in order.
    """
    text = text.lower().replace("\u2019", "'")
    text = _AM_PM.sub(lambda m: f" {m.group(1)}m ", text)
    text = _MONEY.sub(lambda m: f"{m.group(1)} dollars"
                      + (f" {int(m.group(2))} cents" if m.group(2) and int(m.group(2)) else ""),
                      text)
    text = _PHONE.sub(lambda m: " " + _digits("".join(g for g in m.groups() if g)) + " ", text)
    text = _DOTTED_TIME.sub(r"\1:\2", text)
    text = _TIME.sub(lambda m: m.group(1) + ("" if m.group(2) == "00" else f" {m.group(2)}"),
                     text)
    text = _ORDINAL_DIGITS.sub(r"\1", text)
    text = text.replace("%", " percent ")
    text = _INTEGER.sub(_integer, text)
    words = re.findall(r"[a-z0-9']+", text.replace("-", " "))
    out: list[str] = []
    for i, word in enumerate(words):
        word = word.strip("'")
        word = _ORDINALS.get(word, word)
        if word == "oh":
            word = "zero"
        elif word in ("ok", "okay"):
            word = "okay"
        if not word or word == "o'clock":
            continue
        if (word == "and" and out and out[-1] in _NUMBER_WORDS
                and i + 1 < len(words) and words[i + 1] in _NUMBER_WORDS):
            continue
        out.append(word)
    return _join_letters(out)


def _join_letters(words: list[str]) -> list[str]:
    """Merge runs of two or more one-letter words ("s u v" -> "suv")."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        out.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        if word:
            out.append(word)
    return out


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after :func:`normalize_spoken`."""
    ref = normalize_spoken(reference)
    errors = word_errors(ref, normalize_spoken(hypothesis))
    return errors / len(ref) if ref else float(errors > 0)
