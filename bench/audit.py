"""Audit log writers with the atomic compare-and-append: events per second per replica and
emit -> stored latency, with one and two writer processes.

A real redis-server (the system one, 7.x) loads the shipped ACL file with an AOF, as
deployed; each writer is its own process running the orchestrator's ``AuditLog`` as
``voxmesh-orchestrator``, writing 50 sessions. Three set-ups: one writer; two writers on
separate sessions (two replicas, each with its own sessions); two writers on the same 50
sessions at once (every session written by both: the compare-and-append conflicts and
reseals). Two runs each:

* throughput: each writer emits ``--events`` events as fast as its queue takes them;
  events/s per replica = events / (first emit .. last one stored, ``close()`` returned);
* latency: each writer emits ``--rate`` events/s for ``--seconds``; latency is from
  ``emit`` (the event's ``ts_us``) to the writer holding Redis's reply that the entry is
  stored (the compare-and-append call is timed in the writer process, wall clock, us).

Every chain is then verified (as ``voxmesh-auditor``). The machine's cores are shared by
Redis and the writers, so the figures are for this machine only.

    .venv/bin/python bench/audit.py [--events 20000] [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, save_results  # noqa: E402
from services.orchestrator import audit  # noqa: E402
from services.orchestrator.audit import AuditLog, stream_key  # noqa: E402
from services.orchestrator.audit_append import Appended, AppendReply, AppendRequest  # noqa: E402
from services.orchestrator.audit_verify import verify  # noqa: E402
from tests.support import RedisServer  # noqa: E402

SESSIONS = 50
SETUPS = (("1 writer", 1, False), ("2 writers, own sessions", 2, False),
          ("2 writers, same sessions", 2, True))
EVENTS = (  # one turn's audit events, as a session emits them
    ("state", "orchestrator", {"from": "listening", "to": "thinking"}),
    ("transcript.final", "stt", {"text": "What time do you open on Saturday?",
                                 "confidence": 0.93}),
    ("llm.done", "llm", {"text": "We open at eight on Saturday."}),
    ("latency", "orchestrator", {"stt_ms": 101.5, "llm_ms": 99.0, "v2v_ms": 480.2}),
)


async def _write(url: str, sessions: list[str], events: int, rate: float, seconds: float,
                 barrier: Any) -> dict[str, Any]:
    latencies_ms: list[float] = []
    append = audit.compare_and_append

    async def timed(client: aioredis.Redis,
                    requests: Sequence[AppendRequest]) -> list[AppendReply]:
        """The writer's append, noting emit -> stored for every entry Redis took."""
        replies = await append(client, requests)
        now = audit.now_us()
        for request, reply in zip(requests, replies, strict=True):
            if isinstance(reply, Appended):
                latencies_ms.extend((now - int(e["ts_us"])) / 1000 for e in request.entries)
        return replies

    audit.compare_and_append = timed  # instrumentation, in the bench process only
    log = AuditLog(url, max_backoff_s=0.5)
    log.start()
    await log.check_server()
    barrier.wait()  # the writers start together
    started = time.perf_counter()
    total = events if rate == 0 else int(rate * seconds)
    for i in range(total):
        if rate:
            due = started + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
        elif log.backlog > 8000:  # stay under the queue (10,000): measure, never drop
            await asyncio.sleep(0.005)
        elif i % 100 == 0:
            await asyncio.sleep(0)  # let the writer task run, as the audio path does
        type_, component, data = EVENTS[i % len(EVENTS)]
        log.emit(sessions[i % len(sessions)], type_, component=component,
                 turn_id=f"t{i // len(EVENTS)}", **data)
    await log.close(timeout_s=120)
    elapsed = time.perf_counter() - started
    conflicts = REGISTRY.get_sample_value("voxmesh_orchestrator_audit_chain_conflicts_total")
    return {"events": total, "elapsed_s": elapsed, "dropped": log.dropped,
            "backlog_at_close": log.backlog, "conflicts": conflicts or 0.0,
            "latency_ms": latencies_ms}


def _writer(url: str, sessions: list[str], events: int, rate: float, seconds: float,
            barrier: Any, results: Any) -> None:
    results.put(asyncio.run(_write(url, sessions, events, rate, seconds, barrier)))


