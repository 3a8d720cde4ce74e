"""One way to run a VoxMesh gRPC service: health, reflection, metrics, graceful drain.

A service hands :func:`serve` a function that registers its servicers and a
coroutine that loads its model. The server starts listening at once with
health NOT_SERVING (so probes can tell "loading" from "dead"), flips to
SERVING when the model is loaded, and on SIGTERM/SIGINT flips back to
NOT_SERVING and gives in-flight RPCs ``drain_seconds`` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from voxmesh.config import CommonSettings, GrpcServiceSettings, TlsSettings
from voxmesh.logs import setup_logging
from voxmesh.telemetry import setup_tracing, start_metrics_server
from voxmesh.tls import server_credentials

log = logging.getLogger(__name__)

Register = Callable[[grpc.aio.Server], Sequence[str]]
"""Adds servicers to a server and returns their full service names."""


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel options shared by servers: message size caps and keepalive."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def _add_port(server: grpc.aio.Server, address: str, tls: TlsSettings) -> int:
    """Listen on ``address`` with TLS when configured (health and reflection too: one port)."""
    credentials = server_credentials(tls)
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


async def serve(
    name: str,
    settings: GrpcServiceSettings,
    register: Register,
    load: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Run a gRPC service until SIGTERM or SIGINT, then drain and return."""
    common = CommonSettings()
    tls = TlsSettings()  # a bad VOXMESH_TLS_* fails here, before any model loads
    setup_logging(name, common.log_level)
    tracer_provider = setup_tracing(name, common.traces)
    start_metrics_server(common.host, settings.metrics_port)

    server = grpc.aio.server(options=[
        *server_options(settings.max_message_bytes),
        # GOAWAY after 5 minutes: clients re-resolve DNS and spread new calls over replicas
        # an autoscaler added. Streams already open go on (the grace period is unlimited).
        ("grpc.max_connection_age_ms", 300_000),
    ])
    service_names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    address = f"{common.host}:{settings.port}"
    if _add_port(server, address, tls) == 0:
        raise SystemExit(f"{name}: cannot listen on {address}")

    async def set_status(status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ["", *service_names]:
            await health_servicer.set(service, status)

    await set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("listening", extra={"address": address, "metrics_port": settings.metrics_port,
                                 "tls": tls.enabled, "client_auth": tls.client_auth})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if load is not None:
        started = time.perf_counter()
        loader: asyncio.Task[None] = asyncio.create_task(load())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({loader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not loader.done():
            loader.cancel()
        elif loader.exception() is not None:
            await server.stop(0)
            raise loader.exception()  # type: ignore[misc]
        else:
            log.info("model loaded", extra={"seconds": round(time.perf_counter() - started, 3)})
    if not stop.is_set():
        await set_status(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving")
        await stop.wait()

    log.info("draining", extra={"grace_seconds": common.drain_seconds})
    await set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(common.drain_seconds)
    tracer_provider.shutdown()
    log.info("stopped")
