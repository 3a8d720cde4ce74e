"""Observability artefacts, checked with the real Prometheus tools against the running stack.

Every service of a real stack is scraped and its ``/metrics`` passes ``promtool check
metrics``; deploy/prometheus/ passes ``promtool check config``, ``check rules`` and ``test
rules``. A real Prometheus on loopback scrapes the stack with the shipped scrape jobs while
two spoken turns run through the orchestrator; every dashboard query and alert expression
is then evaluated there and must return data (the few metrics a healthy short run never
moves, such as error counters, are listed in QUIET_METRICS and must still be declared).
The dashboard and the Kubernetes PrometheusRule are the generator's output, and every
metric the prod HPAs scale on has a prometheus-adapter rule over a gauge the services
export, so renaming a metric breaks this file, not a dashboard or an autoscaler in
production. promtool and prometheus come from Debian's ``prometheus`` package (``.ci/run``
installs it); without them those tests skip, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StackFactory
from tests.fake_openai import FakeOpenAI
from tests.support import speak
from tests.test_deploy import by_kind, render, strictly_valid
from tests.test_e2e_turns import session
from voxmesh.launcher import Stack, free_port
from voxmesh.v1 import dialogue_pb2, dialogue_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "voxmesh.json"
GENERATOR = ROOT / "scripts" / "gen_dashboards.py"
SERVICES = ("stt", "tts", "llm", "orchestrator", "gateway")
K8S = ROOT / "deploy" / "k8s"
#: Metrics a healthy few-second run with one spoken turn never moves: errors, rejections,
#: fallbacks, barge-ins, eager turns, tool calls, retrieval and routing (the scripted turn
#: uses none), the gateway (the turn goes straight to the orchestrator). A query that returns
#: nothing must reference one of these; each must still be declared on some /metrics.
QUIET_METRICS = {
    "voxmesh_tts_fallbacks_total", "voxmesh_tts_rejected_total",
    "voxmesh_llm_upstream_errors_total", "voxmesh_llm_routes_total",
    "voxmesh_llm_tool_calls_total", "voxmesh_llm_retrievals_total",
    "voxmesh_llm_retrieval_seconds_bucket",
    "voxmesh_gateway_errors_total", "voxmesh_gateway_rejections_total",
}
#: The value a dashboard's ``$__rate_interval`` takes in the checks (4 scrapes at 1 s and more).
RATE_INTERVAL = "1m"

# Sample names a family of each type exposes (prometheus_client strips ``_total`` from a
# counter family's name and adds ``_created`` samples).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}
# Names PromQL uses that are not metrics: functions, keywords, aggregations and labels.
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def promtool() -> str:
    """The promtool executable, or skip naming the package that provides it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found: apt-get install prometheus (Debian) to run this test")
    return path


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; fail with its output unless it exits 0."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def metrics_url(stack: Stack, service: str) -> str:
    """Where a service of ``stack`` serves Prometheus text."""
    if service == "gateway":
        return f"http://{stack.host}:{stack.ports.gateway}/metrics"
    return f"http://{stack.host}:{stack.metrics_ports[service]}/metrics"


def exported_names(text: str) -> set[str]:
    """Every sample name a scrape exposes, including those of families with no samples yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def referenced_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression uses (VoxMesh names, and ``up``)."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_grouping = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    return {name for name in _IDENTIFIER.findall(without_grouping)
            if name.startswith("voxmesh_") or name == "up"}


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    """The scripted OpenAI-compatible upstream the llm service talks to."""
    with FakeOpenAI(reply="Hello from the fake model.") as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, fake_llm: FakeOpenAI) -> Stack:
    """Every VoxMesh service, running."""
    return stack_factory(services=SERVICES, llm_base_url=fake_llm.base_url)


@pytest.fixture(scope="module")
def scrapes(stack: Stack) -> dict[str, str]:
    """Each service's ``/metrics`` text, scraped once."""
    texts = {}
    for service in SERVICES:
        with urllib.request.urlopen(metrics_url(stack, service), timeout=10) as reply:
            assert reply.status == 200, service
            texts[service] = reply.read().decode()
    return texts


@pytest.fixture(scope="module")
def exported(scrapes: dict[str, str]) -> set[str]:
    """Sample names exported by the whole stack, plus ``up`` (Prometheus adds it)."""
    names = {"up"}
    for text in scrapes.values():
        names |= exported_names(text)
    return names


# -- /metrics ---------------------------------------------------------------------------------


