"""Turn-taking rules on words: what counts as a backchannel, and when two transcripts agree."""

from __future__ import annotations

import pytest

from services.orchestrator.speech import is_backchannel, same_words, words


@pytest.mark.parametrize("text", ["", "Uh-huh.", "Yeah.", "okay", "Mm-hmm, right.", "I see.",
                                  "(coughs)", "[Music]", "Got it.", "Oh, okay."])
def test_feedback_and_noise_are_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["Wait.", "Stop, please.", "No, Tuesday.",
                                  "Yeah but what about Sunday?", "Okay okay okay okay",
                                  "Actually I need a tire rotation."])
def test_requests_are_not_backchannels(text: str) -> None:
    assert not is_backchannel(text)


def test_same_words_ignores_case_punctuation_and_noise() -> None:
    assert same_words("What time do you open?", "what time do you open")
    assert same_words("Book it (coughs) for Monday.", "Book it for Monday")
    assert not same_words("Book it for Monday.", "Book it for Monday at nine.")
    assert words("It's 9:30, OK?") == ["it's", "9", "30", "ok"]
