"""``python -m services.orchestrator``: run the session engine."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from services.orchestrator.audit import AuditLog
from services.orchestrator.downstream import Downstream
from services.orchestrator.server import OrchestratorServicer
from services.orchestrator.session import TurnPolicy
from voxmesh.config import OrchestratorSettings
from voxmesh.grpc_server import serve
from voxmesh.ownership import OwnershipStore
from voxmesh.v1 import orchestrator_pb2, orchestrator_pb2_grpc


async def main() -> None:
    """Connect to the peers and the audit Redis, then serve until SIGTERM."""
    settings = OrchestratorSettings()
    downstream = Downstream.connect(settings.stt_addr, settings.llm_addr, settings.tts_addr)
    audit = AuditLog(settings.redis_url, settings.audit_queue_size, settings.audit_batch_size)
    owners = OwnershipStore(settings.redis_url)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(
            OrchestratorServicer(downstream, audit, TurnPolicy(
                settings.eager_turns, settings.barge_in_min_speech_ms,
                settings.llm_first_token_timeout_s), owners), server)
        return [orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name]

    async def load() -> None:
        audit.start()

    try:
        await serve("orchestrator", settings, register, load)
    finally:
        await audit.close()
        await owners.aclose()
        await downstream.close()


if __name__ == "__main__":
    asyncio.run(main())
