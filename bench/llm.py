"""Dialogue service latency and routing quality.

Part 1, routing overhead: first token of a reply, measured at the gRPC client from sending
the user turn to the first text delta, against the scripted OpenAI-compatible server
(first streamed token after ``--first-token-ms``; a non-streamed classifier answer after
``--classify-ms``, asked only when ``VOXMESH_LLM_ROUTER_LLM_TIEBREAK`` is on). Scenarios:
an agent without routes; the router keeping a greeting (speculative and sequential
routing); the router handing a booking request to the booking desk. Routing is semantic
(embeddings, in the service), so the turn's words decide.

Part 2, routing quality (``--embedded``): the router's decisions for labelled caller
utterances with the embedded SmolLM2-135M behind llama.cpp, as spoken to the real
service: how often the right desk answered, and how (semantic, model or keywords).
bench/routing.py measures the semantic router alone on a larger held-out set.

Run: ``.venv/bin/python bench/llm.py [--turns 15] [--embedded]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, save_results  # noqa: E402
from services.llm.router import CLASSIFIER_HEADER  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402
from voxmesh.launcher import Ports, Stack  # noqa: E402
from voxmesh.v1 import dialogue_pb2 as pb  # noqa: E402
from voxmesh.v1 import dialogue_pb2_grpc  # noqa: E402

LABELLED = [
    ("What time do you open on Saturday?", "faq"),
    ("Where is the dealership?", "faq"),
    ("How much is an oil change?", "faq"),
    ("Do you offer financing for used cars?", "faq"),
    ("Is my car still under warranty after three years?", "faq"),
    ("Do you have loaner cars while mine is in the shop?", "faq"),
    ("I'd like to book an oil change for Tuesday.", "booking"),
    ("Can I schedule a brake inspection?", "booking"),
    ("I need to cancel my appointment.", "booking"),
    ("Can you move my service appointment to Friday?", "booking"),
    ("My tires need rotating, when can you fit me in?", "booking"),
    ("I want to test drive the new hatchback.", "concierge"),
    ("Could I take the SUV out for a drive this weekend?", "concierge"),
    ("Let me speak to a manager.", "escalation"),
    ("I want to talk to a real person.", "escalation"),
    ("This is the third time my car came back broken, I'm furious.", "escalation"),
    ("My car broke down on the highway.", "escalation"),
    ("Hello there.", "router"),
    ("Thanks, that's all.", "router"),
    ("Um, I'm not sure.", "router"),
]


class Scripted:
    """The fake model: a fixed classifier answer, else a short reply."""

    def __init__(self) -> None:
        self.intent = "other"

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        if str(messages[0].get("content", "")).startswith(CLASSIFIER_HEADER):
            return json.dumps({"intent": self.intent, "confidence": 0.95})
        return "Sure, I can help with that today."


async def first_token_ms(addr: str, agent: str,
                         text: str = "Can I bring my car in on Tuesday?") -> float:
    """One fresh conversation, one turn: milliseconds to the first text delta."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = dialogue_pb2_grpc.DialogueStub(channel).Converse()
        await call.write(pb.ConverseRequest(config=pb.DialogueConfig(
            session_id=f"bench-{uuid.uuid4().hex}", agent=agent)))
        await call.read()  # ready
        started = time.perf_counter()
        await call.write(pb.ConverseRequest(user_turn=pb.UserTurn(
            turn_id="t1", text=text)))
        elapsed = float("nan")
        while (event := await call.read()) is not grpc.aio.EOF:
            kind = event.WhichOneof("event")
            if kind == "delta" and elapsed != elapsed:
                elapsed = (time.perf_counter() - started) * 1000
            if kind == "done":
                break
        call.cancel()
        return elapsed


def start_stack(state_dir: Path, base_url: str, speculative: bool) -> Stack:
    stack = Stack(ports=Ports.random(), services=("llm",), llm_base_url=base_url,
                  state_dir=state_dir, extra_env={
                      "VOXMESH_LLM_SPECULATIVE_ROUTING": str(speculative).lower()})
    stack.start()
    return stack


