"""Generate the VoxMesh Grafana dashboard and the Kubernetes PrometheusRule.

Writes deploy/grafana/dashboards/voxmesh.json from the panels below, and
deploy/k8s/components/prometheus-operator/prometheusrule.yaml from
deploy/prometheus/alerts.yml (the one source of the alert rules). Edit the panels or
alerts.yml, then run ``python scripts/gen_dashboards.py`` and commit the outputs; ``--check``
exits 1 when a committed output is stale. tests/test_observability.py checks the same, and
queries every panel and alert against a real Prometheus scraping a running stack. The
dashboard is plain dicts in Grafana's dashboard JSON model (schemaVersion 39).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "grafana" / "dashboards" / "voxmesh.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = (ROOT / "deploy" / "k8s" / "components" / "prometheus-operator"
                   / "prometheusrule.yaml")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
WIDTH, HEIGHT, COLUMNS = 8, 8, 3


@dataclass
class Target:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str = ""


@dataclass
class Panel:
    """A time series panel: title, unit (Grafana unit id), queries, description."""

    title: str
    unit: str
    targets: list[Target]
    description: str = ""


@dataclass
class Row:
    """A titled row of panels."""

    title: str
    panels: list[Panel] = field(default_factory=list)


def quantile(q: float, bucket: str, selector: str = "", by: str = "") -> str:
    """``histogram_quantile`` of a histogram's rate, summed by ``le`` (and ``by``)."""
    labels = ", ".join(x for x in ("le", by) if x)
    return (f"histogram_quantile({q}, sum by ({labels}) "
            f"(rate({bucket}_bucket{selector}[{RATE}])))")


