#!/usr/bin/env python3
"""Answer quality of the Dialogue service on the dealership's knowledge base.

Every question of bench/data/answers.yaml (or ``--data``: answers_holdout.yaml was written
after the grounding was tuned on answers.yaml, and never tuned on) is asked of a real
Dialogue service process (``voxmesh.launcher.Stack``, llm service only), one fresh
Converse session per question, and its whole reply scored (bench/answer_eval.py):

- answerable questions whose reply states all their facts (%);
- replies with a figure that nothing backs (the knowledge base files, the prompts of the
  agents that answered, the question, the turn's tool results), with the offenders;
- out-of-scope questions answered honestly: the phone number 555-0142 and no such figure;
- how each reply was made: the best passage said as the answer, offered as the closest
  thing found (the agent's closest_reply, which gives the phone number), the agent's
  unsupported_reply, or the model's words;
- first token, measured at the gRPC client from sending the turn to the first text delta.

The model is the embedded SmolLM2-135M behind llama.cpp, or any OpenAI-compatible
endpoint (``--base-url URL --model NAME --api-key KEY``). Prints markdown tables and
saves them to ``bench/results/<out>.md``, raw numbers and replies to ``<out>.json``.

Usage: .venv/bin/python bench/answers.py [--sample N] [--agent NAME] [--out STEM]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.answer_eval import (  # noqa: E402
    DATA,
    ROOT,
    Question,
    Score,
    ask,
    load_answer_set,
    pick,
    score,
)
from bench.common import percentile, save_results  # noqa: E402
from bench.stt import code_version  # noqa: E402
from voxmesh.launcher import Ports, Stack  # noqa: E402

WARM_UP = "hello"


def start_stack(state_dir: Path, opts: argparse.Namespace) -> Stack:
    """The llm service, on the embedded llama.cpp server unless ``--base-url`` is given."""
    env = {"VOXMESH_LLM_MODEL": opts.model} if opts.model else {}
    if opts.api_key:
        env["VOXMESH_LLM_API_KEY"] = opts.api_key
    stack = Stack(ports=Ports.random(), services=("llm",), llm_base_url=opts.base_url,
                  state_dir=state_dir, extra_env=env)
    stack.start()
    return stack


async def run(addr: str, base: str, questions: list[Question]) -> list[Score]:
    """Ask every question in turn (one model: in parallel they would only queue)."""
    warm = Question(id="warm-up", question=WARM_UP, style="plain", agent="faq",
                    out_of_scope=True)
    await ask(addr, warm)  # loads the retriever and fills the server's prompt cache
    scores = []
    for i, question in enumerate(questions, 1):
        reply = await ask(addr, question)
        result = score(base, question, reply)
        scores.append(result)
        verdict = ("honest" if result.honest else "NOT honest") if question.out_of_scope \
            else ("all facts" if result.all_facts else f"missing {result.missing}")
        extra = f", unsupported {result.unsupported}" if result.unsupported else ""
        print(f"[{i}/{len(questions)}] {question.id}: {verdict}{extra}"
              f" ({reply.first_token_ms or float('nan'):.0f} ms) {reply.text!r}", flush=True)
    return scores


# -- the report ----------------------------------------------------------------------------


def summary(scores: list[Score]) -> dict[str, Any]:
    """The headline numbers of a group of replies."""
    answerable = [s for s in scores if not s.question.out_of_scope]
    scoped = [s for s in scores if s.question.out_of_scope]
    firsts = [s.reply.first_token_ms for s in scores if s.reply.first_token_ms is not None]
    facts = sum(len(s.question.facts) for s in answerable)
    routed = [s for s in scores if s.question.route]
    return {
        "questions": len(scores), "answerable": len(answerable), "out_of_scope": len(scoped),
        "all_facts": sum(s.all_facts for s in answerable),
        "all_facts_closest": sum(s.all_facts and s.kind == "closest" for s in answerable),
        "out_of_scope_closest": sum(s.kind == "closest" for s in scoped),
        "out_of_scope_fallback": sum(s.kind == "fallback" for s in scoped),
        "facts": facts, "facts_stated": facts - sum(len(s.missing) for s in answerable),
        "honest": sum(s.honest for s in scoped),
        "with_phone": sum(s.gives_phone for s in scoped),
        "unsupported_replies": sum(bool(s.unsupported) for s in scores),
        "failed_turns": sum(s.reply.status != "COMPLETED" for s in scores),
        "routed": len(routed), "routed_right": sum(s.routed == s.question.route for s in routed),
        "first_token_p50_ms": percentile(firsts, 50) if firsts else None,
        "first_token_p95_ms": percentile(firsts, 95) if firsts else None,
    }


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def summary_rows(groups: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """One table row per group of replies."""
    lines = ["| | questions | all facts stated | of which offered as closest | facts stated "
             "| out of scope: honest (with 555-0142) | of which closest / unsupported_reply "
             "| replies with an unsupported figure | failed turns "
             "| first token p50 / p95 (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in groups:
        lines.append(
            f"| {name} | {s['questions']} | {_pct(s['all_facts'], s['answerable'])} "
            f"| {s['all_facts_closest']} "
            f"| {_pct(s['facts_stated'], s['facts'])} "
            f"| {_pct(s['honest'], s['out_of_scope'])} ({s['with_phone']}) "
            f"| {s['out_of_scope_closest']} / {s['out_of_scope_fallback']} "
            f"| {s['unsupported_replies']} | {s['failed_turns']} "
            f"| {_ms(s['first_token_p50_ms'])} / {_ms(s['first_token_p95_ms'])} |")
    return lines


def details(scores: list[Score]) -> list[str]:
    """The replies that fell short, each with what was wrong."""
    lines: list[str] = []
    invented = [s for s in scores if s.unsupported]
    if invented:
        lines += ["", "Replies with an unsupported figure:", "",
                  "| question | figures | reply |", "|---|---|---|"]
        lines += [f"| {s.question.id} | {', '.join(s.unsupported)} | {_cell(s.reply.text)} |"
                  for s in invented]
    missing = [s for s in scores if not s.question.out_of_scope and s.missing]
    if missing:
        lines += ["", "Answerable questions with a fact missing:", "",
                  "| question | asked | missing | reply |", "|---|---|---|---|"]
        lines += [f"| {s.question.id} | {_cell(s.question.question, 80)} "
                  f"| {_cell('; '.join(s.missing), 60)} | {_cell(s.reply.text)} |"
                  for s in missing]
    dishonest = [s for s in scores if s.question.out_of_scope and not s.honest]
    if dishonest:
        lines += ["", "Out-of-scope questions not answered honestly:", "",
                  "| question | asked | reply |", "|---|---|---|"]
        lines += [f"| {s.question.id} | {_cell(s.question.question, 80)} "
                  f"| {_cell(s.reply.text)} |" for s in dishonest]
    misrouted = [s for s in scores if s.question.route and s.routed != s.question.route]
    if misrouted:
        lines += ["", "Router questions answered by another desk:", "",
                  "| question | expected | answered by |", "|---|---|---|"]
        lines += [f"| {s.question.id} | {s.question.route} | {s.routed} |" for s in misrouted]
    return lines


def report(meta: dict[str, Any], scores: list[Score]) -> str:
    """Markdown tables of one run."""
    by_agent = sorted({s.question.agent for s in scores})
    by_style = ["plain", "spoken", "asr"]
    overall = summary(scores)
    lines = [
        f"# Answer eval (`bench/answers.py`): {meta['model']}", "",
        f"{meta['date']}, {meta['cpu']} ({meta['nproc']} CPUs, load {meta['loadavg']}), "
        f"{meta['platform']}; code {meta['code']}; {meta['grounding']}.",
        f"Questions: `{meta['data']}`.",
        f"Command: `{meta['command']}`; {meta['seconds']:.0f} s.", "",
        *summary_rows([(f"agent {a}", summary([s for s in scores if s.question.agent == a]))
                       for a in by_agent] + [("**overall**", overall)]),
        "", "By phrasing:", "",
        *summary_rows((f"{style}", summary([s for s in scores if s.question.style == style]))
                      for style in by_style),
        "", "Multi-fact questions: "
        + _pct(sum(s.all_facts for s in scores if len(s.question.facts) > 1),
               sum(len(s.question.facts) > 1 for s in scores)) + " with every fact stated.",
    ]
    if overall["routed"]:
        lines += [f"Router questions handed to the expected desk: "
                  f"{_pct(overall['routed_right'], overall['routed'])}."]
    return "\n".join(lines + details(scores)) + "\n"


def grounding_state() -> str:
    """Whether the answer-grounding work is in the code measured (it is being built)."""
    root = Path(__file__).resolve().parent.parent / "services" / "llm"
    modules = sorted(p.stem for p in (root / "grounding").glob("*.py")
                     if p.stem not in ("__init__", "figures"))
    session = (root / "session.py").read_text(encoding="utf-8")
    hooked = "grounding" in session
    if modules and hooked:
        return f"grounding in place ({', '.join(modules)}; hooked in session.py)"
    return "no answer grounding (baseline)" if not modules and not hooked else (
        f"grounding partly in place (modules: {modules or 'none'}, session hook: {hooked})")


def machine(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """What the numbers depend on: model, CPUs, load, code."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "model": f"{opts.model or 'smollm2'} at {opts.base_url}" if opts.base_url
        else "embedded SmolLM2-135M (llama.cpp)",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu,
        "platform": f"{platform.system()} {platform.machine()}, "
                    f"Python {platform.python_version()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "code": code_version(), "grounding": grounding_state(),
        "command": " ".join([".venv/bin/python bench/answers.py", *(
            "***" if opts.api_key and a == opts.api_key else a for a in argv)]),
    }


