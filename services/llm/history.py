"""A conversation's history as the model sees it: system prompt, then user/assistant turns.

Kept per session in memory for now (issue #5 moves it to Redis). Each entry is one
turn, so a reply can be corrected to what the user actually heard by turn id.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Turn:
    user: str
    assistant: str = ""
    tool_steps: list[dict[str, Any]] = field(default_factory=list)


class History:
    """The last ``max_turns`` turns of one conversation, in order."""

    def __init__(self, system_prompt: str, max_turns: int) -> None:
        """Start an empty history under ``system_prompt``."""
        self.system_prompt = system_prompt
        self.max_turns = max(1, max_turns)
        self._turns: OrderedDict[str, _Turn] = OrderedDict()

    def __len__(self) -> int:
        return len(self._turns)

    def add_user(self, turn_id: str, text: str) -> None:
        """Append the user's words of a new turn, dropping the oldest turns past the cap."""
        self._turns.pop(turn_id, None)  # a reused id starts over at the end
        self._turns[turn_id] = _Turn(user=text)
        while len(self._turns) > self.max_turns:
            self._turns.popitem(last=False)

    def set_reply(self, turn_id: str, text: str) -> None:
        """Record the assistant's reply to a turn (no-op for a turn no longer kept)."""
        turn = self._turns.get(turn_id)
        if turn is not None:
            turn.assistant = text

    def add_tool_step(self, turn_id: str, messages: list[dict[str, Any]]) -> None:
        """Record an assistant ``tool_calls`` message and its tool results for a turn."""
        turn = self._turns.get(turn_id)
        if turn is not None:
            turn.tool_steps.extend(messages)

    def reply(self, turn_id: str) -> str | None:
        """The assistant's recorded reply to a turn, or None for an unknown turn."""
        turn = self._turns.get(turn_id)
        return None if turn is None else turn.assistant

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages for the upstream: system prompt first, empty replies left out."""
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        for turn in self._turns.values():
            out.append({"role": "user", "content": turn.user})
            out.extend(turn.tool_steps)
            if turn.assistant:
                out.append({"role": "assistant", "content": turn.assistant})
        return out