def rate(counter: str, by: str = "", selector: str = "") -> str:
    """Per-second rate of a counter, summed (by ``by``)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({counter}{selector}[{RATE}]))"


def quantiles(bucket: str, selector: str = "", by: str = "") -> list[Target]:
    """p50, p95 and p99 of a histogram."""
    prefix = f"{{{{{by}}}}} " if by else ""
    return [Target(quantile(q, bucket, selector, by), f"{prefix}p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


V2V = "voxmesh_orchestrator_stage_latency_seconds"

ROWS = [
    Row("Voice to voice", [
        Panel("Voice-to-voice latency", "s", quantiles(V2V, '{stage="total"}'),
              "From the end of the user's speech to the first audio of the reply."),
        Panel("Stage breakdown (p95)", "s", [
            Target(quantile(0.95, V2V, '{stage!="total"}', "stage"), "{{stage}}")],
              "Where a turn's time goes: STT final, LLM first token, TTS first audio."),
        Panel("Active sessions", "short", [
            Target("sum(voxmesh_orchestrator_active_sessions)", "orchestrator sessions"),
            Target("sum(voxmesh_gateway_connections)", "gateway WebSockets"),
            Target("sum(voxmesh_llm_active_sessions)", "LLM streams")]),
        Panel("Turns by outcome", "ops", [
            Target(rate("voxmesh_orchestrator_turns_total", "status"), "{{status}}")]),
        Panel("Barge-ins", "ops", [
            Target(rate("voxmesh_orchestrator_barge_ins_total", "outcome"), "{{outcome}}"),
            Target(rate("voxmesh_orchestrator_interruptions_total"), "replies cut off")],
              "interrupted: the agent stopped; ignored: backchannel or noise (false "
              "interruption avoided)."),
        Panel("Eager turns", "ops", [
            Target(rate("voxmesh_orchestrator_eager_turns_total", "outcome"), "{{outcome}}")],
              "Replies started before the end of the turn: committed or discarded."),
    ]),
    Row("Speech to text", [
        Panel("STT queue depth and streams", "short", [
            Target("sum(voxmesh_stt_queue_depth)", "final decodes queued"),
            Target("sum(voxmesh_stt_active_streams)", "active streams")]),
        Panel("STT real-time factor", "none", quantiles("voxmesh_stt_real_time_factor"),
              "Decode time / audio duration: above 1 the service falls behind."),
        Panel("STT decode time (p95)", "s", [
            Target(quantile(0.95, "voxmesh_stt_decode_seconds", by="kind"), "{{kind}}")]),
        Panel("STT rejections and turn decisions", "ops", [
            Target(rate("voxmesh_stt_rejected_total", "reason"), "rejected {{reason}}"),
            Target(rate("voxmesh_stt_turn_decisions_total", "decision"), "turn {{decision}}")]),
    ]),
    Row("Text to speech", [
        Panel("TTS active streams", "short", [
            Target("sum(voxmesh_tts_active_streams)", "active streams")]),
        Panel("TTS real-time factor (p95)", "none", [
            Target(quantile(0.95, "voxmesh_tts_real_time_factor", by="engine"), "{{engine}}")]),
        Panel("TTS first audio (p95)", "s", [
            Target(quantile(0.95, "voxmesh_tts_first_audio_seconds", by="engine"),
                   "{{engine}}")]),
        Panel("TTS fallbacks, rejections and cache", "ops", [
            Target(rate("voxmesh_tts_fallbacks_total", "engine, reason"),
                   "fallback {{engine}} {{reason}}"),
            Target(rate("voxmesh_tts_rejected_total", "reason"), "rejected {{reason}}"),
            Target(rate("voxmesh_tts_cache_hits_total"), "cache hits"),
            Target(rate("voxmesh_tts_cache_misses_total"), "cache misses")]),
    ]),
    Row("Dialogue (LLM)", [
        Panel("LLM first token", "s", quantiles("voxmesh_llm_first_token_seconds")),
        Panel("LLM turns and upstream errors", "ops", [
            Target(rate("voxmesh_llm_turns_total", "status"), "turns {{status}}"),
            Target(rate("voxmesh_llm_upstream_errors_total", "kind"), "upstream {{kind}}")]),
        Panel("LLM tokens by agent", "short", [
            Target(f"sum by (agent, kind) (increase(voxmesh_llm_tokens_total[{RATE}]))",
                   "{{agent}} {{kind}}")],
              "prompt and completion come from the endpoint's usage report; "
              "completion_chunks (streamed content chunks, about a token each) where it "
              "sends none."),
        Panel("LLM turns by agent", "ops", [
            Target(rate("voxmesh_llm_turns_by_agent_total", "agent, status"),
                   "{{agent}} {{status}}")],
              "Failed turns by agent: upstream errors, tool step limits, bad requests."),
        Panel("Routes by agent", "ops", [
            Target(rate("voxmesh_llm_routes_total", "from_agent, to_agent"),
                   "{{from_agent}} -> {{to_agent}}")],
              "Routing decisions per user turn; from = to means no handoff."),
        Panel("Tool calls", "ops", [
            Target(rate("voxmesh_llm_tool_calls_total", "tool, phase"), "{{tool}} {{phase}}")]),
        Panel("Retrieval latency (p95)", "s", [
            Target(quantile(0.95, "voxmesh_llm_retrieval_seconds", by="knowledge_base"),
                   "{{knowledge_base}}")]),
        Panel("Retrieval hits and misses", "ops", [
            Target(rate("voxmesh_llm_retrievals_total", "knowledge_base, outcome"),
                   "{{knowledge_base}} {{outcome}}")]),
    ]),
    Row("Audit log", [
        Panel("Audit backlog", "short", [
            Target("sum(voxmesh_orchestrator_audit_backlog)", "events waiting")],
              "Audit events buffered in the orchestrator, not yet in Redis."),
        Panel("Audit writes, errors and drops", "ops", [
            Target(rate("voxmesh_orchestrator_audit_events_total"), "written"),
            Target(rate("voxmesh_orchestrator_audit_write_errors_total"), "write errors"),
            Target(rate("voxmesh_orchestrator_audit_dropped_total"), "dropped")],
              "Any drop means an incomplete audit log (alert AuditEventsDropped)."),
    ]),
    Row("Errors and health", [
        Panel("gRPC errors per service", "ops", [
            Target(rate("voxmesh_orchestrator_downstream_errors_total", "service"),
                   "{{service}}")],
              "Failed orchestrator calls to STT, LLM and TTS."),
        Panel("Gateway errors and rejections", "ops", [
            Target(rate("voxmesh_gateway_errors_total", "code"), "error {{code}}"),
            Target(rate("voxmesh_gateway_rejections_total", "reason"), "rejected {{reason}}"),
            Target(rate("voxmesh_gateway_slow_clients_total"), "slow clients")]),
        Panel("Services up", "short", [
            Target('up{job=~"orchestrator|stt|llm|tts|gateway"}', "{{job}} {{instance}}")]),
    ]),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    """A Grafana timeseries panel."""
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr,
             "legendFormat": t.legend or "__auto", "range": True}
            for i, t in enumerate(panel.targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    """The whole dashboard as Grafana's JSON model."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row.title,
                       "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                       "panels": []})
        y += 1
        for i, panel in enumerate(row.panels):
            x = (i % COLUMNS) * WIDTH
            panels.append(panel_json(panel, len(panels) + 1, x, y + (i // COLUMNS) * HEIGHT))
        y += -(-len(row.panels) // COLUMNS) * HEIGHT
    return {
        "uid": "voxmesh-overview",
        "title": "VoxMesh",
        "description": "Voice-to-voice latency, conversation behaviour, STT/TTS/LLM load "
                       "and errors, audit log health. Generated by scripts/gen_dashboards.py.",
        "tags": ["voxmesh"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {"text": "Prometheus", "value": "prometheus"},
            "hide": 0, "refresh": 1,
        }]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    """The dashboard's JSON text, exactly as committed."""
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL, descriptions) as literal blocks, as a person would."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def prometheus_rule() -> dict[str, Any]:
    """deploy/prometheus/alerts.yml's groups as a prometheus-operator PrometheusRule."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "voxmesh", "labels": {"app.kubernetes.io/name": "voxmesh"}},
        "spec": {"groups": groups},
    }


def render_prometheus_rule() -> str:
    """The PrometheusRule's YAML text, exactly as committed."""
    header = ("# Generated by scripts/gen_dashboards.py from deploy/prometheus/alerts.yml: "
              "edit that file,\n# then regenerate. Do not edit here.\n")
    body = yaml.dump(prometheus_rule(), Dumper=_BlockDumper, sort_keys=False, width=100)
    return header + body


def outputs() -> dict[Path, str]:
    """Every generated file and its expected text."""
    return {OUTPUT: render(), PROMETHEUS_RULE: render_prometheus_rule()}


def main(argv: list[str] | None = None) -> int:
    """Write the outputs, or with ``--check`` report whether a committed one is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if an output is stale")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} is stale: run python scripts/gen_dashboards.py", file=sys.stderr)
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
