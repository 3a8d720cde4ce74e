"""``python -m gateway``: serve the page and ``/v1/realtime`` until SIGTERM."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from voxmesh.config import CommonSettings, GatewaySettings
from voxmesh.logs import setup_logging

# Frames up to this many times max_frame_bytes get a frame_too_large error event; larger
# ones are closed with 1009 by uvicorn before they are buffered.
HARD_FRAME_FACTOR = 16


def main() -> None:
    """Run uvicorn; on SIGTERM it stops accepting and drains for ``VOXMESH_DRAIN_SECONDS``."""
    common = CommonSettings()
    settings = GatewaySettings()
    setup_logging("gateway", common.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=common.host,
        port=settings.port,
        loop="asyncio",  # grpc.aio runs on the standard event loop
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes * HARD_FRAME_FACTOR,
        ws_per_message_deflate=False,  # PCM hardly compresses; deflate would only cost CPU
        log_config=None,  # uvicorn's loggers go through the shared JSON handler
        access_log=False,
        timeout_graceful_shutdown=max(1, round(common.drain_seconds)),
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
