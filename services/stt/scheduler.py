"""Shares Whisper between streams: decodes that arrive together run as one batch.

A decode joins a queue; a dispatcher forms a batch once a decode slot is free,
after waiting ``batch_wait_ms`` for companions, and runs it in a thread. Finals
take priority over partials (a batch is all finals or all partials, so word
timings are computed only for finals). Finals wait for a slot, at most
``max_queued`` beyond what the free slots can take at once, else
:class:`ResourceExhausted`; partials are best effort and are skipped when no
slot is free or finals are waiting, so they never delay a final.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.stt import metrics
from services.stt.engine import DecodeResult, WhisperEngine
from services.stt.errors import ResourceExhausted
from voxmesh.config import SttSettings


class DecodeKind(enum.StrEnum):
    """Why a decode runs; it sets the queueing policy and the metric label."""

    PARTIAL = "partial"
    """Best effort: skipped when no slot is free right now or finals are waiting."""
    FINAL = "final"
    """Must run: waits for a slot, up to ``max_queued`` waiting."""


@dataclass(eq=False)  # identity: queue removal must not compare audio arrays
class _Job:
    audio: np.ndarray
    kind: DecodeKind
    language: str
    future: asyncio.Future[DecodeResult]


class DecodeScheduler:
    """Runs batched decodes in threads, at most ``max_concurrent_decodes`` batches at once."""

    def __init__(self, engine: WhisperEngine, settings: SttSettings) -> None:
        self._engine = engine
        self._free = max(1, settings.max_concurrent_decodes)
        self._max_queued = settings.max_queued_decodes
        self._max_batch = max(1, settings.max_batch_size)
        self._wait_s = settings.batch_wait_ms / 1000
        self._finals: deque[_Job] = deque()
        self._partials: deque[_Job] = deque()
        self._forming = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def decode(
        self, audio: np.ndarray, kind: DecodeKind, language: str
    ) -> DecodeResult | None:
        """Decode ``audio``; returns None only for a partial that found no free slot.

        Cancelling the caller drops a queued decode; one already running
        finishes in its thread with the rest of its batch, unobserved.
        """
        if kind is DecodeKind.PARTIAL:
            if self._free == 0 or self._finals:
                metrics.REJECTED.labels(reason="partial_skipped").inc()
                return None
            queue = self._partials
        else:
            if len(self._finals) >= self._free * self._max_batch + self._max_queued:
                metrics.REJECTED.labels(reason="queue_full").inc()
                raise ResourceExhausted(
                    f"decode queue full ({len(self._finals)} decodes waiting); retry later"
                )
            queue = self._finals
        job = _Job(audio, kind, language, asyncio.get_running_loop().create_future())
        queue.append(job)
        self._update_depth()
        self._kick()
        try:
            return await job.future
        finally:
            if job in queue:  # cancelled while still queued
                queue.remove(job)
                self._update_depth()

    def _update_depth(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self._finals))

    def _kick(self) -> None:
        """Start forming a batch when there is work and a free slot."""
        if self._forming or self._free == 0 or not (self._finals or self._partials):
            return
        self._forming = True
        task = asyncio.create_task(self._dispatch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self) -> None:
        try:
            if self._wait_s and len(self._finals) + len(self._partials) < self._max_batch:
                await asyncio.sleep(self._wait_s)  # let decodes from other streams join
            batch = self._take()
        finally:
            self._forming = False
        if not batch:
            self._kick()
            return
        self._free -= 1
        self._kick()  # another free slot may start the next batch meanwhile
        try:
            await self._run(batch)
        finally:
            self._free += 1
            self._kick()

    def _take(self) -> list[_Job]:
        """Up to max_batch_size queued jobs of one kind and language, finals first."""
        queue = self._finals if self._finals else self._partials
        batch: list[_Job] = []
        skipped: list[_Job] = []
        while queue and len(batch) < self._max_batch:
            job = queue.popleft()
            if job.future.done():
                continue
            if batch and job.language != batch[0].language:
                skipped.append(job)
                continue
            batch.append(job)
        queue.extendleft(reversed(skipped))
        self._update_depth()
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        kind = batch[0].kind
        metrics.BATCH_SIZE.labels(kind=kind.value).observe(len(batch))
        try:
            results = await asyncio.to_thread(
                self._engine.transcribe_batch, [job.audio for job in batch],
                batch[0].language, kind is DecodeKind.FINAL,
            )
        except Exception as error:  # every caller of the batch gets the failure
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job, result in zip(batch, results, strict=True):
            metrics.DECODE_SECONDS.labels(kind=kind.value).observe(result.decode_ms / 1000)
            if result.audio_ms:
                metrics.REAL_TIME_FACTOR.observe(result.decode_ms / result.audio_ms)
            if not job.future.done():
                job.future.set_result(result)
