"""The gateway's FastAPI app: the page, its assets, health, metrics, tokens and ``/v1/realtime``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.admission import Gatekeeper, Rejection
from gateway.limits import FairShares
from gateway.protocol import CloseCode
from gateway.relay import Limits, Relay
from voxmesh.config import GatewaySettings
from voxmesh.tls import open_aio_channel
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
    "Cache-Control": "no-store",  # it may carry the page key
}
SESSION_KEY_SLOT = 'data-session-key=""'


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
    gatekeeper = Gatekeeper(settings)
    # Each key's frame budget, split fairly over its open connections.
    key_rates = FairShares(settings.key_messages_per_s, settings.key_message_burst)
    relays: set[Relay] = set()  # live connections, only so that drain() can reach them
    page_html = (STATIC_DIR / "index.html").read_text()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = open_aio_channel(settings.orchestrator_addr, options=channel_options())
        app.state.stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(title="VoxMesh gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.relays = relays
    app.state.draining = False
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        key = gatekeeper.page_key_for(request)
        html = page_html.replace(SESSION_KEY_SLOT, f'data-session-key="{key}"', 1)
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.post("/v1/sessions")
    async def create_session(request: Request) -> JSONResponse:
        try:
            body = await gatekeeper.session_request_body(request)
            token, expires_at = gatekeeper.issue(request, body)
        except Rejection as rejection:
            return rejection.response()
        return JSONResponse({"token": token, "expires_at": expires_at},
                            headers={"Cache-Control": "no-store"})

    @app.get("/v1/agents")
    async def agents() -> JSONResponse:
        return JSONResponse({"agents": settings.agents,
                             "default": settings.agents[0] if settings.agents else ""})

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        try:
            if app.state.draining:
                raise Rejection(503, "draining", "service restart: reconnect",
                                CloseCode.RESTART)
            claims = gatekeeper.admit(ws)
        except Rejection as rejection:
            await gatekeeper.refuse(ws, rejection)
            return
        limits = Limits(
            max_frame_bytes=settings.max_frame_bytes,
            max_messages_per_s=settings.max_messages_per_s, message_burst=settings.message_burst,
            audio_rate_margin=settings.audio_rate_margin, audio_burst_s=settings.audio_burst_s,
            start_timeout_s=settings.start_timeout_s, idle_timeout_s=settings.idle_timeout_s,
            send_queue_bytes=settings.send_queue_bytes,
            close_grace_s=settings.ping_timeout_s, token_grace_s=settings.token_grace_s)
        with gatekeeper.hold(ws, claims), key_rates.hold(claims.subject) as key_frames:
            relay = Relay(ws, app.state.stub, limits, key_frames, claims=claims,
                          tokens=gatekeeper.tokens)
            relays.add(relay)
            try:
                await relay.run()
            finally:
                relays.discard(relay)

    return app


async def drain(app: FastAPI, timeout_s: float) -> None:
    """Tell every connected client to reconnect (``session.draining``, close 1012).

    New connections are refused with 1012 from now on. Returns when all connections
    have closed or after ``timeout_s``.
    """
    app.state.draining = True
    relays: list[Relay] = list(app.state.relays)
    for relay in relays:
        relay.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(r.ended.wait() for r in relays)), timeout_s)
