"""Agents: a persona per YAML file (prompt, voice, greeting), validated at start-up.

A bad file fails the service's start-up with the file's path, the line and the field at
fault (``agents/booking.yaml:7: field 'speed': ...``), so a typo never surfaces as a
strange reply in the middle of a conversation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from services.llm.tools import TOOLS

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

Loc = Sequence[str | int]
"""A pydantic error location: keys and list indexes from the document's root."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file, located like a compiler message."""

    path: Path
    line: int
    """1-based line of the deepest YAML node the problem could be traced to."""
    field: str
    """Dotted field path (``routes.1.agent``); empty for problems of the whole file."""
    message: str

    def __str__(self) -> str:
        where = f"field '{self.field}': " if self.field else ""
        return f"{self.path}:{self.line}: {where}{self.message}"


class AgentError(ValueError):
    """An agent file is missing, unreadable or invalid; the message names file and field.

    For invalid content the message has one ``path:line: field 'x': reason`` line per
    problem, and :attr:`problems` holds them.
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        """A plain ``message``; see :meth:`of` to build one from problems."""
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(problems)

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> AgentError:
        """One error listing ``problems`` (duplicates dropped, order kept), one per line."""
        unique = tuple(dict.fromkeys(problems))
        return cls("\n".join(map(str, unique)), unique)


class Route(BaseModel):
    """One intent a routing agent recognises, and the agent that handles it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$",
                        description="Label the classifier answers with.")
    agent: str = Field(min_length=1, description="Agent that answers turns of this intent.")
    description: str = Field("", description="What the intent covers; shown to the classifier.")
    keywords: tuple[str, ...] = Field((), description="Words that signal the intent "
                                      "when the semantic decision is ambiguous.")
    examples: tuple[str, ...] = Field((), description="Things a caller with this intent says; "
                                      "with the description, what turns are compared to.")

    @field_validator("examples")
    @classmethod
    def _non_blank_examples(cls, examples: tuple[str, ...]) -> tuple[str, ...]:
        if any(not example.strip() for example in examples):
            raise ValueError("an example is empty")
        return tuple(example.strip() for example in examples)


class KnowledgeConfig(BaseModel):
    """Which knowledge base an agent answers from, and how much of it goes in the prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Knowledge base name: a directory under the knowledge root.")
    top_k: int = Field(3, ge=1, le=20, description="Passages retrieved per user turn.")
    min_score: float = Field(0.25, ge=-1.0, le=1.0,
                             description="Passages scoring below this cosine similarity "
                             "are left out of the prompt.")
    answer_min_score: float | None = Field(
        None, ge=-1.0, le=1.0, description="When the best retrieved passage scores at "
        "least this, the reply is its sentences closest to the question, not generated; "
        "unset: always generated.")
    closest_min_score: float | None = Field(
        None, ge=-1.0, le=1.0, description="When the best passage scores below "
        "answer_min_score but at least this, its closest sentences are offered in the "
        "agent's closest_reply, which says they may not answer the question; unset: no "
        "such band.")
    strict: bool = Field(
        False, description="A question that finds passages but none close enough "
        "(closest_min_score, else answer_min_score) gets the agent's unsupported_reply "
        "instead of the model's guess; turns that find no passage at all (greetings, "
        "small talk) stay with the model.")

    @model_validator(mode="after")
    def _bands_in_order(self) -> KnowledgeConfig:
        if self.closest_min_score is not None and (
                self.answer_min_score is None or self.closest_min_score > self.answer_min_score):
            raise ValueError("closest_min_score needs an answer_min_score at least as high")
        return self


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
    unsupported_reply: str = Field(
        "Sorry, I don't have that information.",
        description="Said when every sentence of a reply stated a figure (price, time, "
        "phone number, count) that the turn's facts do not support.")
    closest_reply: str = Field(
        "Here is the closest I found, on our {page} page: {answer}",
        description="Says the closest passage sentences (knowledge.closest_min_score): "
        "{answer} is replaced by them, {page} by the page's name.")
    tools: tuple[str, ...] = Field((), description="Names of the tools the agent may call.")
    routes: tuple[Route, ...] = Field((), description="Intents that hand the conversation "
                                      "to another agent; empty means no routing.")
    knowledge: KnowledgeConfig | None = Field(None, description="Knowledge base retrieved "
                                              "from on every user turn; none means no RAG.")

    @field_validator("closest_reply")
    @classmethod
    def _closest_reply_placeholders(cls, text: str) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        if "answer" not in names or names - {"answer", "page"}:
            raise ValueError("closest_reply takes {answer} and optionally {page}, nothing "
                             f"else (found: {', '.join(sorted(names)) or 'none'})")
        return text

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


def fill_placeholders(template: str, variables: Mapping[str, str]) -> str:
    """Replace each ``{{name}}`` by ``variables[name]``, or by nothing when it is not given."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), ""), template)


