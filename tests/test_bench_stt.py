"""The STT benchmark's corpus and scoring (bench/corpus_stt.py); no services."""

from __future__ import annotations

import pytest

from bench.corpus_stt import (
    KOKORO_VOICES,
    QUICK,
    UTTERANCES,
    normalize_spoken,
    number_words,
    word_error_rate,
)


def test_corpus_covers_espeak_and_kokoro() -> None:
    """At least 30 clips, 8 of them Kokoro-82M, every espeak voice and speed used."""
    assert len(UTTERANCES) >= 30
    assert sum(u.engine == "tts" and u.voice in KOKORO_VOICES for u in UTTERANCES) >= 8
    espeak = [u for u in UTTERANCES if u.engine == "espeak"]
    assert len({(u.voice, u.wpm) for u in espeak}) == 9
    assert [u.index for u in UTTERANCES] == list(range(len(UTTERANCES)))
    assert 6 <= len(QUICK) <= 10 and {u.engine for u in QUICK} == {"espeak", "tts"}


def test_spoken_form_scores_as_its_reference() -> None:
    """What the synthesizer is told to say is, once normalised, exactly the reference."""
    for u in UTTERANCES:
        assert normalize_spoken(u.spoken) == normalize_spoken(u.text), u.text


@pytest.mark.parametrize(("written", "spoken"), [
    ("5:30 PM", "five thirty p.m."),
    ("Closes at 8pm.", "closes at eight P M"),
    ("Call 555-0142", "call five five five oh one four two"),
    ("It is $28,500.", "It is twenty-eight thousand, five hundred dollars."),
    ("$420", "four hundred and twenty dollars"),
    ("March 14th at 10:00", "March fourteenth at ten o'clock"),
    ("June 21st", "June twenty-first"),
    ("9:05 a.m.", "nine oh five am"),
    ("at 1:45 p.m.", "at 1.45 pm"),
    ("Chen, that is C H E N", "Chen, that is CHEN"),
])
def test_written_and_spoken_numbers_agree(written: str, spoken: str) -> None:
    """Times, money, phone numbers, ordinals, a.m./p.m. and spelling agree in either form."""
    assert normalize_spoken(written) == normalize_spoken(spoken)
    assert word_error_rate(written, spoken) == 0.0


def test_word_error_rate_counts_real_differences() -> None:
    """A wrong number or word still counts: one substitution, one deletion."""
    assert normalize_spoken("5:30 PM") == ["five", "thirty", "pm"]
    assert word_error_rate("5:30 PM", "five forty p.m.") == pytest.approx(1 / 3)
    assert word_error_rate("Book it for Tuesday", "book for Tuesday") == pytest.approx(1 / 4)
    assert word_error_rate("I am here", "I am here") == 0.0
    assert number_words(28500) == "twenty eight thousand five hundred"
    assert number_words(1_000_015) == "one million fifteen"
