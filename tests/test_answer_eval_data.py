"""The answer eval's questions (bench/data/answers.yaml and the held-out
answers_holdout.yaml) and its scoring; no services.

Every fact a question demands must be stated by the passages it cites, so the eval can
never ask a model for a fact the knowledge base does not have.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.answer_eval import (
    DATA,
    KNOWLEDGE_DIR,
    AnswerSet,
    FigureFact,
    PhraseFact,
    Question,
    Reply,
    agent_prompts,
    has_words,
    knowledge_texts,
    load_answer_set,
    pick,
    score,
)
from services.llm.grounding.figures import Support, extract
from services.llm.rag.chunks import load_passages

HOLDOUT = DATA.with_name("answers_holdout.yaml")
SIZES = {"answers": (80, 12, 10, 5), "answers_holdout": (50, 12, 8, 5)}
"""Per file: at least this many questions, out-of-scope ones, multi-fact ones and router
ones."""


@pytest.fixture(scope="module", params=[DATA, HOLDOUT], ids=lambda p: p.stem)
def answer_set(request: pytest.FixtureRequest) -> AnswerSet:
    return load_answer_set(request.param)


def test_the_holdout_asks_nothing_the_tuned_set_asks() -> None:
    tuned, held = load_answer_set(DATA), load_answer_set(HOLDOUT)
    assert not {q.id for q in tuned.questions} & {q.id for q in held.questions}
    assert not {q.question for q in tuned.questions} & {q.question for q in held.questions}


@pytest.fixture(scope="module")
def passages(answer_set: AnswerSet) -> dict[str, str]:
    """Passage text by source (``file#Section``), as the retriever names them."""
    return {p.source: p.text
            for p in load_passages(KNOWLEDGE_DIR / answer_set.knowledge_base)}


def test_the_set_is_big_and_varied(answer_set: AnswerSet,
                                   request: pytest.FixtureRequest) -> None:
    questions = answer_set.questions
    total, scoped, multi, routed = SIZES[request.node.callspec.id]
    assert len(questions) >= total
    assert sum(q.out_of_scope for q in questions) >= scoped
    assert sum(len(q.facts) > 1 for q in questions) >= multi, "multi-fact questions"
    assert Counter(q.style for q in questions).keys() == {"plain", "spoken", "asr"}
    assert sum(q.agent == "router" for q in questions) >= routed
    assert len({q.id for q in questions}) == len(questions), "ids are unique"
    assert len({q.question for q in questions if q.agent == "faq"}) == sum(
        q.agent == "faq" for q in questions), "no question asked twice of one agent"


def test_agents_and_routes_exist(answer_set: AnswerSet) -> None:
    agents = agent_prompts()
    for q in answer_set.questions:
        assert q.agent in agents, q.id
        assert (q.route in agents) if q.agent == "router" else not q.route, q.id


def test_sources_are_passages_of_the_knowledge_base(
        answer_set: AnswerSet, passages: dict[str, str]) -> None:
    for q in answer_set.questions:
        for source in q.source:
            assert source in passages, f"{q.id}: no passage {source!r}"


def test_every_figure_fact_is_in_its_source(
        answer_set: AnswerSet, passages: dict[str, str]) -> None:
    """One figure per fact, stated by a cited passage and so by the knowledge base."""
    whole = Support(*knowledge_texts(answer_set.knowledge_base))
    for q in answer_set.questions:
        cited = Support(*(passages[s] for s in q.source))
        for fact in q.facts:
            if isinstance(fact, FigureFact):
                figures = extract(fact.figure)
                assert len(figures) == 1, f"{q.id}: {fact.figure!r} is {figures}"
                assert cited.supports(figures[0]), f"{q.id}: {fact.figure!r} not in {q.source}"
                assert whole.supports(figures[0])


def test_every_phrase_fact_is_in_its_source(
        answer_set: AnswerSet, passages: dict[str, str]) -> None:
    """At least one alternative of each phrase is the knowledge base's own words."""
    for q in answer_set.questions:
        text = " ".join(passages[s] for s in q.source)
        for fact in q.facts:
            if isinstance(fact, PhraseFact):
                assert any(has_words(text, a) for a in fact.phrase), (
                    f"{q.id}: none of {fact.phrase} in {q.source}")


def test_a_sample_is_fixed_and_keeps_out_of_scope_questions(answer_set: AnswerSet) -> None:
    first = pick(answer_set.questions, 20)
    assert [q.id for q in first] == [q.id for q in pick(answer_set.questions, 20)]
    assert len(first) == 20 and any(q.out_of_scope for q in first)
    assert all(q.agent == "router" for q in pick(answer_set.questions, None, agent="router"))


def _question(**fields: object) -> Question:
    return Question.model_validate({"id": "q", "question": "how much is it", "style": "plain",
                                    "agent": "faq", "source": ["x"], **fields})


@pytest.mark.parametrize(("fact", "reply", "stated"), [
    ({"figure": "$29"}, "A tire rotation is $29.", True),
    ({"figure": "$29"}, "It costs 29 dollars.", True),
    ({"figure": "$29"}, "That is twenty-nine dollars.", True),
    ({"figure": "$29"}, "That is $39.", False),
    ({"figure": "8 AM"}, "We open at eight in the morning.", True),
    ({"figure": "8 AM"}, "We open at 8:00 a.m.", True),
    ({"figure": "8 AM"}, "Saturday from 8 to 2.", True),
    ({"figure": "8 AM"}, "We open at eight o'clock.", True),
    ({"figure": "8 AM"}, "We open at 8 PM.", False),
    ({"figure": "555-0142"}, "Call us on 555 0142.", True),
    ({"figure": "36,000 miles"}, "three years or thirty-six thousand miles", True),
    ({"phrase": ["closed", "not open"]}, "Sorry, we're CLOSED that day.", True),
    ({"phrase": ["wi fi"]}, "The lounge has free Wi-Fi.", True),
    ({"phrase": ["card"]}, "We ask for a credit-card hold.", True),
    ({"phrase": ["card"]}, "Cards are fine.", False),
])
def test_facts_match_in_normal_form(fact: dict[str, object], reply: str, stated: bool) -> None:
    assert _question(facts=[fact]).facts[0].stated_in(reply) is stated


def test_scoring_flags_invented_figures_and_honest_answers() -> None:
    answerable = _question(facts=[{"figure": "$49"}])
    invented = score("maple_motors", answerable, Reply(
        text="An oil change is $49, or $95 with premium oil.", agents=["faq"]))
    assert invented.all_facts and invented.unsupported == ["$95"]

    unknown = _question(id="oos", out_of_scope=True, source=[],
                        question="how much is a wheel alignment")
    honest = score("maple_motors", unknown, Reply(
        text="I don't know that; please call 555-0142.", agents=["faq"]))
    assert honest.honest and honest.gives_phone
    made_up = score("maple_motors", unknown, Reply(
        text="About $89; call 555-0142 to book.", agents=["faq"]))
    assert not made_up.honest and made_up.unsupported == ["$89"]
    wrong_phone = score("maple_motors", unknown, Reply(
        text="Please call 555-0199.", agents=["faq"]))
    assert not wrong_phone.honest and wrong_phone.unsupported == ["555-0199"]
    # A tool result of the turn backs the figures it returns.
    slot = "The next free time is 3:45 PM; call 555-0142."
    assert score("maple_motors", unknown, Reply(text=slot, agents=["booking"])).unsupported \
        == ["3:45 PM"]
    assert score("maple_motors", unknown, Reply(
        text=slot, agents=["booking"], tool_results=['{"slots": ["3:45 PM"]}'])).honest
