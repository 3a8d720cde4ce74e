"""The Orchestrator gRPC servicer: a thin adapter from the stream to a Session."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from services.orchestrator.audit import AuditLog
from services.orchestrator.downstream import Downstream
from services.orchestrator.session import Session, SessionAbort, TurnPolicy
from voxmesh.ownership import OwnershipStore
from voxmesh.v1 import orchestrator_pb2 as pb
from voxmesh.v1 import orchestrator_pb2_grpc

log = logging.getLogger(__name__)


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServicer):
    """Runs each Session stream as an independent :class:`Session`."""

    def __init__(self, downstream: Downstream, audit: AuditLog,
                 policy: TurnPolicy | None = None, owners: OwnershipStore | None = None) -> None:
        self.downstream = downstream
        self.audit = audit
        self.policy = policy or TurnPolicy()
        self.owners = owners or OwnershipStore()

    async def Session(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.SessionRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SessionResponse]:
        """Serve one session until the client ends it or it cannot go on."""
        session = Session(self.downstream, self.audit, self.policy, self.owners)
        try:
            async for response in session.run(request_iterator):
                yield response
        except SessionAbort as abort:
            log.warning("session aborted: %s %s", abort.code.name, abort.message)
            metadata = (("voxmesh-reason", abort.reason),) if abort.reason else ()
            await context.abort(abort.code, abort.message, trailing_metadata=metadata)
