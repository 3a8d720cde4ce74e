"""The response side of one stream: events delivered in utterance order.

Decodes finish out of order (a final takes a few hundred ms, and the next
utterance may begin meanwhile), but a client sees every event of utterance
``n`` (up to its end_of_turn, or its speech_stopped if it was dropped) before
any event of utterance ``n + 1``; later events are held back until then.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

from services.stt.errors import SttError
from voxmesh.v1 import stt_pb2

_CLOSE = object()
_END = object()


class OrderedEvents:
    """A queue of StreamingRecognizeResponse that holds back later utterances' events."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._current = 1
        self._held: defaultdict[int, list[object]] = defaultdict(list)
        self._error: SttError | None = None

    def emit(self, utterance_id: int, event: stt_pb2.StreamingRecognizeResponse) -> None:
        """Queue an event of ``utterance_id``."""
        self._push(utterance_id, event)

    def close(self, utterance_id: int) -> None:
        """No more events for ``utterance_id``: release the next utterance's events."""
        self._push(utterance_id, _CLOSE)

    def end(self) -> None:
        """End the response stream after the events already queued."""
        self._queue.put_nowait(_END)

    def fail(self, error: SttError) -> None:
        """End the response stream with ``error`` at once (queued events are dropped)."""
        if self._error is None:
            self._error = error
            self._queue.put_nowait(_END)

    def _push(self, utterance_id: int, item: object) -> None:
        if utterance_id != self._current:
            self._held[utterance_id].append(item)
            return
        if item is not _CLOSE:
            self._queue.put_nowait(item)
            return
        self._current += 1
        following = self._current
        for held in self._held.pop(following, []):
            self._push(following, held)

    async def __aiter__(self) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        """Yield events until :meth:`end`; raise the error given to :meth:`fail`."""
        while True:
            item = await self._queue.get()
            if self._error is not None:
                raise self._error
            if item is _END:
                return
            assert isinstance(item, stt_pb2.StreamingRecognizeResponse)
            yield item
