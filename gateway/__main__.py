"""``python -m gateway``: serve the page and ``/v1/realtime`` until SIGTERM."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app, drain
from gateway.auth import RedactTokens
from gateway.server import DrainingServer, guarded_http
from voxmesh.config import CommonSettings, GatewaySettings
from voxmesh.logs import setup_logging

# Frames up to this many times max_frame_bytes get a frame_too_large error event; larger
# ones are closed with 1009 by uvicorn before they are buffered.
HARD_FRAME_FACTOR = 16


def main() -> None:
    """Run uvicorn until SIGTERM; then clients are told to reconnect (``session.draining``,
    close 1012) and uvicorn drains for ``VOXMESH_DRAIN_SECONDS``."""
    common = CommonSettings()
    settings = GatewaySettings()
    setup_logging("gateway", common.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())  # tokens travel in the URL; keep them out of logs
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=common.host,
        port=settings.port,
        loop="asyncio",  # grpc.aio runs on the standard event loop
        http=guarded_http(settings.handshake_timeout_s),  # slowloris: 408 on slow headers
        # X-Forwarded-For/-Proto only from the configured proxies (uvicorn's default would be
        # loopback, or $FORWARDED_ALLOW_IPS); the client is the right-most untrusted address.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes * HARD_FRAME_FACTOR,
        ws_per_message_deflate=False,  # PCM hardly compresses; deflate would only cost CPU
        # Heartbeats: a peer that does not answer a ping in time is closed with 1011.
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        log_config=None,  # uvicorn's loggers go through the shared JSON handler
        access_log=False,
        timeout_graceful_shutdown=max(1, round(common.drain_seconds)),
    )
    # Half the drain time goes to telling clients to reconnect, the rest to uvicorn.
    DrainingServer(config, lambda: drain(app, common.drain_seconds / 2)).run()


if __name__ == "__main__":
    main()