async def routing_overhead(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    scripted = Scripted()
    rows: list[dict[str, Any]] = []
    with FakeOpenAI(reply=scripted, first_token_delay_s=args.first_token_ms / 1000,
                    token_delay_s=0.01, completion_delay_s=args.classify_ms / 1000) as fake:
        for speculative in (True, False):
            stack = start_stack(tmp / f"spec-{speculative}", fake.base_url, speculative)
            try:
                scenarios = [("no routes (assistant)", "assistant", "other",
                               "Can I bring my car in on Tuesday?")] if speculative else []
                scenarios += [("router keeps the turn", "router", "other", "Hello there."),
                              ("router hands off to booking", "router", "booking",
                               "I'd like to book an oil change for Tuesday.")]
                for name, agent, intent, text in scenarios:
                    scripted.intent = intent
                    await first_token_ms(stack.addr("llm"), agent, text)  # warm the path
                    times = [await first_token_ms(stack.addr("llm"), agent, text)
                             for _ in range(args.turns)]
                    mode = "" if agent == "assistant" else (
                        " speculative" if speculative else " sequential")
                    rows.append({"scenario": name + mode, "p50_ms": statistics.median(times),
                                 "p95_ms": percentile(times, 95), "turns": len(times)})
            finally:
                stack.stop()
    return rows


async def decide(addr: str, text: str) -> tuple[str, str]:
    """The agent that answered ``text`` at the router, and the decision's source."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = dialogue_pb2_grpc.DialogueStub(channel).Converse()
        await call.write(pb.ConverseRequest(config=pb.DialogueConfig(
            session_id=f"bench-{uuid.uuid4().hex}", agent="router")))
        await call.read()
        await call.write(pb.ConverseRequest(user_turn=pb.UserTurn(turn_id="t1", text=text)))
        agent, source = "router", "stayed"
        while (event := await call.read()) is not grpc.aio.EOF:
            kind = event.WhichOneof("event")
            if kind == "handoff":
                agent = event.handoff.to_agent
                source = pb.RouteMethod.Name(event.handoff.method).removeprefix(
                    "ROUTE_METHOD_").lower()
            if kind == "done":
                break
        call.cancel()
        return agent, source


async def routing_quality(tmp: Path) -> dict[str, Any]:
    stack = start_stack(tmp / "embedded", "", True)  # "": the embedded llama.cpp
    try:
        outcomes = []
        for text, expected in LABELLED:
            started = time.perf_counter()
            agent, source = await decide(stack.addr("llm"), text)
            outcomes.append({"text": text, "expected": expected, "agent": agent,
                             "source": source, "ok": agent == expected,
                             "turn_ms": (time.perf_counter() - started) * 1000})
    finally:
        stack.stop()
    correct = sum(o["ok"] for o in outcomes)
    by_source = {s: sum(1 for o in outcomes if o["source"] == s)
                 for s in ("semantic", "model", "keywords", "stayed")}
    return {"accuracy": correct / len(outcomes), "correct": correct, "total": len(outcomes),
            "by_source": by_source, "outcomes": outcomes}


def table(rows: list[dict[str, Any]], quality: dict[str, Any] | None,
          args: argparse.Namespace) -> str:
    lines = [f"# Dialogue service (`bench/llm.py`), {platform.node()}, "
             f"{time.strftime('%Y-%m-%d')}", "",
             f"Scripted upstream: first streamed token {args.first_token_ms} ms, classifier "
             f"answer {args.classify_ms} ms (asked only with VOXMESH_LLM_ROUTER_LLM_TIEBREAK, "
             f"off here: routing is semantic); {args.turns} turns per scenario.", "",
             "| scenario | first token p50 (ms) | p95 (ms) |", "|---|---:|---:|"]
    lines += [f"| {r['scenario']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |" for r in rows]
    if quality:
        lines += ["", "Routing in the service, embedded SmolLM2-135M (llama.cpp) behind it, "
                  f"{quality['total']} labelled utterances:", "",
                  f"- right desk: {quality['correct']}/{quality['total']} "
                  f"({quality['accuracy']:.0%})",
                  f"- decided semantically: {quality['by_source']['semantic']}, by the model: "
                  f"{quality['by_source']['model']}, by keywords: "
                  f"{quality['by_source']['keywords']}, stayed at the router: "
                  f"{quality['by_source']['stayed']}", "",
                  "These utterances are also in the tuning part of bench/data/routing.yaml; "
                  "held-out numbers are in bench/results/routing.md.", "",
                  "| utterance | expected | answered by | source |", "|---|---|---|---|"]
        lines += [f"| {o['text']} | {o['expected']} | {o['agent']}{'' if o['ok'] else ' ✗'} "
                  f"| {o['source']} |" for o in quality["outcomes"]]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=15)
    parser.add_argument("--first-token-ms", type=int, default=100)
    parser.add_argument("--classify-ms", type=int, default=150)
    parser.add_argument("--embedded", action="store_true",
                        help="also measure routing quality with the embedded SmolLM2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = await routing_overhead(args, Path(tmp))
        quality = await routing_quality(Path(tmp)) if args.embedded else None
    markdown = table(rows, quality, args)
    print(markdown)
    save_results("llm", markdown, {"routing_overhead": rows, "routing_quality": quality})


if __name__ == "__main__":
    asyncio.run(main())
