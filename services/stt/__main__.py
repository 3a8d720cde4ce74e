"""Run the speech-to-text service: ``python -m services.stt``."""

from __future__ import annotations

import asyncio

from services.stt.server import SpeechToTextService
from voxmesh.config import SttSettings
from voxmesh.grpc_server import serve


def main() -> None:
    """Serve voxmesh.v1.SpeechToText until SIGTERM."""
    settings = SttSettings()
    service = SpeechToTextService(settings)
    asyncio.run(serve("stt", settings, service.register, service.load))


if __name__ == "__main__":
    main()
