"""Agents: a persona per YAML file (prompt, voice, greeting), validated at start-up.

A bad file fails the service's start-up with the file's path and the field at fault,
so a typo never surfaces as a strange reply in the middle of a conversation.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.llm.tools import TOOLS

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class AgentError(ValueError):
    """An agent file is missing, unreadable or invalid; the message names file and field."""


class Route(BaseModel):
    """One intent a routing agent recognises, and the agent that handles it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$",
                        description="Label the classifier answers with.")
    agent: str = Field(min_length=1, description="Agent that answers turns of this intent.")
    description: str = Field("", description="What the intent covers; shown to the classifier.")
    keywords: tuple[str, ...] = Field((), description="Words that signal the intent "
                                      "when the classifier's answer is unusable.")


class KnowledgeConfig(BaseModel):
    """Which knowledge base an agent answers from, and how much of it goes in the prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Knowledge base name: a directory under the knowledge root.")
    top_k: int = Field(3, ge=1, le=20, description="Passages retrieved per user turn.")
    min_score: float = Field(0.25, ge=-1.0, le=1.0,
                             description="Passages scoring below this cosine similarity "
                             "are left out of the prompt.")


class AgentConfig(BaseModel):
    """One agent, as written in ``agents/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Name clients ask for in DialogueConfig.agent.")
    description: str = Field("", description="One line for people choosing an agent.")
    system_prompt: str = Field(min_length=1,
                               description="System prompt; {{variable}} placeholders allowed.")
    voice: str = Field("", description="TTS voice id; empty means the TTS default.")
    speed: float = Field(1.0, gt=0.0, le=4.0, description="Speaking rate of the voice.")
    greeting: str = Field("", description="What the agent opens with; empty means nothing.")
    tools: tuple[str, ...] = Field((), description="Names of the tools the agent may call.")
    routes: tuple[Route, ...] = Field((), description="Intents that hand the conversation "
                                      "to another agent; empty means no routing.")
    knowledge: KnowledgeConfig | None = Field(None, description="Knowledge base retrieved "
                                              "from on every user turn; none means no RAG.")

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in names if name not in TOOLS]
        if unknown:
            raise ValueError(f"unknown tool(s) {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(sorted(TOOLS))})")
        return names

    @field_validator("routes")
    @classmethod
    def _distinct_intents(cls, routes: tuple[Route, ...]) -> tuple[Route, ...]:
        intents = [route.intent for route in routes]
        duplicates = sorted({i for i in intents if intents.count(i) > 1})
        if duplicates:
            raise ValueError(f"intent(s) {', '.join(map(repr, duplicates))} listed twice")
        return routes

    def prompt(self, variables: dict[str, str]) -> str:
        """The system prompt with placeholders filled; unknown ones become empty."""
        return fill_placeholders(self.system_prompt, variables)


def fill_placeholders(template: str, variables: dict[str, str]) -> str:
    """Replace each ``{{name}}`` by ``variables[name]``, or by nothing when it is not given."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), ""), template)


def load_agent(path: Path) -> AgentConfig:
    """Read and validate one agent file.

    Raises:
        AgentError: naming ``path`` and, for invalid content, the field at fault.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise AgentError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise AgentError(f"{path}: expected a mapping of agent fields, got {type(data).__name__}")
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(map(str, err['loc'])) or '(root)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise AgentError(f"{path}: {problems}") from exc


def load_agents(directory: Path) -> dict[str, AgentConfig]:
    """Load every ``*.yaml``/``*.yml`` file of ``directory``, keyed by agent name.

    Raises:
        AgentError: the directory has no agents, a file is invalid, or two files
            declare the same name.
    """
    if not directory.is_dir():
        raise AgentError(f"agents directory {directory} does not exist")
    agents: dict[str, AgentConfig] = {}
    sources: dict[str, Path] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        agent = load_agent(path)
        if agent.name in agents:
            raise AgentError(
                f"{path}: field 'name': agent {agent.name!r} is already defined in "
                f"{sources[agent.name]}"
            )
        agents[agent.name] = agent
        sources[agent.name] = path
    if not agents:
        raise AgentError(f"agents directory {directory} has no *.yaml agent files")
    for name, agent in agents.items():
        for index, route in enumerate(agent.routes):
            if route.agent not in agents:
                raise AgentError(
                    f"{sources[name]}: field 'routes.{index}.agent': unknown agent "
                    f"{route.agent!r} (known: {', '.join(sorted(agents))})"
                )
    return agents


def default_agents_dir() -> Path:
    """``./agents`` when run from a checkout's root, else the checkout's agents directory."""
    here = Path("agents")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[2] / "agents"
