"""A conversation's history as the model sees it: system prompt, then user/assistant turns.

Each entry is one turn, so a reply can be corrected to what the user actually heard by
turn id. :meth:`History.entries` and :meth:`History.restore` convert to and from the flat
message list that :mod:`services.llm.memory` keeps in Redis (without the system prompt,
which is rebuilt from the agent).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TURN_ID = "turn_id"
"""Key added to each stored message naming its turn; never sent upstream."""


@dataclass
class _Turn:
    user: str
    turn_id: str
    assistant: str = ""
    tool_steps: list[dict[str, Any]] = field(default_factory=list)


def _starts_turn(entries: list[dict[str, Any]], i: int) -> bool:
    """A user message starts a turn, and so does a proactive assistant message: one
    whose turn id differs from the message before it."""
    message = entries[i]
    if message.get("role") == "user":
        return True
    return (message.get("role") == "assistant" and not message.get("tool_calls")
            and TURN_ID in message
            and (i == 0 or entries[i - 1].get(TURN_ID) != message[TURN_ID]))


def trim_turns(entries: list[dict[str, Any]], max_turns: int) -> list[dict[str, Any]]:
    """The messages of the last ``max_turns`` turns of a flat message list.

    A turn starts at a user message (or a proactive notification) and holds everything
    up to the next one, so a tool result always stays with the assistant ``tool_calls``
    message before it; messages before the first turn are dropped.
    """
    starts = [i for i in range(len(entries)) if _starts_turn(entries, i)]
    if not starts:
        return []
    keep_from = starts[-max(1, max_turns):][0]
    return entries[keep_from:]


class History:
    """The last ``max_turns`` turns of one conversation, in order."""

    def __init__(self, system_prompt: str, max_turns: int) -> None:
        """Start an empty history under ``system_prompt``."""
        self.system_prompt = system_prompt
        self.max_turns = max(1, max_turns)
        self._turns: OrderedDict[str, _Turn] = OrderedDict()
        self._restored: set[str] = set()
        """Ids of restored turns: still found by heard reports, but a new turn may reuse them."""

    def __len__(self) -> int:
        return len(self._turns)

    def add_user(self, turn_id: str, text: str) -> None:
        """Append the user's words of a new turn, dropping the oldest turns past the cap."""
        if turn_id in self._restored:  # a new stream counting from 1 again: keep the old turn
            self._restored.discard(turn_id)
            self._turns = OrderedDict(
                (f"\0old{id(turn)}" if key == turn_id else key, turn)
                for key, turn in self._turns.items())
        self._turns.pop(turn_id, None)  # a reused id starts over at the end
        self._turns[turn_id] = _Turn(user=text, turn_id=turn_id)
        while len(self._turns) > self.max_turns:
            self._turns.popitem(last=False)

    def remove(self, turn_id: str) -> None:
        """Forget a turn entirely (a withdrawn speculative turn); no-op for an unknown one."""
        self._turns.pop(turn_id, None)
        self._restored.discard(turn_id)

    def add_proactive(self, turn_id: str, text: str) -> None:
        """Append something the assistant said unprompted (a notification) as its own turn."""
        self.add_user(turn_id, "")
        self.set_reply(turn_id, text)

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
            if turn.user:
                out.append({"role": "user", "content": turn.user})
            out.extend(turn.tool_steps)
            if turn.assistant:
                out.append({"role": "assistant", "content": turn.assistant})
        return out

    def entries(self) -> list[dict[str, Any]]:
        """The turns as flat chat messages, each tagged with its ``turn_id``, for storage."""
        out: list[dict[str, Any]] = []
        for turn in self._turns.values():
            tag = {TURN_ID: turn.turn_id}
            if turn.user:
                out.append({"role": "user", "content": turn.user, **tag})
            out.extend({**m, **tag} for m in turn.tool_steps)
            if turn.assistant:
                out.append({"role": "assistant", "content": turn.assistant, **tag})
        return out

    def restore(self, entries: list[dict[str, Any]]) -> None:
        """Replace the turns with stored :meth:`entries`, keeping the last ``max_turns``.

        Restored turns keep their ids, so a heard report about a reply of the previous
        stream still trims it; a new stream that reuses one of those ids (clients often
        count from 1 again) appends a turn instead of replacing the old one.
        """
        self._turns.clear()
        self._restored.clear()
        current: _Turn | None = None
        kept = trim_turns(entries, self.max_turns)
        for i, entry in enumerate(kept):
            message = {k: v for k, v in entry.items() if k != TURN_ID}
            role = message.get("role")
            if _starts_turn(kept, i):
                user = str(message.get("content") or "") if role == "user" else ""
                current = _Turn(user=user, turn_id=str(entry.get(TURN_ID) or ""))
                key = current.turn_id
                if not key or key in self._turns:
                    key = f"\0old{id(current)}"
                self._turns[key] = current
                self._restored.add(key)
                if role == "user":
                    continue
                current.assistant = str(message.get("content") or "")
            elif current is None:
                continue
            elif role == "assistant" and not message.get("tool_calls"):
                current.assistant = str(message.get("content") or "")
            elif role in ("assistant", "tool"):
                current.tool_steps.append(message)
