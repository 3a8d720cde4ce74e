"""The session state machine: which state may follow which, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from voxmesh.v1 import orchestrator_pb2 as pb


class State(StrEnum):
    """Where a session is in its conversation loop."""

    IDLE = "idle"
    """No conversation under way (before start, after end)."""
    LISTENING = "listening"
    """Waiting for or hearing the user."""
    THINKING = "thinking"
    """The user's turn ended; the reply is being prepared."""
    SPEAKING = "speaking"
    """Reply audio is being sent."""
    INTERRUPTED = "interrupted"
    """The user cut the agent off; streams are being cancelled."""

    def to_proto(self) -> pb.SessionState:
        """The wire enum value."""
        return pb.SessionState.Value(f"SESSION_STATE_{self.name}")


# Every legal transition. THINKING -> LISTENING is a reply that produced no audio
# (failure or empty text); any state may go IDLE when the session ends.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.LISTENING}),
    State.LISTENING: frozenset({State.THINKING, State.IDLE}),
    State.THINKING: frozenset({State.SPEAKING, State.INTERRUPTED, State.LISTENING, State.IDLE}),
    State.SPEAKING: frozenset({State.LISTENING, State.INTERRUPTED, State.IDLE}),
    State.INTERRUPTED: frozenset({State.LISTENING, State.IDLE}),
}


class IllegalTransition(RuntimeError):
    """A transition the table does not allow; always a bug in the caller."""


class StateMachine:
    """Holds the current state and reports every change to ``on_change``."""

    def __init__(self, on_change: Callable[[State, State, str], None]) -> None:
        self.state = State.IDLE
        self._on_change = on_change

    def to(self, new: State, turn_id: str = "") -> None:
        """Move to ``new``; raises IllegalTransition if the table forbids it."""
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {new} is not a legal transition")
        old, self.state = self.state, new
        self._on_change(old, new, turn_id)
