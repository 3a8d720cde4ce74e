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
REJECTIONS = Counter(
    "voxmesh_gateway_rejections_total",
    "Refused token requests and WebSocket handshakes, by reason (unauthorized, "
    "forbidden_origin, too_many_connections, ...).",
    ["reason"],
)
SLOW_CLIENTS = Counter(
    "voxmesh_gateway_slow_clients_total",
    "Connections closed with 4413 because more than send_queue_bytes waited for the client.",
)
HANDSHAKE_TIMEOUTS = Counter(
    "voxmesh_gateway_handshake_timeouts_total",
    "Connections closed with HTTP 408 because their request headers did not arrive in time.",
)
