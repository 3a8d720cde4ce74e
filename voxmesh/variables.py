"""Client-supplied prompt variables: what they may contain and how they reach a prompt.

A caller may fill an agent's ``{{placeholders}}`` (``username``), but a caller is not the
operator: its values are short plain text, checked by the gateway and again by the
Dialogue service, and they enter the prompt as quoted data. The server's own per-user
variables always win over a client's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

MAX_VARIABLES = 16
MAX_VARIABLE_CHARS = 64
VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,31}$"
VARIABLE_VALUE_PATTERN = r"^[\w .,'@+()/:&!?-]*$"
"""Letters (any script), digits, spaces and everyday punctuation. No quotes, backslashes,
newlines, braces, '#', '*' or markup: a value cannot close its quotes or look like a
heading, a list or a new instruction block."""

_NAME = re.compile(VARIABLE_NAME_PATTERN)
_VALUE = re.compile(VARIABLE_VALUE_PATTERN)


class VariableError(ValueError):
    """A client variable the service refuses; the message names it."""


def check_client_variables(variables: Mapping[str, str]) -> None:
    """Raise :class:`VariableError` unless every client variable is acceptable."""
    if len(variables) > MAX_VARIABLES:
        raise VariableError(f"variables: at most {MAX_VARIABLES} entries")
    for name, value in variables.items():
        if not _NAME.fullmatch(name):
            raise VariableError(f"variables: name {name[:40]!r} is not a placeholder name")
        if len(value) > MAX_VARIABLE_CHARS:
            raise VariableError(f"variables.{name}: longer than {MAX_VARIABLE_CHARS} characters")
        if not _VALUE.fullmatch(value):
            raise VariableError(f"variables.{name}: only letters, digits, spaces and "
                                ".,'@+()/:&!?- are allowed")


def merge_variables(server: Mapping[str, str], client: Mapping[str, str]) -> dict[str, str]:
    """The values a prompt is filled with: server values as they are, client values
    quoted (JSON string syntax) as data, and the server's value wherever both set one."""
    quoted = {name: json.dumps(value, ensure_ascii=False) for name, value in client.items()}
    return {**quoted, **server}
