"""``python -m services.orchestrator``: run the session engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from redis.exceptions import RedisError

from services.orchestrator.audit import AuditLog
from services.orchestrator.downstream import Downstream
from services.orchestrator.server import OrchestratorServicer
from services.orchestrator.session import TurnPolicy
from voxmesh.config import OrchestratorSettings
from voxmesh.grpc_server import serve
from voxmesh.ownership import OwnershipStore
from voxmesh.redis_version import RedisVersionError
from voxmesh.v1 import orchestrator_pb2, orchestrator_pb2_grpc

log = logging.getLogger("services.orchestrator")


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
        # Refuse a Redis older than 7 before serving anyone: the audit log's guarantees need
        # it. An unreachable Redis is an outage, not a refusal: the writer buffers and
        # checks the version before its first write.
        try:
            version = await audit.check_server()
        except (RedisError, OSError) as exc:
            log.warning("audit Redis unreachable at start-up (%s); its version is checked "
                        "before the first write", exc)
        else:
            log.info("audit Redis %s", version)
        audit.start()

    try:
        await serve("orchestrator", settings, register, load)
    except RedisVersionError as exc:
        log.critical("refusing to start: %s", exc)
        raise SystemExit(f"orchestrator: refusing to start: {exc}") from None
    finally:
        await audit.close()
        await owners.aclose()
        await downstream.close()


if __name__ == "__main__":
    asyncio.run(main())
