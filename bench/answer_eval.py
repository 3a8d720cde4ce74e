"""The answer eval: its questions (bench/data/answers.yaml), how a reply is scored, and how
one question is asked of a running Dialogue service.

Shared by bench/answers.py (the whole set, tables) and the tests (schema checks, and a
sample against the embedded model). A reply is scored on three things:

- facts: every fact of an answerable question is stated (figures in normal form, phrases
  as whole words);
- unsupported figures: figures of the reply that neither the knowledge base files, nor the
  prompts of the agents that answered, nor the question, nor the turn's tool results back
  (:class:`services.llm.grounding.figures.Support`);
- honesty: an out-of-scope reply gives the phone number and no unsupported figure.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import grpc
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.llm.grounding.figures import Figure, Kind, Support, extract
from services.llm.overrides import load_catalog
from services.llm.rag.chunks import knowledge_files
from voxmesh.v1 import dialogue_pb2 as pb
from voxmesh.v1 import dialogue_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "answers.yaml"
AGENTS_DIR = ROOT / "agents"
KNOWLEDGE_DIR = ROOT / "knowledge"
PHONE = "555-0142"
"""What an honest "I don't know" offers instead: the dealership's real number."""


# -- the question set ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FigureFact(_Strict):
    """One figure the reply must state, compared in normal form: ``"$29"``, ``"8 AM"``."""

    figure: str

    @property
    def normal(self) -> Figure:
        """The figure itself; the data test checks there is exactly one."""
        return extract(self.figure)[0]

    def stated_in(self, reply: str) -> bool:
        """Whether a figure of ``reply`` is this one."""
        return any(same_figure(self.normal, f) for f in extract(reply))


class PhraseFact(_Strict):
    """Words the reply must contain: any one of the alternatives."""

    phrase: Annotated[tuple[str, ...], Field(min_length=1)]

    def stated_in(self, reply: str) -> bool:
        """Whether one alternative occurs in ``reply`` as whole words."""
        return any(has_words(reply, alternative) for alternative in self.phrase)


Fact = FigureFact | PhraseFact


class Question(_Strict):
    """One question of the eval; see the header of bench/data/answers.yaml."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
    question: Annotated[str, Field(min_length=3)]
    style: Literal["plain", "spoken", "asr"]
    agent: str
    route: str = ""
    out_of_scope: bool = False
    facts: tuple[Fact, ...] = ()
    source: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _facts_match_scope(self) -> Question:
        if self.out_of_scope and self.facts:
            raise ValueError("an out-of-scope question has no facts")
        if not self.out_of_scope and not (self.facts and self.source):
            raise ValueError("an answerable question needs facts and their source")
        return self

    def describe(self) -> str:
        """The facts, as a table cell shows them."""
        return "; ".join(describe_fact(f) for f in self.facts)


def describe_fact(fact: Fact) -> str:
    """``$29``, or a phrase's alternatives joined by ``/``."""
    return fact.figure if isinstance(fact, FigureFact) else "/".join(fact.phrase)


class AnswerSet(_Strict):
    """The file: a knowledge base and its questions."""

    knowledge_base: str
    questions: tuple[Question, ...]


def load_answer_set(path: Path = DATA) -> AnswerSet:
    """Read and validate the question set."""
    return AnswerSet.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def pick(questions: tuple[Question, ...] | list[Question], n: int | None,
         seed: int = 7, agent: str = "") -> list[Question]:
    """The questions of ``agent`` (all when empty), or a fixed random ``n`` of them.

    The sample keeps the share of out-of-scope questions, and the file's order.
    """
    chosen = [q for q in questions if not agent or q.agent == agent]
    if n is None or n >= len(chosen):
        return chosen
    rng = random.Random(seed)
    scoped = [q for q in chosen if q.out_of_scope]
    answerable = [q for q in chosen if not q.out_of_scope]
    n_scoped = min(len(scoped), max(1, round(n * len(scoped) / len(chosen))))
    n_answerable = min(len(answerable), n - n_scoped)
    keep = {q.id for q in rng.sample(scoped, n_scoped) + rng.sample(answerable, n_answerable)}
    return [q for q in chosen if q.id in keep]