@dataclass(frozen=True)
class YamlFile:
    """A parsed YAML file that remembers where each value was written.

    The composed node tree is kept next to the data so that pydantic error locations
    (``('routes', 1, 'agent')``) can be turned into line numbers.
    """

    path: Path
    data: Any
    """The document as plain Python values (``None`` for an empty file)."""
    node: yaml.Node | None
    """The document's root node (``None`` for an empty file)."""

    @classmethod
    def read(cls, path: Path) -> YamlFile:
        """Read and parse ``path`` with the safe loader.

        Raises:
            AgentError: the file cannot be read, is not valid YAML (with yaml's line),
                or a mapping repeats a key (YAML would silently keep the last one).
        """
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"{path}: cannot read: {exc}") from exc
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            context = exc.context or ""
            if context and exc.context_mark is not None:
                context += f" (line {exc.context_mark.line + 1})"
            reason = ": ".join(p for p in (context, exc.problem) if p)
            raise AgentError.of([Problem(path, line, "", f"invalid YAML: {reason}")]) from exc
        except yaml.YAMLError as exc:
            raise AgentError(f"{path}:1: invalid YAML: {exc}") from exc
        finally:
            loader.dispose()
        found = cls(path, data, node)
        if duplicates := list(found._duplicate_keys()):
            raise AgentError.of(duplicates)
        return found

    def mapping(self, what: str, *, empty_ok: bool = False) -> dict[str, Any]:
        """The document as a mapping, or an error naming ``what`` it should hold.

        Raises:
            AgentError: the document is not a mapping (or is empty, unless ``empty_ok``).
        """
        if self.data is None and empty_ok:
            return {}
        if not isinstance(self.data, dict):
            got = "an empty file" if self.data is None else type(self.data).__name__
            raise AgentError.of([self.problem((), f"expected a mapping of {what}, got {got}")])
        return self.data

    def line(self, loc: Loc) -> int:
        """The 1-based line of the deepest node along ``loc`` that exists in the file.

        A mapping entry counts from its key's line; a missing key (a required field that
        is absent) stays at the enclosing mapping's line. Steps that match nothing, such
        as pydantic's union tags or ``[key]``, are skipped.
        """
        node = self.node
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for step in loc:
            if isinstance(node, yaml.MappingNode):
                entry = next(((k, v) for k, v in node.value
                              if isinstance(k, yaml.ScalarNode) and k.value == str(step)), None)
                if entry is not None:
                    line, node = entry[0].start_mark.line + 1, entry[1]
            elif (isinstance(node, yaml.SequenceNode) and isinstance(step, int)
                  and 0 <= step < len(node.value)):
                node = node.value[step]
                line = node.start_mark.line + 1
        return line

    def problem(self, loc: Loc, message: str) -> Problem:
        """A :class:`Problem` at ``loc``, with the line ``loc`` leads to."""
        return Problem(self.path, self.line(loc), ".".join(map(str, loc)), message)

    def problems(self, exc: ValidationError, prefix: Loc = (),
                 rename: Mapping[str, str] | None = None) -> list[Problem]:
        """One :class:`Problem` per pydantic error of ``exc``, in the file's line order.

        Args:
            exc: errors from validating (part of) this file.
            prefix: where the validated value sits in the file, when it is not the root.
            rename: field names of the validated model mapped to the file's own names,
                for a model built from the file rather than read straight from it.
        """
        found = []
        for err in exc.errors():
            loc = list(err["loc"])
            if loc and rename and str(loc[0]) in rename:
                loc[0] = rename[str(loc[0])]
            found.append(self.problem([*prefix, *loc], err["msg"]))
        return sorted(found, key=lambda problem: problem.line)  # pydantic's is field order

    def _duplicate_keys(self) -> Iterable[Problem]:
        """Each key given twice in one mapping, at the second one's line."""
        pending: list[tuple[yaml.Node, tuple[str | int, ...]]] = (
            [(self.node, ())] if self.node is not None else [])
        while pending:
            node, loc = pending.pop()
            if isinstance(node, yaml.MappingNode):
                seen: dict[str, int] = {}
                for key, value in node.value:
                    name = key.value if isinstance(key, yaml.ScalarNode) else None
                    if name is not None and name in seen:
                        yield Problem(self.path, key.start_mark.line + 1,
                                      ".".join(map(str, (*loc, name))),
                                      f"given twice (first on line {seen[name]})")
                    elif name is not None:
                        seen[name] = key.start_mark.line + 1
                    pending.append((value, (*loc, name if name is not None else "?")))
            elif isinstance(node, yaml.SequenceNode):
                pending.extend((item, (*loc, i)) for i, item in enumerate(node.value))


