"""Run the text-to-speech service: ``python -m services.tts``."""

from __future__ import annotations

import asyncio

from services.tts.engines import EngineUnavailable
from services.tts.server import TextToSpeechService
from voxmesh.config import TtsSettings
from voxmesh.grpc_server import serve


def main() -> None:
    """Serve voxmesh.v1.TextToSpeech until SIGTERM."""
    settings = TtsSettings()
    try:
        service = TextToSpeechService(settings)
    except EngineUnavailable as error:
        raise SystemExit(f"tts: {error}") from None
    asyncio.run(serve("tts", settings, service.register, service.load))


if __name__ == "__main__":
    main()