def test_every_service_metrics_pass_promtool(scrapes: dict[str, str]) -> None:
    """``promtool check metrics`` finds nothing on any service's ``/metrics``."""
    binary = promtool()
    for service, text in scrapes.items():
        assert f"voxmesh_{service}_" in text, f"{service} exports no voxmesh_{service}_* metric"
        done = subprocess.run([binary, "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, f"{service}: {done.stdout}{done.stderr}"


def test_voxmesh_metrics_have_bounded_labels(scrapes: dict[str, str]) -> None:
    """Every VoxMesh family is named after its service; no label carries a session id."""
    for service, text in scrapes.items():
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("voxmesh_"):
                continue
            assert family.name.startswith(f"voxmesh_{service}_"), (service, family.name)
            assert family.documentation, f"{family.name} has no HELP"
            for sample in family.samples:
                assert not {"session", "session_id"} & set(sample.labels), sample


def scrape(url: str) -> str:
    """One ``/metrics`` text."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text: str = reply.read().decode()
    return text


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Values of one sample name in Prometheus text, by sorted label pairs."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def converse_once(addr: str, text: str) -> tuple[str, str]:
    """One user turn on a fresh Converse stream; returns (agent, reply text)."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = dialogue_pb2_grpc.DialogueStub(channel).Converse()
        try:
            await call.write(dialogue_pb2.ConverseRequest(config=dialogue_pb2.DialogueConfig(
                session_id=f"observability-{uuid.uuid4().hex}")))
            await call.write(dialogue_pb2.ConverseRequest(
                user_turn=dialogue_pb2.UserTurn(turn_id="t1", text=text)))
            agent = ""
            while True:
                event = await asyncio.wait_for(call.read(), 30)
                assert event is not grpc.aio.EOF, "the stream ended before done"
                if event.WhichOneof("event") == "ready":
                    agent = event.ready.agent
                elif event.WhichOneof("event") == "done":
                    assert event.done.status == dialogue_pb2.TURN_STATUS_COMPLETED, event
                    return agent, event.done.text
        finally:
            call.cancel()


async def test_llm_counts_tokens_and_turns_by_agent(stack: Stack, fake_llm: FakeOpenAI) -> None:
    """A turn adds its streamed chunks and its outcome under the agent that answered.

    The scripted upstream sends no usage chunk, so the reply is counted honestly as
    completion_chunks (one per word it streams), and no prompt tokens are invented.
    """
    url = metrics_url(stack, "llm")
    before = await asyncio.to_thread(scrape, url)
    agent, reply = await converse_once(stack.addr("llm"), "When do you open?")
    assert reply == fake_llm.reply and agent
    after = await asyncio.to_thread(scrape, url)

    def delta(name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return samples(after, name).get(key, 0.0) - samples(before, name).get(key, 0.0)

    assert fake_llm.requests[-1]["stream_options"] == {"include_usage": True}
    words = len(str(fake_llm.reply).split(" "))
    assert delta("voxmesh_llm_tokens_total", agent=agent, kind="completion_chunks") == words
    assert delta("voxmesh_llm_tokens_total", agent=agent, kind="prompt") == 0
    assert delta("voxmesh_llm_turns_by_agent_total", agent=agent, status="completed") == 1
    assert delta("voxmesh_llm_turns_total", status="completed") == 1


# -- Prometheus configuration and alerts -------------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool() -> None:
    """The shipped config (with its rule file) and the rules are valid."""
    binary = promtool()
    run([binary, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    run([binary, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")])


def test_alert_unit_tests_pass() -> None:
    """deploy/prometheus/alerts_test.yml: the alerts fire (and stay quiet) on synthetic series."""
    binary = promtool()
    done = run([binary, "test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")])
    assert "SUCCESS" in done.stdout + done.stderr
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    tested = {alert["alertname"] for test in tests for alert in test.get("alert_rule_test", [])
              if alert.get("exp_alerts")}
    assert {"VoiceToVoiceLatencyHigh", "AuditEventsDropped"} <= tested, tested


def scrape_jobs() -> dict[str, list[str]]:
    """Targets of each job in prometheus.yml."""
    conf = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
            for job in conf["scrape_configs"]}


def test_prometheus_scrapes_every_compose_service() -> None:
    """One job per VoxMesh service, on its compose name and its metrics port."""
    from voxmesh import config

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    jobs = scrape_jobs()
    for service in SERVICES:
        port = (config.GATEWAY_PORT if service == "gateway" else
                config.metrics_port_for(getattr(config, f"{service.upper()}_PORT")))
        assert jobs.get(service) == [f"{service}:{port}"], (service, jobs.get(service))
        assert service in compose


def alert_expressions() -> dict[str, str]:
    """Every alert and recording rule expression in alerts.yml, by name."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return {rule.get("alert") or rule["record"]: rule["expr"]
            for group in groups for rule in group["rules"]}


def test_alerts_use_only_exported_metrics(exported: set[str]) -> None:
    """Alert expressions name only metrics the live services export."""
    for name, expr in alert_expressions().items():
        used = referenced_metrics(expr)
        assert used, f"{name}: no metric found in {expr!r}"
        assert used <= exported, f"{name}: not exported: {sorted(used - exported)}"


def api_get(url: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        answer = json.load(reply)
    assert answer["status"] == "success", answer
    return answer["data"]


def evaluated(rules: list[dict[str, Any]]) -> bool:
    """Whether Prometheus has evaluated every rule at least once (zero time until then)."""
    return bool(rules) and not any(r["lastEvaluation"].startswith("0001-") for r in rules)


def start_prometheus(stack: Stack, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus scraping ``stack`` every second with the shipped jobs and rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not found: apt-get install prometheus (Debian)")
    conf = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    conf["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    conf["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    jobs = [job for job in conf["scrape_configs"] if job["job_name"] in SERVICES]
    assert len(jobs) == len(SERVICES), [job["job_name"] for job in jobs]
    for job in jobs:
        url = metrics_url(stack, job["job_name"])
        job["static_configs"] = [{"targets": [url.split("/")[2]]}]
    conf["scrape_configs"] = jobs
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(conf))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/api/v1"


def instant(api: str, expr: str) -> list[dict[str, Any]]:
    """The series an instant query returns now (fails on a parse or evaluation error)."""
    result: list[dict[str, Any]] = api_get(
        f"{api}/query?{urllib.parse.urlencode({'query': expr})}")["result"]
    return result


async def poll(check: Any, what: str, timeout_s: float = 60) -> Any:
    """Call ``check`` in a thread every second until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            found = await asyncio.to_thread(check)
            if found:
                return found
        await asyncio.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def without_comparison(expr: str) -> str:
    """An alert expression minus its final threshold (``... > 3``, ``... == 0``)."""
    return re.sub(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$", "", expr.strip())


async def test_every_dashboard_query_and_alert_returns_data_from_a_real_prometheus(
    stack: Stack, exported: set[str], tmp_path: Path,
) -> None:
    """A real Prometheus scrapes the stack (shipped jobs, 1 s interval) while two spoken turns
    run through the orchestrator; then every service is up, every rule evaluates without
    error, and every dashboard target and every alert expression with its threshold
    stripped returns at least one series, unless each metric it lacks is in QUIET_METRICS
    (and declared by a service). Whole alert expressions must parse and evaluate; a healthy
    stack rightly leaves most of them empty.
    """
    proc, api = start_prometheus(stack, tmp_path)
    try:
        def all_up() -> bool:
            up = {r["metric"]["job"]: r["value"][1] for r in instant(api, "up")}
            return up == dict.fromkeys(SERVICES, "1")

        await poll(all_up, "every service up")
        # Two turns: the first creates the labelled series, the second moves them, so rates
        # and quantiles have real values (a series' first sample is no increase).
        pcm = speak("What time do you open tomorrow?", 16000, tail_silence_ms=2000)
        async with session(stack) as turn:
            for n in (1, 2):
                await turn.stream(pcm)
                await turn.wait_for("response_done", lambda e, n=n: len(
                    turn.of("response_done")) >= n)
                await asyncio.sleep(1.5)  # a scrape between the turns
        statuses = [e.status for e in turn.of("response_done")]
        assert statuses == ["completed", "completed"], statuses
        await poll(lambda: instant(
            api, "sum(rate(voxmesh_orchestrator_turns_total[1m])) > 0"), "the turn's rate")
        await poll(lambda: instant(
            api, 'sum(rate(voxmesh_tts_first_audio_seconds_count[1m])) > 0'), "TTS rates")

        def rules_evaluated() -> list[dict[str, Any]]:
            rules = [r for g in api_get(f"{api}/rules")["groups"] for r in g["rules"]]
            return rules if evaluated(rules) else []

        rules = await poll(rules_evaluated, "every rule evaluated")
        assert {r["name"]: r["health"] for r in rules} == dict.fromkeys(
            alert_expressions(), "ok"), rules

        targets = [(f"panel {title!r}", expr.replace("$__rate_interval", RATE_INTERVAL))
                   for title, expr in dashboard_exprs(json.loads(DASHBOARD.read_text()))]
        for name, expr in alert_expressions().items():
            await asyncio.to_thread(instant, api, expr)  # parses and evaluates
            targets.append((f"alert {name!r} without threshold", without_comparison(expr)))
        problems = []
        for what, expr in targets:
            if await asyncio.to_thread(instant, api, expr):
                continue
            silent = {m for m in referenced_metrics(expr)
                      if not await asyncio.to_thread(instant, api, m)}
            if not silent or silent - QUIET_METRICS:
                problems.append(f"{what}: no data from {expr!r} "
                                f"(no series: {sorted(silent - QUIET_METRICS)})")
        assert not problems, "\n".join(problems)
        assert QUIET_METRICS <= exported, sorted(QUIET_METRICS - exported)
    finally:
        proc.terminate()
        proc.wait(30)


def test_hpa_metrics_are_served_by_adapter_rules_over_exported_gauges(
    scrapes: dict[str, str],
) -> None:
    """Each Pods metric of prod's HPAs has a prometheus-adapter rule whose series is a gauge
    the running services export, labelled per pod, and served under the HPA's name."""
    prod = render(K8S / "overlays" / "prod")
    wanted = {m["pods"]["metric"]["name"]: hpa["metadata"]["name"]
              for hpa in by_kind(prod, "HorizontalPodAutoscaler").values()
              for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert set(wanted.values()) == {"stt", "tts", "orchestrator"}, wanted
    adapter = render(K8S / "prometheus-adapter")
    errors = strictly_valid(adapter)
    assert not errors, "\n".join(errors)
    (configmap,) = by_kind(adapter, "ConfigMap").values()
    assert configmap["metadata"] == configmap["metadata"] | {
        "name": "adapter-config", "namespace": "monitoring"}
    gauges = {family.name: service for service, text in scrapes.items()
              for family in text_string_to_metric_families(text) if family.type == "gauge"}
    served = {}
    for rule in yaml.safe_load(configmap["data"]["config.yaml"])["rules"]:
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", rule["seriesQuery"])
        assert match, rule["seriesQuery"]
        series, labels = match.groups()
        assert {'namespace!=""', 'pod!=""'} <= {s.strip() for s in labels.split(",")}, rule
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}, rule
        assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"], rule
        assert "by (<<.GroupBy>>)" in rule["metricsQuery"], rule
        name = rule.get("name", {})
        as_name = re.sub(name.get("matches", "^(.*)$"),
                         name.get("as", "${1}").replace("${1}", r"\1"), series)
        served[as_name] = series
    for metric, hpa in wanted.items():
        assert metric in served, f"HPA {hpa}: no adapter rule serves {metric}"
        assert gauges.get(served[metric]) == hpa, (
            f"HPA {hpa}: {served[metric]} is not a gauge exported by {hpa}")


# -- Grafana ------------------------------------------------------------------------------------


def load_generator() -> Any:
    """scripts/gen_dashboards.py as a module."""
    spec = importlib.util.spec_from_file_location("gen_dashboards", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_dashboards"] = module
    spec.loader.exec_module(module)
    return module


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows included."""
    exprs = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        exprs += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
    return exprs


def test_committed_dashboard_is_the_generators_output() -> None:
    """voxmesh.json and the PrometheusRule equal what scripts/gen_dashboards.py writes
    (regenerate after edits), and its ``--check`` agrees."""
    generator = load_generator()
    generated = generator.render()
    assert json.loads(DASHBOARD.read_text()) == json.loads(generated), (
        "stale dashboard: run python scripts/gen_dashboards.py")
    for path, text in generator.outputs().items():
        assert path.read_text() == text, f"stale {path}: run python scripts/gen_dashboards.py"
    rule = yaml.safe_load(generator.PROMETHEUS_RULE.read_text())
    alerts = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == alerts["groups"]
    assert generator.main(["--check"]) == 0


def test_dashboard_queries_use_only_exported_metrics(exported: set[str]) -> None:
    """Every panel query names metrics the live services export; the key panels exist."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 15, len(exprs)
    for title, expr in exprs:
        used = referenced_metrics(expr)
        assert used, f"{title}: no metric in {expr!r}"
        assert used <= exported, f"{title}: not exported: {sorted(used - exported)}"
    joined = " ".join(expr for _, expr in exprs)
    for needed in ("voxmesh_orchestrator_stage_latency_seconds_bucket",
                   "voxmesh_orchestrator_barge_ins_total",
                   "voxmesh_orchestrator_downstream_errors_total",
                   "voxmesh_orchestrator_audit_dropped_total",
                   "voxmesh_stt_queue_depth", "voxmesh_tts_real_time_factor_bucket"):
        assert needed in joined, f"no panel queries {needed}"
