"""The gateway's FastAPI app: the page, its assets, health, metrics and ``/v1/realtime``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.relay import Relay
from voxmesh.config import GatewaySettings
from voxmesh.v1 import orchestrator_pb2_grpc

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The page loads nothing from elsewhere; the microphone is for this origin only.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self'; worker-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Permissions-Policy": "microphone=(self)",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def channel_options(max_message_bytes: int = 4 * 1024 * 1024) -> list[tuple[str, int]]:
    """Options of the channel to the orchestrator: message caps and keepalive."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the app; one gRPC channel to the orchestrator lives as long as the app.

    Args:
        settings: Gateway settings; read from ``VOXMESH_GATEWAY_*`` when omitted.
    """
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(settings.orchestrator_addr, options=channel_options())
        app.state.stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(title="VoxMesh gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await Relay(ws, app.state.stub, settings.max_frame_bytes).run()

    return app
