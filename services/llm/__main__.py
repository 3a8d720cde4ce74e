"""Run the dialogue service: ``python -m services.llm``."""

from __future__ import annotations

import asyncio

from services.llm.server import DialogueService
from voxmesh.config import LlmSettings
from voxmesh.grpc_server import serve


async def main() -> None:
    """Serve voxmesh.v1.Dialogue until SIGTERM."""
    settings = LlmSettings()
    service = DialogueService(settings)
    try:
        await serve("llm", settings, service.register, service.load)
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