# -- comparing text ------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case, curly quotes straightened, everything but letters, digits and ' a space."""
    text = text.lower().replace("\u2019", "'")
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text).split())


def has_words(text: str, words: str) -> bool:
    """Whether ``words`` occur in ``text`` as whole words (see :func:`normalise`)."""
    return f" {normalise(words)} " in f" {normalise(text)} "


_HALF_OF_DAY = re.compile(r"[ap]\.?\s?m\b|morning|afternoon|evening|night|noon", re.I)


def same_figure(fact: Figure, said: Figure) -> bool:
    """Whether ``said`` states the figure ``fact``.

    Money and counts match by number ("$29" = "29 dollars" = "twenty-nine"); a time
    matches the same time, a time on a 12-hour clock ("eight o'clock") or, on the hour,
    the bare hour ("Saturday from 8 to 2"); a phone number only a phone number.
    """
    if fact.kind is Kind.PHONE:
        return said.kind is Kind.PHONE and said.value == fact.value
    if fact.kind in (Kind.MONEY, Kind.NUMBER):
        return said.kind in (Kind.MONEY, Kind.NUMBER) and said.value == fact.value
    hour, minute = fact.value.split(":")
    hour12 = int(hour) % 12 or 12
    if said.kind is Kind.TIME:
        if said.value == fact.value:
            return True
        said_hour, said_minute = said.value.rstrip("~").split(":")
        return (not _HALF_OF_DAY.search(said.text) and said_minute == minute
                and int(said_hour) % 12 == int(hour) % 12)
    return said.kind is Kind.NUMBER and minute == "00" and said.value == str(hour12)


# -- what backs a figure -------------------------------------------------------------------


@cache
def knowledge_texts(base: str) -> tuple[str, ...]:
    """The raw text of every file of knowledge base ``base``."""
    return tuple(p.read_text(encoding="utf-8") for p in knowledge_files(KNOWLEDGE_DIR / base))


@cache
def agent_prompts() -> dict[str, str]:
    """What each agent is given to say, as the service loads it: its system prompt, its
    greeting and its fixed replies (``unsupported_reply``, ``closest_reply``)."""
    return {name: "\n".join([a.system_prompt, a.greeting, a.unsupported_reply,
                             a.closest_reply])
            for name, a in load_catalog(AGENTS_DIR).agents.items()}


@cache
def fixed_replies() -> dict[str, tuple[str, str]]:
    """Per agent, how its fixed replies start: the closest-passage offer (the words of
    ``closest_reply`` before its first placeholder) and ``unsupported_reply``."""
    return {name: (a.closest_reply.split("{", 1)[0].strip(), a.unsupported_reply.strip())
            for name, a in load_catalog(AGENTS_DIR).agents.items()}


def reply_kind(reply: Reply) -> str:
    """``closest`` (the best passage offered as the closest thing found), ``fallback``
    (the agent's unsupported_reply) or ``answer`` (anything else: the passage said as
    the answer, or the model's words), judged by the agent that answered last."""
    if not reply.agents:
        return "answer"
    closest, unsupported = fixed_replies().get(reply.agents[-1], ("", ""))
    text = reply.text.strip()
    if closest and text.startswith(closest):
        return "closest"
    return "fallback" if unsupported and text == unsupported else "answer"


def support_for(base: str, question: str, agents: list[str], extra: list[str]) -> Support:
    """The figures a reply may state: the knowledge base, the prompts of the agents that
    took part, the caller's question and the turn's tool results (``extra``)."""
    prompts = [agent_prompts().get(name, "") for name in agents]
    return Support(*knowledge_texts(base), *prompts, question, *extra)


