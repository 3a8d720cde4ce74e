"""Pure logic of the STT service: the stable prefix two consecutive partials agree on, and
which decoded segments hold speech of the audio."""

from __future__ import annotations

import pytest

from services.stt.engine import runs_past_audio, spoken_segments
from services.stt.stream import agreed_prefix


@pytest.mark.parametrize(
    ("previous", "current", "stable"),
    [
        ("", "What time", ""),
        ("What time does", "What time does the service", "What time does"),
        ("What time. Does", "What time does it open", "What time does"),
        ("what time", "What time is it", "What time"),
        ("Where is the", "Wear is the dealership", ""),
        ("What time does the service", "What time", "What time"),
    ],
)
def test_agreed_prefix(previous: str, current: str, stable: str) -> None:
    assert agreed_prefix(previous, current) == stable


def _segment(text: str, start: float, no_speech: float = 0.0, logprob: float = -0.2) -> dict:
    return {"text": text, "start": start, "end": start + 1.0,
            "no_speech_prob": no_speech, "avg_logprob": logprob}


def test_spoken_segments_drop_silence_and_what_starts_after_the_audio() -> None:
    said = _segment(" Do I need an appointment?", 0.2)
    repeated = _segment(" Do I need an appointment?", 3.1)  # in the window's added silence
    noise = _segment(" Thank you.", 1.0, no_speech=0.9, logprob=-1.5)
    assert spoken_segments([said, noise, repeated], audio_s=3.0) == [said]
    late_but_inside = _segment(" Bye.", 2.5)
    assert spoken_segments([said, late_but_inside], audio_s=3.0) == [said, late_but_inside]


def test_a_transcript_that_runs_past_its_audio_is_flagged() -> None:
    # Whisper's window padding made it repeat a 2.49 s question up to 2.98 s (bench/stt.py).
    repeated = _segment(" Do I need an appointment? Do I need an appointment? Do", 0.0)
    repeated["end"] = 2.98
    assert runs_past_audio([repeated], audio_s=2.49)
    # Timestamps a little past the end are ordinary (up to 0.26 s on the bench corpus).
    ordinary = _segment(" Do I need an appointment?", 0.0)
    ordinary["end"] = 2.70
    assert not runs_past_audio([ordinary], audio_s=2.49)
