"""Pure logic of the STT stream: the stable prefix two consecutive partials agree on."""

from __future__ import annotations

import pytest

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
