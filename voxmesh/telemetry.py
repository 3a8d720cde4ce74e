"""Tracing and metrics set-up shared by every process.

Spans are exported by a BatchSpanProcessor on its own thread, so ending a span
never blocks the event loop. Trace context crosses gRPC in the call metadata
(W3C ``traceparent``), injected by the caller and extracted by the servicer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import IO

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import start_http_server


def _one_json_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def _exporter_for(spec: str, service: str) -> SpanExporter | None:
    if spec in ("", "none"):
        return None
    if spec == "console":
        return ConsoleSpanExporter(out=sys.stderr, formatter=_one_json_line)
    if spec.startswith("file:"):
        # "{service}" in the path gives each process its own file.
        path = spec[len("file:") :].replace("{service}", service)
        out: IO[str] = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        return ConsoleSpanExporter(out=out, formatter=_one_json_line)
    if spec == "otlp":
        # Optional extra (voxmesh[otlp]); endpoint from OTEL_EXPORTER_OTLP_ENDPOINT.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"VOXMESH_TRACES: unknown exporter {spec!r} (none, console, otlp, file:PATH)")


def setup_tracing(service: str, spec: str) -> TracerProvider:
    """Install a global tracer provider for ``service`` exporting as ``spec`` says."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"voxmesh-{service}"}))
    exporter = _exporter_for(spec, service)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    return provider


def grpc_metadata_with_context() -> list[tuple[str, str]]:
    """Return gRPC metadata carrying the current trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def context_from_grpc_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context:
    """Extract the caller's trace context from gRPC invocation metadata."""
    carrier = {k: v if isinstance(v, str) else v.decode() for k, v in (metadata or ())}
    return propagate.extract(carrier)


def start_metrics_server(host: str, port: int) -> None:
    """Serve Prometheus ``/metrics`` on ``host:port`` from a daemon thread."""
    start_http_server(port, addr=host)


def metadata_value(metadata: Sequence[tuple[str, str | bytes]] | None, key: str) -> str:
    """Return one metadata value as text, or an empty string."""
    for k, v in metadata or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""
