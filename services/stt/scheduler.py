"""Shares the decode slots between streams: finals queue (bounded), partials never wait."""

from __future__ import annotations

import asyncio
import enum

import numpy as np

from services.stt import metrics
from services.stt.engine import DecodeResult, WhisperEngine
from services.stt.errors import ResourceExhausted


class DecodeKind(enum.StrEnum):
    """Why a decode runs; it sets the queueing policy and the metric label."""

    PARTIAL = "partial"
    """Best effort: skipped when no slot is free right now."""
    FINAL = "final"
    """Must run: waits for a slot, up to ``max_queued`` waiting."""


class DecodeScheduler:
    """Runs decodes in threads, at most ``max_concurrent`` at once.

    Finals wait in FIFO order; more than ``max_queued`` waiting raises
    :class:`ResourceExhausted`. Partials only run when a slot is free and no final
    is waiting, so they never delay a final by queueing ahead of it.
    """

    def __init__(self, engine: WhisperEngine, max_concurrent: int, max_queued: int) -> None:
        self._engine = engine
        self._slots = asyncio.Semaphore(max(1, max_concurrent))
        self._max_queued = max_queued
        self._waiting = 0

    async def decode(
        self, audio: np.ndarray, kind: DecodeKind, language: str
    ) -> DecodeResult | None:
        """Decode ``audio``; returns None only for a partial that found no free slot.

        Cancelling the caller never frees the slot early: a decode already running
        in its thread keeps the slot until it finishes.
        """
        if not await self._acquire(kind):
            return None
        word_timestamps = kind is DecodeKind.FINAL
        job = asyncio.ensure_future(
            asyncio.to_thread(self._engine.transcribe, audio, language, word_timestamps)
        )
        release_later = False
        try:
            result = await asyncio.shield(job)
        except asyncio.CancelledError:
            if not job.done():
                release_later = True
                job.add_done_callback(self._release_abandoned)
            raise
        finally:
            if not release_later:
                self._slots.release()
        metrics.DECODE_SECONDS.labels(kind=kind.value).observe(result.decode_ms / 1000)
        if result.audio_ms:
            metrics.REAL_TIME_FACTOR.observe(result.decode_ms / result.audio_ms)
        return result

    async def _acquire(self, kind: DecodeKind) -> bool:
        if kind is DecodeKind.PARTIAL:
            if self._slots.locked():  # busy, or finals are waiting
                metrics.REJECTED.labels(reason="partial_skipped").inc()
                return False
            await self._slots.acquire()  # returns at once: a slot is free
            return True
        if self._slots.locked() and self._waiting >= self._max_queued:
            metrics.REJECTED.labels(reason="queue_full").inc()
            raise ResourceExhausted(
                f"decode queue full ({self._waiting} decodes waiting); retry later"
            )
        self._waiting += 1
        metrics.QUEUE_DEPTH.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            metrics.QUEUE_DEPTH.set(self._waiting)
        return True

    def _release_abandoned(self, job: asyncio.Future[DecodeResult]) -> None:
        if not job.cancelled():
            job.exception()  # retrieved, so an abandoned failure is not reported as unhandled
        self._slots.release()
