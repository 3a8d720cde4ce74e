"""Channels to the speech and dialogue services, and a lock-guarded stream writer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from voxmesh.config import TlsSettings
from voxmesh.grpc_server import server_options
from voxmesh.tls import open_aio_channel
from voxmesh.v1 import dialogue_pb2_grpc, stt_pb2_grpc, tts_pb2_grpc

Req = TypeVar("Req")


@dataclass
class Downstream:
    """One channel per service, shared by every session of this process."""

    stt: stt_pb2_grpc.SpeechToTextStub
    llm: dialogue_pb2_grpc.DialogueStub
    tts: tts_pb2_grpc.TextToSpeechStub
    channels: tuple[grpc.aio.Channel, ...]

    @classmethod
    def connect(cls, stt_addr: str, llm_addr: str, tts_addr: str,
                tls: TlsSettings | None = None) -> Downstream:
        """Open (lazily connecting) channels to the three services.

        ``tls`` (``VOXMESH_TLS_*`` when omitted) makes them TLS/mTLS channels.
        """
        tls = tls if tls is not None else TlsSettings()
        # round_robin: a dns:/// address of a headless Service spreads streams over its pods.
        opts = [*server_options(4 * 1024 * 1024), ("grpc.lb_policy_name", "round_robin")]
        stt_ch, llm_ch, tts_ch = (
            open_aio_channel(addr, tls, opts) for addr in (stt_addr, llm_addr, tts_addr)
        )
        return cls(
            stt=stt_pb2_grpc.SpeechToTextStub(stt_ch),
            llm=dialogue_pb2_grpc.DialogueStub(llm_ch),
            tts=tts_pb2_grpc.TextToSpeechStub(tts_ch),
            channels=(stt_ch, llm_ch, tts_ch),
        )

    async def close(self) -> None:
        """Close every channel."""
        await asyncio.gather(*(ch.close() for ch in self.channels))


class StreamWriter(Generic[Req]):
    """Serialises writes to one bidirectional call: grpc.aio allows one write at a time."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._lock = asyncio.Lock()
        self.closed = False

    async def write(self, request: Req) -> bool:
        """Write ``request``; returns False (instead of raising) once the call is over."""
        async with self._lock:
            if self.closed:
                return False
            try:
                await self.call.write(request)
                return True
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                self.closed = True
                return False

    async def done_writing(self) -> None:
        """Half-close the call (idempotent)."""
        async with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    await self.call.done_writing()
                except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                    pass