# -- asking --------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the service said to one question."""

    text: str = ""
    first_token_ms: float | None = None
    agents: list[str] = field(default_factory=list)
    """The agent asked, then every agent the turn was handed to."""
    tool_results: list[str] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)
    status: str = ""
    error: str = ""


async def ask(addr: str, question: Question, timeout_s: float = 120.0) -> Reply:
    """One fresh Converse session, one user turn: the whole reply and its first token."""
    reply = Reply(agents=[question.agent])
    async with grpc.aio.insecure_channel(addr) as channel:
        call = dialogue_pb2_grpc.DialogueStub(channel).Converse()
        try:
            await call.write(pb.ConverseRequest(config=pb.DialogueConfig(
                session_id=f"answers-{uuid.uuid4().hex}", agent=question.agent)))
            ready = await asyncio.wait_for(call.read(), timeout_s)
            if ready is grpc.aio.EOF or ready.WhichOneof("event") != "ready":
                reply.status, reply.error = "NO_SESSION", str(ready)
                return reply
            started = time.perf_counter()
            await call.write(pb.ConverseRequest(user_turn=pb.UserTurn(
                turn_id="q", text=question.question)))
            await asyncio.wait_for(_collect(call, reply, started), timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            reply.status, reply.error = "ERROR", f"{type(exc).__name__}: {exc}"
        finally:
            call.cancel()
    return reply


async def _collect(call: grpc.aio.StreamStreamCall, reply: Reply, started: float) -> None:
    """Read the turn's events into ``reply`` until it is done."""
    while (event := await call.read()) is not grpc.aio.EOF:
        kind = event.WhichOneof("event")
        if kind == "delta" and reply.first_token_ms is None and event.delta.delta.strip():
            reply.first_token_ms = (time.perf_counter() - started) * 1000
        elif kind == "handoff":
            reply.agents.append(event.handoff.to_agent)
        elif kind == "tool" and event.tool.result_json:
            reply.tool_results.append(event.tool.result_json)
        elif kind == "retrieval":
            reply.citations = [c.source for c in event.retrieval.citations]
        elif kind == "done":
            reply.text, reply.error = event.done.text, event.done.error_message
            reply.status = pb.TurnStatus.Name(event.done.status).removeprefix("TURN_STATUS_")
            return
    reply.status = "EOF"


# -- scoring -------------------------------------------------------------------------------


@dataclass
class Score:
    """How one reply did."""

    question: Question
    reply: Reply
    missing: list[str]
    """The facts not stated (as :func:`describe_fact` writes them)."""
    unsupported: list[str]
    """The texts of the reply's figures nothing backs."""

    @property
    def all_facts(self) -> bool:
        """An answerable question whose reply states every fact."""
        return not self.question.out_of_scope and not self.missing

    @property
    def gives_phone(self) -> bool:
        """Whether the reply gives the real phone number."""
        phone = extract(PHONE)[0]
        return any(same_figure(phone, f) for f in extract(self.reply.text))

    @property
    def honest(self) -> bool:
        """An out-of-scope reply that gives the phone number and invents no figure."""
        return self.question.out_of_scope and self.gives_phone and not self.unsupported

    @property
    def routed(self) -> str:
        """The agent that gave the reply."""
        return self.reply.agents[-1]

    @property
    def kind(self) -> str:
        """How the reply was made (:func:`reply_kind`)."""
        return reply_kind(self.reply)


def score(base: str, question: Question, reply: Reply) -> Score:
    """Score ``reply`` to ``question`` against knowledge base ``base``."""
    missing = [describe_fact(f) for f in question.facts if not f.stated_in(reply.text)]
    support = support_for(base, question.question, reply.agents, reply.tool_results)
    unsupported = [f.text for f in support.unsupported(reply.text)]
    return Score(question, reply, missing, unsupported)