def as_json(scores: list[Score]) -> list[dict[str, Any]]:
    """Every question and its reply, for a later look."""
    return [{"id": s.question.id, "question": s.question.question, "agent": s.question.agent,
             "style": s.question.style, "out_of_scope": s.question.out_of_scope,
             "facts": s.question.describe(), "missing": s.missing,
             "unsupported": s.unsupported, "all_facts": s.all_facts, "honest": s.honest,
             "kind": s.kind,
             "reply": asdict(s.reply)} for s in scores]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="",
                        help="OpenAI-compatible endpoint; default: the embedded llama.cpp")
    parser.add_argument("--model", default="", help="model name sent to --base-url")
    parser.add_argument("--api-key", default="", help="API key of --base-url")
    parser.add_argument("--sample", type=int, default=None,
                        help="a fixed random subset of N questions (see --seed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--agent", default="", help="only the questions asked of this agent")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="question set (default bench/data/answers.yaml)")
    parser.add_argument("--out", default="answers",
                        help="results stem: bench/results/<out>.md and .json")
    opts = parser.parse_args(argv)
    if opts.sample is not None and opts.sample < 1:
        parser.error("--sample must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run the eval; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    answer_set = load_answer_set(opts.data)
    questions = pick(answer_set.questions, opts.sample, opts.seed, opts.agent)
    if not questions:
        print(f"no questions for agent {opts.agent!r}", file=sys.stderr)
        return 2
    meta = machine(opts, argv)
    meta["data"] = str(opts.data.resolve().relative_to(ROOT)) if opts.data.resolve(
        ).is_relative_to(ROOT) else str(opts.data)
    print(f"{len(questions)} questions, {meta['model']}, {meta['grounding']}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), opts)
        try:
            scores = asyncio.run(run(stack.addr("llm"), answer_set.knowledge_base, questions))
        finally:
            stack.stop()
    meta["seconds"] = time.monotonic() - started
    text = report(meta, scores)
    print("\n" + text)
    saved = save_results(opts.out, text, {"meta": meta, "summary": summary(scores),
                                          "questions": as_json(scores)})
    print(f"saved {saved}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