@dataclass(frozen=True)
class AgentSource:
    """A validated agent and the file it was read from (for located cross-file errors)."""

    agent: AgentConfig
    file: YamlFile


def read_agent(path: Path) -> AgentSource:
    """Read and validate one agent file, keeping its node tree for later checks.

    Raises:
        AgentError: naming ``path``, the line and the field at fault.
    """
    file = YamlFile.read(path)
    data = file.mapping("agent fields")
    try:
        return AgentSource(AgentConfig.model_validate(data), file)
    except ValidationError as exc:
        raise AgentError.of(file.problems(exc)) from exc


def load_agent(path: Path) -> AgentConfig:
    """Read and validate one agent file.

    Raises:
        AgentError: naming ``path`` and, for invalid content, the line and field at fault.
    """
    return read_agent(path).agent


def read_agents(directory: Path) -> dict[str, AgentSource]:
    """Load every ``*.yaml``/``*.yml`` file of ``directory`` (not its subdirectories).

    Every file is checked before failing, so one start-up reports all broken files.

    Returns:
        The agents and their files, keyed by agent name.

    Raises:
        AgentError: the directory has no agents, a file is invalid, two files declare
            the same name, or a route names an agent that no file declares.
    """
    if not directory.is_dir():
        raise AgentError(f"agents directory {directory} does not exist")
    sources: dict[str, AgentSource] = {}
    problems: list[Problem] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            source = read_agent(path)
        except AgentError as exc:
            if not exc.problems:
                raise
            problems.extend(exc.problems)
            continue
        name = source.agent.name
        if name in sources:
            problems.append(source.file.problem(
                ("name",), f"agent {name!r} is already defined in {sources[name].file.path}"))
            continue
        sources[name] = source
    if problems:
        raise AgentError.of(problems)
    if not sources:
        raise AgentError(f"agents directory {directory} has no *.yaml agent files")
    known = ", ".join(sorted(sources))
    for source in sources.values():
        for index, route in enumerate(source.agent.routes):
            if route.agent not in sources:
                problems.append(source.file.problem(
                    ("routes", index, "agent"), f"unknown agent {route.agent!r} (known: {known})"))
    if problems:
        raise AgentError.of(problems)
    return sources


def load_agents(directory: Path) -> dict[str, AgentConfig]:
    """Load every agent file of ``directory``, keyed by agent name.

    Raises:
        AgentError: as :func:`read_agents`.
    """
    return {name: source.agent for name, source in read_agents(directory).items()}


def default_agents_dir() -> Path:
    """``./agents`` when run from a checkout's root, else the checkout's agents directory."""
    here = Path("agents")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[2] / "agents"
