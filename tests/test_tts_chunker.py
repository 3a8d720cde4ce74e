"""The TTS text chunker (pure): tricky cases, then properties over any split into deltas."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.tts.chunker import TextChunker
from services.tts.speech_text import clean_for_speech


def feed(text: str, cuts: list[int], chunker: TextChunker | None = None) -> list[str]:
    """Push ``text`` split at ``cuts`` (sorted offsets), then flush; all segments released."""
    chunker = chunker or TextChunker()
    bounds = [0, *cuts, len(text)]
    out = [s for a, b in zip(bounds, bounds[1:], strict=False) for s in chunker.push(text[a:b])]
    return out + chunker.flush()


def every(text: str, step: int) -> list[int]:
    """Cuts every ``step`` characters."""
    return list(range(step, len(text), step))


CASES: list[tuple[str, list[str]]] = [
    # prices, decimals, units
    ("It costs $3.50 today. Thanks", ["It costs $3.50 today.", "Thanks"]),
    ("The base model is $28,500. Want a quote?", ["The base model is $28,500.", "Want a quote?"]),
    ("The shop is 3.5 km away. Turn left", ["The shop is 3.5 km away.", "Turn left"]),
    ("Pi is roughly 3.14159 as you know. Yes", ["Pi is roughly 3.14159 as you know.", "Yes"]),
    # titles and abbreviations
    ("Dr. Smith will see you. Bye", ["Dr. Smith will see you.", "Bye"]),
    ("Mr. and Mrs. Lee are here. Ok", ["Mr. and Mrs. Lee are here.", "Ok"]),
    ("We are on Harbor St. near the bay. Ok", ["We are on Harbor St. near the bay.", "Ok"]),
    ("Bring papers e.g. this form. Ok", ["Bring papers e.g. this form.", "Ok"]),
    ("Use the app i.e. our website. Ok", ["Use the app i.e. our website.", "Ok"]),
    ("We fix brakes and tires etc. and more. Ok", ["We fix brakes and tires etc. and more.", "Ok"]),
    ("We fix brakes and tires etc. Call us. Ok",
     ["We fix brakes and tires etc.", "Call us.", "Ok"]),
    ("It ships across the U.S. Army bases too. Ok",
     ["It ships across the U.S. Army bases too.", "Ok"]),
    ("It is sedan vs. coupe for you. Ok", ["It is sedan vs. coupe for you.", "Ok"]),
    ("Park in bay No. 5 please. Ok", ["Park in bay No. 5 please.", "Ok"]),
    ("Ask for agent J. Smith today. Ok", ["Ask for agent J. Smith today.", "Ok"]),
    # times and dates
    ("We open at 9:30 a.m. tomorrow. Ok", ["We open at 9:30 a.m. tomorrow.", "Ok"]),
    ("We open at 9 a.m. See you then", ["We open at 9 a.m.", "See you then"]),
    ("Pick up at 5 p.m. on Friday. Ok", ["Pick up at 5 p.m. on Friday.", "Ok"]),
    ("The bus leaves at 10.30 daily. Ok", ["The bus leaves at 10.30 daily.", "Ok"]),
    ("Your visit is on Nov. 21 at noon. Ok", ["Your visit is on Nov. 21 at noon.", "Ok"]),
    ("It was made on Nov. 21, 2026 in Ohio, and sold. Ok",
     ["It was made on Nov. 21, 2026 in Ohio,", "and sold.", "Ok"]),
    # contacts and links
    ("Write to jane.doe@example.com today. Ok", ["Write to jane.doe@example.com today.", "Ok"]),
    ("Write to jane.doe@example.com. Then wait", ["Write to jane.doe@example.com.", "Then wait"]),
    ("Call 555-0142 or (555) 014-2000 now. Ok", ["Call 555-0142 or (555) 014-2000 now.", "Ok"]),
    ("Dial +1 555 014 2000 for sales. Ok", ["Dial +1 555 014 2000 for sales.", "Ok"]),
    ("See https://example.com/a.b?x=1 for more. Ok",
     ["See https://example.com/a.b?x=1 for more.", "Ok"]),
    ("Visit [our site](https://x.y/a) for hours. Ok", ["Visit our site for hours.", "Ok"]),
    # ellipses, first clause, other marks
    ("Hmm... let me check that. Ok", ["Hmm... let me check that.", "Ok"]),
    ("Let me see... Yes, it is ready. Ok", ["Let me see...", "Yes, it is ready.", "Ok"]),
    ("Thank you for calling, how can I help? Bye",
     ["Thank you for calling,", "how can I help?", "Bye"]),
    ("Sure, I can help with that, really. Ok", ["Sure, I can help with that,", "really.", "Ok"]),
    ("Great! We have it. Ok", ["Great!", "We have it.", "Ok"]),
    # markdown and emoji
    ("**Good news**, your car is *ready* 🚗 now. Ok",
     ["Good news, your car is ready now.", "Ok"]),
    ("## Hours\n- Sales: 9 to 8\n- Service 👍🏽 desk\n1. Oil\n2) Tires",
     ["Hours", "Sales: 9 to 8", "Service desk", "Oil", "Tires"]),
    ("Run `voxmesh up` to start it. Ok", ["Run voxmesh up to start it.", "Ok"]),
    ("Pick a plan. - the basic one. Ok", ["Pick a plan.", "- the basic one.", "Ok"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:30] for c in CASES])
@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 7, 1000])
def test_tricky_cases(text: str, expected: list[str], step: int) -> None:
    """Each case gives the same segments whatever the delta size."""
    assert feed(text, every(text, step)) == expected


def test_holds_a_period_it_cannot_classify_yet() -> None:
    """"3." may become "3.50" and "Dr" may be followed by "."; nothing is released early."""
    chunker = TextChunker()
    assert chunker.push("It costs $3.") == []
    assert chunker.push("50 today.") == []  # "today." might still be "today..."
    assert chunker.push(" ") == []  # the next word's first letter decides
    assert chunker.push("Ok") == ["It costs $3.50 today."]
    chunker = TextChunker()
    assert chunker.push("Ask Dr") == []
    assert chunker.push(". Smith about it") == []
    assert chunker.flush() == ["Ask Dr. Smith about it"]


def test_first_clause_released_before_the_sentence_ends() -> None:
    """The first audio waits for one clause; later clauses wait for their sentence."""
    chunker = TextChunker()
    assert chunker.push("Thank you for calling, h") == ["Thank you for calling,"]
    assert chunker.push("ow can I help, today") == []
    assert chunker.push("? W") == ["how can I help, today?"]


def test_clean_for_speech_mid_line_keeps_dashes() -> None:
    """A piece cut from mid-line is not a line start: its "-" is not a bullet."""
    assert clean_for_speech("- the basic one.", line_start=False) == "- the basic one."
    assert clean_for_speech("- the basic one.") == "the basic one."
    assert clean_for_speech("See <https://x.y/a> now → ok") == "See https://x.y/a now ok"


# -- properties ------------------------------------------------------------------------------

WORDS = ["car", "service", "today", "brakes", "tires", "we", "open", "call", "ready", "it",
         "oil", "the", "your", "visit", "desk", "price", "and", "a", "parts", "morning"]
# Tokens that must never be split inside.
PROTECTED = [
    "$3.50", "$28,500", "3.5 km", "10.30", "9:30 a.m.", "5 p.m.", "Nov. 21", "Dr. Smith",
    "Mr. Lee", "Mrs. Jones", "Harbor St.", "e.g.", "i.e.", "etc.", "U.S.", "vs.", "No. 5",
    "jane.doe@example.com", "555-0142", "(555) 014-2000", "+1 555 014 2000",
    "https://example.com/a.b", "J. Smith", "3.14159",
]
ENDINGS = [".", ".", ".", "!", "?", "..."]


@dataclass
class Generated:
    """A text and the character spans of the protected tokens in it."""

    text: str
    spans: list[tuple[int, int]]


@st.composite
def dealership_text(draw: st.DrawFn) -> Generated:
    """Sentences of words, numbers, prices, abbreviations, e-mails, phones and times."""
    text, spans = "", []
    for _ in range(draw(st.integers(1, 5))):
        parts: list[tuple[str, bool]] = []
        for _ in range(draw(st.integers(1, 9))):
            if draw(st.integers(0, 3)) == 0:
                parts.append((draw(st.sampled_from(PROTECTED)), True))
            else:
                word = draw(st.sampled_from(WORDS)) + draw(st.sampled_from(["", "", "", ","]))
                parts.append((word, False))
        ending = draw(st.sampled_from(ENDINGS))
        last, protected = parts[-1]
        parts[-1] = (last.removesuffix(","), protected)
        if parts[-1][0].endswith(".") and ending in (".", "..."):
            ending = ""  # "a.m." or "etc." ends the sentence itself
        first, protected = parts[0]
        if not protected:
            parts[0] = (first[0].upper() + first[1:], protected)
        if text:
            text += draw(st.sampled_from([" ", " ", "\n"]))
        for i, (part, protected) in enumerate(parts):
            if i:
                text += " "
            if protected:
                spans.append((len(text), len(text) + len(part)))
            text += part
        text += ending
    return Generated(text, spans)


def split_points(text: str) -> st.SearchStrategy[list[int]]:
    """Any split of ``text`` into deltas."""
    return st.lists(st.integers(1, max(1, len(text) - 1)), max_size=len(text)).map(
        lambda cuts: sorted(set(c for c in cuts if 0 < c < len(text))))


def normalized(text: str) -> str:
    """Whitespace collapsed, no space before punctuation."""
    return re.sub(r"\s+(?=[,.!?;:])", "", re.sub(r"\s+", " ", text)).strip()


FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.data(), generated=dealership_text())
def test_any_split_loses_nothing_and_gives_the_same_segments(
        data: st.DataObject, generated: Generated) -> None:
    """Concatenated segments are the cleaned text; the split into deltas changes nothing."""
    text = generated.text
    cuts = data.draw(split_points(text))
    segments = feed(text, cuts)
    assert normalized(" ".join(segments)) == normalized(clean_for_speech(text))
    assert segments == feed(text, [])
    assert segments == feed(text, every(text, 1))


@FAST
@given(data=st.data(), generated=dealership_text())
def test_no_segment_ends_inside_a_protected_token(
        data: st.DataObject, generated: Generated) -> None:
    """Every cut falls outside "$3.50", "Dr. Smith", "+1 555 014 2000" and the like."""
    text = generated.text
    segments = feed(text, data.draw(split_points(text)))
    # The grammar has no markdown, so segments are verbatim pieces of the text.
    position = 0
    for segment in segments[:-1]:
        position = text.index(segment, position) + len(segment)
        inside = [text[a:b] for a, b in generated.spans if a < position < b]
        assert not inside, f"cut after {text[:position]!r} splits {inside}"


@FAST
@given(data=st.data(), generated=dealership_text(), max_chars=st.integers(30, 80))
def test_long_runs_are_bounded_and_split_independent(
        data: st.DataObject, generated: Generated, max_chars: int) -> None:
    """With a small max_chars segments stay short, and still nothing is lost or moved."""
    text = generated.text
    segments = feed(text, data.draw(split_points(text)), TextChunker(max_chars=max_chars))
    assert normalized(" ".join(segments)) == normalized(clean_for_speech(text))
    assert segments == feed(text, [], TextChunker(max_chars=max_chars))
    assert all(len(s) <= max_chars for s in segments)


@FAST
@given(
    data=st.data(),
    clause=st.lists(st.sampled_from(WORDS), min_size=3, max_size=8),
    mark=st.sampled_from([",", ";", ":", ".", "!", "?"]),
    rest=dealership_text(),
)
def test_first_clause_released_once_it_has_arrived(
        data: st.DataObject, clause: list[str], mark: str, rest: Generated) -> None:
    """A clause of >= 3 words, a mark, a space and the next word's first letter release it."""
    head = " ".join(clause).capitalize() + mark + " "
    text = head + "Then " + rest.text
    arrived = len(head) + 1  # the mark is judged by the next word's first character
    cuts = [c for c in data.draw(split_points(text)) if c < arrived] + [arrived]
    chunker = TextChunker()
    released = [s for a, b in zip([0, *cuts], cuts, strict=False)
                for s in chunker.push(text[a:b])]
    assert released[:1] == [head.strip()]


@FAST
@given(data=st.data(), text=st.text(alphabet="ab AB 35.,!?:;-$@()\n", max_size=120))
def test_arbitrary_text_keeps_every_word_in_order(data: st.DataObject, text: str) -> None:
    """Even text outside the grammar loses no word and ignores the delta split."""
    segments = feed(text, data.draw(split_points(text)))
    assert re.findall(r"\w+", " ".join(segments)) == re.findall(r"\w+", clean_for_speech(text))
    assert segments == feed(text, [])