def run(server: RedisServer, writers: int, shared: bool, events: int, rate: float,
        seconds: float) -> dict[str, Any]:
    """One set-up, one run: the writers' own figures, the latencies and the verdicts."""
    tag = uuid.uuid4().hex[:6]
    own = [[f"bench-{tag}-{w if not shared else 's'}-{i}" for i in range(SESSIONS)]
           for w in range(writers)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(server.url("orchestrator"), own[w], events,
                                               rate, seconds, barrier, results))
             for w in range(writers)]
    for proc in procs:
        proc.start()
    stats = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    sessions = sorted({s for group in own for s in group})
    intact, stored = asyncio.run(_check(server, sessions))
    latencies = sorted(ms for w in stats for ms in w.pop("latency_ms"))
    return {"writers": writers, "shared_sessions": shared, "sessions": len(sessions),
            "per_writer": stats, "stored": stored, "intact": intact,
            "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                           "max": latencies[-1], "samples": len(latencies)}}


async def _check(server: RedisServer, sessions: list[str]) -> tuple[int, int]:
    """(chains INTACT, entries stored) over ``sessions``; then their streams are deleted."""
    admin = aioredis.from_url(server.url("admin"), decode_responses=True)
    auditor = aioredis.from_url(server.url("auditor"), decode_responses=True)
    intact = stored = 0
    try:
        for session_id in sessions:
            report = await verify(auditor, session_id)
            intact += report.ok
            stored += report.entries
            await admin.delete(stream_key(session_id))  # keep Redis small between runs
    finally:
        await admin.aclose()
        await auditor.aclose()
    return intact, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000,
                        help="events per writer in the throughput run")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="events/s per writer in the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the latency run")
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-audit-")))
    server.start()
    rows: list[dict[str, Any]] = []
    try:
        version = asyncio.run(_version(server))
        for name, writers, shared in SETUPS:
            burst = run(server, writers, shared, args.events, 0, 0)
            paced = run(server, writers, shared, 0, args.rate, args.seconds)
            rows.append({"setup": name, "throughput": burst, "latency": paced})
    finally:
        server.stop()
    text = table(rows, args, version)
    print(text)
    save_results("audit", text, {"redis_version": version, "cpus": os.cpu_count(),
                                 "args": vars(args), "rows": rows})
    return 0


async def _version(server: RedisServer) -> str:
    log = AuditLog(server.url("orchestrator"))
    try:
        return await log.check_server()
    finally:
        await log.close()


def table(rows: list[dict[str, Any]], args: argparse.Namespace, version: str) -> str:
    lines = [
        "# Audit log writers: compare-and-append (`bench/audit.py`)", "",
        f"Redis {version} (ACL file, AOF on) and the writer processes on one machine with "
        f"{os.cpu_count()} CPUs; {SESSIONS} sessions per set-up, the orchestrator's "
        "`AuditLog` (batch 200) logging in as `voxmesh-orchestrator`. Throughput: "
        f"{args.events:,} events per writer as fast as its queue takes them. Latency: "
        f"{args.rate:,.0f} events/s per writer for {args.seconds:g} s, from `emit` to "
        "Redis's reply that the entry is stored.", "",
        "| set-up | events/s per replica | all replicas | conflicts (reseals) | "
        "latency p50 ms | p99 ms | max ms | chains INTACT |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        burst, paced = row["throughput"], row["latency"]
        rates = [w["events"] / w["elapsed_s"] for w in burst["per_writer"]]
        conflicts = sum(w["conflicts"] for w in burst["per_writer"])
        lat = paced["latency_ms"]
        sessions = burst["sessions"] + paced["sessions"]
        intact = burst["intact"] + paced["intact"]
        per_replica = " / ".join(f"{r:,.0f}" for r in rates)
        lines.append(
            f"| {row['setup']} | {per_replica} | {sum(rates):,.0f} | {conflicts:,.0f} | "
            f"{lat['p50']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | "
            f"{intact}/{sessions} |")
    dropped = sum(w["dropped"] for row in rows for run_ in ("throughput", "latency")
                  for w in row[run_]["per_writer"])
    lines += ["", f"Events dropped in all runs: {dropped}. Conflicts are counted in the "
              "throughput run (`voxmesh_orchestrator_audit_chain_conflicts_total`)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
