"""The orchestrator's pure logic: the state machine table and heard-text accounting."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from services.orchestrator.heard import SpokenSegment, heard_text
from services.orchestrator.state import TRANSITIONS, IllegalTransition, State, StateMachine

Change = tuple[State, State, str]


def recorder(changes: list[Change]) -> Callable[[State, State, str], None]:
    """An ``on_change`` callback that appends each change to ``changes``."""
    return lambda old, new, turn_id: changes.append((old, new, turn_id))


def test_every_pair_of_states_is_either_allowed_or_rejected() -> None:
    for old, new in itertools.product(State, State):
        changes: list[Change] = []
        machine = StateMachine(recorder(changes))
        machine.state = old
        if new in TRANSITIONS[old]:
            machine.to(new, "turn-1")
            assert machine.state is new
            assert changes == [(old, new, "turn-1")]
        else:
            with pytest.raises(IllegalTransition):
                machine.to(new)
            assert machine.state is old and changes == []


def test_conversation_loop_and_barge_in_paths_are_legal() -> None:
    seen: list[State] = []
    machine = StateMachine(lambda a, b, t: seen.append(b))
    for state in (State.LISTENING, State.THINKING, State.SPEAKING, State.INTERRUPTED,
                  State.LISTENING, State.THINKING, State.SPEAKING, State.LISTENING, State.IDLE):
        machine.to(state)
    assert seen[-1] is State.IDLE and len(seen) == 9


def test_cannot_speak_without_thinking_first() -> None:
    machine = StateMachine(lambda *_: None)
    machine.to(State.LISTENING)
    with pytest.raises(IllegalTransition, match="listening -> speaking"):
        machine.to(State.SPEAKING)


SEGMENTS = [
    SpokenSegment("Thank you for calling.", 0, 24000),
    SpokenSegment("We open at eight on Saturday.", 24000, 36000),
]


@pytest.mark.parametrize(
    ("played", "expected"),
    [
        (0, ""),
        (12000, "Thank you"),
        (24000, "Thank you for calling."),
        (24000 + 18000, "Thank you for calling. We open at"),
        (60000, "Thank you for calling. We open at eight on Saturday."),
        (10**9, "Thank you for calling. We open at eight on Saturday."),
    ],
)
def test_heard_text_follows_playback(played: int, expected: str) -> None:
    assert heard_text(SEGMENTS, played) == expected
