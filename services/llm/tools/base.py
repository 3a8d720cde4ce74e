"""A tool: a name, a pydantic model of its arguments and a blocking function.

Arguments are validated before anything runs; a bad argument, a refused booking, a call
past a quota or an unexpected failure all become an error result for the model, never
an exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from services.llm.db.store import BookingError, BookingStore
from services.llm.quotas import Clock, QuotaExceeded, Quotas, Refusal, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolContext:
    """What a call may know besides its arguments (never chosen by the model).

    Attributes:
        session_id: The conversation the call belongs to.
        start_background: Starts follow-up work after a call succeeded, with its result
            (for example the check for a human after an escalation); None when the
            service runs no background work.
        user_id: The user of the conversation (``DialogueConfig.user_id``); empty for
            an anonymous one.
        quotas: Limits on what the calls of this conversation may do.
        clock: The time; tools read it here, never from the system, so tests set it.
    """

    session_id: str = ""
    start_background: Callable[[str, dict[str, Any]], None] | None = None
    user_id: str = ""
    quotas: Quotas = field(default_factory=Quotas)
    clock: Clock = utc_now

    def now(self) -> datetime:
        """The current time, aware."""
        return self.clock()


@dataclass(frozen=True)
class Tool:
    """One function the model can call.

    Attributes:
        name: Function name the model uses.
        description: What it does, for the model.
        params: Model of the arguments; its JSON schema is sent to the model.
        run: Blocking function of the store, validated arguments and the call's context;
            returns the result.
        background: Name of the follow-up work to start once the call succeeded
            (see :attr:`ToolContext.start_background`), or "" for none.
    """

    name: str
    description: str
    params: type[BaseModel]
    run: Callable[[BookingStore, Any, ToolContext], dict[str, Any]]
    background: str = ""

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools=`` entry."""
        parameters = self.params.model_json_schema()
        parameters.pop("title", None)
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": parameters}}


@dataclass(frozen=True)
class ToolResult:
    """What a call produced: the JSON sent back to the model, and whether it failed.

    ``refusal`` names the quota that refused the call (a :class:`Refusal` value), else "".
    """

    ok: bool
    result_json: str
    refusal: str = ""


def _error(message: str) -> ToolResult:
    return ToolResult(False, json.dumps({"error": message}))


def refused(reason: Refusal, message: str) -> ToolResult:
    """The result of a call a quota refused: the model reads why, and the reason code."""
    return ToolResult(False, json.dumps({"error": message, "refusal": reason.value}),
                      reason.value)


class ToolBox:
    """The tools one agent may use, bound to the store they act on."""

    def __init__(self, tools: Sequence[Tool], store: BookingStore) -> None:
        """Offer ``tools`` acting on ``store``."""
        self.tools = {tool.name: tool for tool in tools}
        self.store = store

    def __bool__(self) -> bool:
        return bool(self.tools)

    def schemas(self) -> list[dict[str, Any]]:
        """The ``tools=`` list of the chat completion request."""
        return [tool.schema() for tool in self.tools.values()]

    async def execute(self, name: str, arguments_json: str,
                      context: ToolContext | None = None) -> ToolResult:
        """Validate and run one call off the event loop; every failure is an error result."""
        context = context or ToolContext()
        tool = self.tools.get(name)
        if tool is None:
            return _error(f"unknown tool {name!r} (available: {', '.join(self.tools)})")
        try:
            raw = json.loads(arguments_json or "{}")
        except json.JSONDecodeError as exc:
            return _error(f"arguments: not valid JSON ({exc.msg})")
        try:
            args = tool.params.model_validate(raw)
        except ValidationError as exc:
            return _error("; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                for e in exc.errors()))
        try:
            result = await asyncio.to_thread(tool.run, self.store, args, context)
        except BookingError as exc:
            return _error(str(exc))
        except QuotaExceeded as exc:
            return refused(exc.reason, str(exc))
        except Exception as exc:  # a database failure must not end the conversation
            log.exception("tool failed", extra={"tool": name})
            return _error(f"internal error in {name}: {type(exc).__name__}")
        if tool.background and context.start_background is not None:
            context.start_background(tool.background, result)
        return ToolResult(True, json.dumps(result))
