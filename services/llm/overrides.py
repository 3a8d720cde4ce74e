"""Per-user overrides layered on the agents, and the catalog the service holds.

``agents/users/<user_id>.yaml`` changes how the agents sound to one user (voice, speed,
greeting, a sentence appended to the prompt) and gives default placeholder values. It
can never replace a prompt, tools or routes: a user file must not widen what an agent
may do. Every file is validated at start-up, with located errors like agent files.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.llm.agents import (
    AgentConfig,
    AgentError,
    AgentSource,
    Problem,
    YamlFile,
    read_agents,
)

log = logging.getLogger(__name__)

USER_ID_PATTERN = r"^[A-Za-z0-9_.@-]{1,128}$"
"""What a user id may be: also the stem of its override file."""
_USER_ID = re.compile(USER_ID_PATTERN)

WILDCARD = "*"
"""Override key that applies to every agent; a named agent's entry wins field by field."""


class UserIdError(ValueError):
    """A ``user_id`` that is not a safe name; the server answers INVALID_ARGUMENT."""

    field = "user_id"
    """The request field at fault."""


class AgentOverride(BaseModel):
    """What a user file may change in one agent; unset fields keep the agent's value.

    Values are checked by re-validating the changed :class:`AgentConfig`, so the limits
    are the agent's own (e.g. ``speed``) and cannot drift apart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str | None = Field(None, description="TTS voice id; empty means the TTS default.")
    speed: float | None = Field(None, description="Speaking rate, as the agent's ``speed``.")
    greeting: str | None = Field(None, description="Replaces the agent's greeting.")
    system_prompt_suffix: str | None = Field(
        None, min_length=1, description="Appended to the agent's system prompt, after a "
        "blank line; {{variable}} placeholders allowed.")


VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class UserOverrides(BaseModel):
    """One ``agents/users/<user_id>.yaml`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variables: dict[VariableName, str] = Field(
        default_factory=dict, description="Placeholder values for this user; values a "
        "request sends in DialogueConfig.variables win.")
    agents: dict[str, AgentOverride] = Field(
        default_factory=dict, description="Overrides by agent name, or '*' for every agent.")


@dataclass(frozen=True)
class UserProfile:
    """A user's effective agents (overrides applied) and default variables."""

    agents: Mapping[str, AgentConfig]
    variables: Mapping[str, str]


@dataclass(frozen=True)
class AgentCatalog:
    """The agents and every user's overrides, validated together at start-up."""

    agents: Mapping[str, AgentConfig]
    """The agents as their files define them, keyed by name."""
    users: Mapping[str, UserProfile] = field(default_factory=dict)
    """Users that have an override file, keyed by user id."""

    def for_user(self, user_id: str) -> tuple[dict[str, AgentConfig], dict[str, str]]:
        """The agents as ``user_id`` gets them, and that user's default variables.

        Overridden agents are separate frozen :class:`AgentConfig` instances; the rest
        are the shared ones. The caller merges the request's variables on top.

        Args:
            user_id: DialogueConfig.user_id; empty or without a file means no overrides.

        Returns:
            Fresh dicts (the caller may change them): agents keyed by name, and variables.

        Raises:
            UserIdError: ``user_id`` is not empty and does not match
                :data:`USER_ID_PATTERN`.
        """
        if not user_id:
            return dict(self.agents), {}
        if not _USER_ID.fullmatch(user_id):
            shown = user_id if len(user_id) <= 40 else f"{user_id[:40]}..."
            raise UserIdError(f"user_id: {shown!r} is not 1 to 128 letters, digits "
                              "or '_', '.', '@', '-'")
        profile = self.users.get(user_id)
        if profile is None:
            return dict(self.agents), {}
        return dict(profile.agents), dict(profile.variables)


def apply_overrides(agent: AgentConfig, overrides: Mapping[str, AgentOverride],
                    file: YamlFile) -> AgentConfig:
    """``agent`` with its ``*`` entry, then its own entry of ``overrides`` applied.

    Raises:
        AgentError: the changed agent is invalid; located at the override's field.
    """
    changes: dict[str, Any] = {}
    origin: dict[str, str] = {}  # field -> key of the entry it came from, for errors
    for key in (WILDCARD, agent.name):
        entry = overrides.get(key)
        if entry is not None:
            for name, value in entry.model_dump(exclude_none=True).items():
                changes[name], origin[name] = value, key
    if not changes:
        return agent
    suffix = changes.pop("system_prompt_suffix", None)
    if suffix is not None:
        changes["system_prompt"] = f"{agent.system_prompt.rstrip()}\n\n{suffix.strip()}\n"
        origin["system_prompt"] = origin.pop("system_prompt_suffix")
    try:
        return AgentConfig.model_validate({**agent.model_dump(), **changes})
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors():
            loc = list(err["loc"])
            name = str(loc[0]) if loc else ""
            if name in origin:  # map the agent's field back to the line that set it
                file_field = "system_prompt_suffix" if name == "system_prompt" else name
                # No agent name in the message: a bad '*' value is then reported once.
                problems.append(file.problem(("agents", origin[name], file_field, *loc[1:]),
                                             err["msg"]))
            else:
                problems.append(file.problem(("agents",), f"{err['msg']} "
                                             f"(agent {agent.name!r}, field {name!r})"))
        raise AgentError.of(problems) from exc


def read_user(path: Path, agents: Mapping[str, AgentConfig]) -> UserProfile:
    """Read and validate one user file against ``agents``.

    Raises:
        AgentError: naming ``path``, the line and the field at fault.
    """
    file = YamlFile.read(path)
    data = file.mapping("override fields ('variables', 'agents')", empty_ok=True)
    try:
        overrides = UserOverrides.model_validate(data)
    except ValidationError as exc:
        raise AgentError.of(file.problems(exc)) from exc
    known = ", ".join(sorted(agents))
    problems = [file.problem(("agents", key), f"unknown agent {key!r} (known: {known}, or "
                             f"{WILDCARD!r} for all)")
                for key in overrides.agents if key != WILDCARD and key not in agents]
    effective: dict[str, AgentConfig] = {}
    for name, agent in agents.items():
        try:
            effective[name] = apply_overrides(agent, overrides.agents, file)
        except AgentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise AgentError.of(problems)
    return UserProfile(effective, dict(overrides.variables))


def read_users(directory: Path, agents: Mapping[str, AgentConfig]) -> dict[str, UserProfile]:
    """Every ``<user_id>.yaml``/``.yml`` of ``directory``; none when it does not exist.

    Raises:
        AgentError: a file is invalid, its name is not a valid user id, or two files
            are for the same user. Every file is checked before failing.
    """
    if not directory.is_dir():
        return {}
    users: dict[str, UserProfile] = {}
    seen: dict[str, Path] = {}
    problems: list[Problem] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        user_id = path.stem
        if not _USER_ID.fullmatch(user_id):
            problems.append(Problem(path, 1, "", f"file name {user_id!r} is not a valid "
                                    f"user id ({USER_ID_PATTERN})"))
            continue
        if user_id in seen:
            problems.append(Problem(path, 1, "", f"user {user_id!r} already has {seen[user_id]}"))
            continue
        seen[user_id] = path
        try:
            users[user_id] = read_user(path, agents)
        except AgentError as exc:
            if not exc.problems:
                raise
            problems.extend(exc.problems)
    if problems:
        raise AgentError.of(problems)
    return users


def load_catalog(directory: Path, users_dir: Path | None = None) -> AgentCatalog:
    """Load the agents of ``directory`` and the user overrides of ``directory/users``.

    Blocking file I/O: call it off the event loop (``asyncio.to_thread``).

    Args:
        directory: the agents directory (``*.yaml`` agent files).
        users_dir: where the ``<user_id>.yaml`` files are; default ``directory/users``.

    Raises:
        AgentError: any agent or user file is invalid; the message has one
            ``path:line: field 'x': reason`` line per problem.
    """
    sources: dict[str, AgentSource] = read_agents(directory)
    agents = {name: source.agent for name, source in sources.items()}
    users = read_users(users_dir if users_dir is not None else directory / "users", agents)
    log.info("agents loaded", extra={"agents": sorted(agents), "users_with_overrides": len(users)})
    return AgentCatalog(agents, users)
