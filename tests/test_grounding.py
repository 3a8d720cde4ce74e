"""Grounding on its own: figures in normal form, the sentence gate, extractive answers.

The extractive tests use the real packaged MiniLM model over the real dealership
knowledge base (no processes): what the faq desk says for a question is exactly what
these functions pick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.llm.agents import AgentConfig, KnowledgeConfig, load_agent
from services.llm.grounding.extractive import Evidence, ExtractedAnswer, extract_answer
from services.llm.grounding.figures import Kind, Support, extract
from services.llm.grounding.gate import SentenceGate
from services.llm.grounding.spoken import spoken_answer
from services.llm.rag import load_knowledge_bases
from services.llm.rag.knowledge import KnowledgeBase
from services.llm.rag.query import QueryRepair
from voxmesh.config import LlmSettings

KB_DIR = Path(__file__).resolve().parents[1] / "knowledge" / "maple_motors"


@pytest.mark.parametrize(("text", "figures"), [
    ("A tire rotation costs $29 and takes about 30 minutes.",
     [(Kind.MONEY, "29"), (Kind.NUMBER, "30")]),
    ("It is twenty-nine dollars.", [(Kind.MONEY, "29")]),
    ("Call 555-0142, or (510) 239-7486.", [(Kind.PHONE, "5550142"), (Kind.PHONE, "2397486")]),
    ("Open 8 AM to 2 p.m., from eight in the morning, at nine o'clock.",
     [(Kind.TIME, "8:00"), (Kind.TIME, "14:00"), (Kind.TIME, "8:00"), (Kind.TIME, "9:00~")]),
    ("Every 5,000 to 7,500 miles at 1280 Elm Street.",
     [(Kind.NUMBER, "5000"), (Kind.NUMBER, "7500"), (Kind.NUMBER, "1280")]),
    ("Which one? Give me one moment.", []),  # "one" is speech, not a fact
])
def test_figures_come_out_in_normal_form(text: str, figures: list[tuple[Kind, str]]) -> None:
    assert [(f.kind, f.value) for f in extract(text)] == figures


def test_support_backs_the_same_figure_however_it_is_said() -> None:
    facts = Support((KB_DIR / "services-and-prices.md").read_text(),
                    (KB_DIR / "hours-and-location.md").read_text())
    assert facts.unsupported(
        "A tire rotation is twenty-nine dollars; we open at eight o'clock on Saturday and "
        "you can call 555-0142.") == []
    invented = facts.unsupported("It costs $100 to $250; call 510-239-7486 at 1280 Elm Street.")
    assert [f.text for f in invented] == ["$100", "$250", "510-239-7486", "1280"]
    # The same number as another kind of figure is not backed: 6 AM is not 6 PM.
    assert [f.text for f in facts.unsupported("We open at 6 AM with 49 bays.")] == ["6 AM", "49"]
    assert facts.unsupported("On Saturday we open at eight.") == []  # a bare hour


def test_the_gate_withholds_only_sentences_with_invented_figures() -> None:
    gate = SentenceGate(Support("A tire rotation costs $29. Saturday 8 AM to 2 PM."))
    spoken: list[str] = []
    for piece in ["A tire ro", "tation costs $29. It can be $100 to $2", "50. We open at 8 a.m",
                  ". on Saturday. Call 510-239-", "7486"]:
        spoken += gate.push(piece)
    spoken += gate.flush()
    assert spoken == ["A tire rotation costs $29. ", "We open at 8 a.m. on Saturday. "]
    assert [d.sentence for d in gate.dropped] == ["It can be $100 to $250.", "Call 510-239-7486"]


def test_a_run_on_reply_still_streams_in_checked_pieces() -> None:
    gate = SentenceGate(Support(""))
    pieces = list(gate.push(" ".join(f"word{i}" for i in range(60))))
    assert len(pieces) >= 2 and all(len(p) <= 121 for p in pieces)


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    settings = LlmSettings(state_dir=str(tmp_path_factory.mktemp("rag")))
    yield asyncio.run(load_knowledge_bases({"maple_motors"}, settings))["maple_motors"]


@pytest.fixture(scope="module")
def faq() -> AgentConfig:
    return load_agent(KB_DIR.parents[1] / "agents" / "faq.yaml")


def extracted(kb: KnowledgeBase, faq: AgentConfig, question: str
              ) -> tuple[ExtractedAnswer | None, Support]:
    """What the faq desk takes from the knowledge base for ``question`` (with its own
    settings), and the support of the passages it was retrieved with."""
    config = faq.knowledge
    assert config is not None and config.answer_min_score is not None
    assert config.closest_min_score is not None
    found = kb.search_sync(question, config.top_k, config.min_score)
    answer = extract_answer(kb.embedder, kb.repair(question),
                            [Evidence(p.source, p.text, p.score) for p in found.passages],
                            config.answer_min_score, config.closest_min_score)
    return answer, Support(*(p.text for p in found.passages))


@pytest.mark.parametrize(("question", "says"), [
    ("How much is a tire rotation?", "$29"),
    ("how much is an oil change and how long does it take", "$49 and takes about 30 minutes"),
    ("do you have loaner cars", "free loaner car"),
])
def test_close_questions_are_answered_with_the_knowledge_bases_words(
        kb: KnowledgeBase, faq: AgentConfig, question: str, says: str) -> None:
    answer, support = extracted(kb, faq, question)
    assert answer is not None and answer.confident and says in answer.text, answer
    assert support.unsupported(answer.text) == []


@pytest.mark.parametrize(("question", "says"), [
    ("What is your street address?", "12 Harbor Road"),  # 0.51: offered as the closest
    ("Is there a fee for cancelling?", "no fee"),  # 0.646
    ("can i come look at cars in the show room on sunday", "closed on Sunday"),
    ("whats the power train warranty", "5 years or 60,000 miles"),
    ("what time do you close on christmas eev", "2 PM"),
])
def test_plain_and_misheard_questions_find_their_passage(
        kb: KnowledgeBase, faq: AgentConfig, question: str, says: str) -> None:
    answer, support = extracted(kb, faq, question)
    assert answer is not None and says in answer.text, answer
    assert support.unsupported(answer.text) == []


@pytest.mark.parametrize("question", [
    "Do you sell motorcycles?", "Can I talk to a person about my warranty claim?",
    "what's the price of a new engine", "how much is a wheel alignment"])
def test_questions_the_passages_do_not_answer_are_never_answered_confidently(
        kb: KnowledgeBase, faq: AgentConfig, question: str) -> None:
    answer, support = extracted(kb, faq, question)
    if answer is None:
        return  # the strict desk says its unsupported_reply, with the phone number
    assert not answer.confident, answer
    said = spoken_answer(faq, answer)
    assert said.startswith("Here is the closest I found") and "555-0142" in said, said
    assert support.unsupported(answer.text) == []


def test_greetings_find_no_passage_to_answer_from(kb: KnowledgeBase, faq: AgentConfig) -> None:
    for greeting in ("hi", "hello there", "thanks bye", "how are you today"):
        answer, _ = extracted(kb, faq, greeting)
        assert answer is None, (greeting, answer)


@pytest.mark.parametrize(("heard", "searched"), [
    ("uh what time do you close on thanks giving", "what time do you close on thanksgiving"),
    ("whats ur address", "what is your address"),
    ("can i bring my dog into the show room", "can i bring my dog into the showroom"),
    ("do you take credit crads", "do you take credit cards"),
    ("is there a fee if i cancel", "is there a fee if i cancel"),  # real words stay
    ("how long does a test drive take", "how long does a test drive take"),
])
def test_query_repair_mends_slips_but_never_a_real_word(
        kb: KnowledgeBase, heard: str, searched: str) -> None:
    assert kb.repair(heard) == searched


def test_query_repair_without_a_dictionary_only_joins_words() -> None:
    repair = QueryRepair(["The showroom takes credit cards."], frozenset())
    assert repair("the show room takes credit crads") == "the showroom takes credit crads"


def test_closest_reply_must_say_the_answer() -> None:
    with pytest.raises(ValidationError, match="closest_reply"):
        AgentConfig(name="x", system_prompt="x", closest_reply="The closest: {page}.")
    with pytest.raises(ValidationError, match="answer_min_score"):
        KnowledgeConfig(base="x", answer_min_score=0.5, closest_min_score=0.6)
