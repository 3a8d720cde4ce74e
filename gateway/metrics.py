"""Prometheus collectors of the gateway; served on the gateway's own ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("voxmesh_gateway_connections", "WebSocket connections open now.")
MESSAGES = Counter(
    "voxmesh_gateway_messages_total",
    "WebSocket messages by direction (in = from the browser) and type (audio = binary).",
    ["direction", "type"],
)
ERRORS = Counter(
    "voxmesh_gateway_errors_total",
    "Error events sent to browsers, by code (protocol errors, orchestrator errors and "
    "gRPC statuses).",
    ["code"],
)
