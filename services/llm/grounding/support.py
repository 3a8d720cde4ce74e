"""What a reply may rely on: the facts of the turn's prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.llm.grounding.figures import Support


def facts_of(messages: Sequence[dict[str, Any]]) -> Support:
    """The figures a reply to ``messages`` may state: those of the system prompt, the
    retrieved passages, the user's own words and tool results; never the assistant's
    earlier replies (an invented figure must not vouch for itself)."""
    return Support(*(str(m.get("content") or "") for m in messages
                     if m.get("role") in ("system", "user", "tool")))
