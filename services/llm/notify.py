"""Proactive notifications: produced by background work, held until delivered.

A notification outlives the stream that caused it: it is kept (in Redis when memory is
configured, and in this process) until the orchestrator reports it is being spoken, and
sent again whenever a Converse stream of its session opens. Delivery to a live stream
never blocks the publisher.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from services.llm.memory import Memory
from voxmesh.v1 import dialogue_pb2 as pb

log = logging.getLogger(__name__)

Send = Callable[[pb.ConverseResponse], None]


@dataclass(frozen=True)
class PendingNotification:
    """One notification not yet delivered."""

    text: str
    source: str
    priority: int = pb.NOTIFICATION_PRIORITY_NORMAL
    notification_id: str = field(default_factory=lambda: "ntf-" + uuid.uuid4().hex[:12])
    created_s: float = field(default_factory=time.time)

    def event(self) -> pb.ConverseResponse:
        """The Converse event announcing it."""
        return pb.ConverseResponse(notification=pb.Notification(
            notification_id=self.notification_id, text=self.text,
            priority=self.priority, source=self.source))  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PendingNotification | None:
        """Rebuild a stored notification; None when the entry is unusable."""
        try:
            return cls(text=str(data["text"]), source=str(data["source"]),
                       priority=int(data["priority"]),  # type: ignore[call-overload]
                       notification_id=str(data["notification_id"]),
                       created_s=float(data["created_s"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None


def delivery_order(notification: PendingNotification) -> tuple[int, float]:
    """Sort key: higher priority first, then oldest first."""
    return (-notification.priority, notification.created_s)


class Notifier:
    """Routes notifications to the live stream of their session and keeps them until told."""

    def __init__(self, memory: Memory | None) -> None:
        """Keep undelivered notifications in ``memory`` too, when given."""
        self.memory = memory
        self._live: dict[str, Send] = {}
        self._held: dict[str, dict[str, PendingNotification]] = {}

    def attach(self, session_id: str, send: Send) -> None:
        """Deliver ``session_id``'s notifications to ``send`` from now on (a newer stream wins)."""
        self._live[session_id] = send

    def detach(self, session_id: str, send: Send) -> None:
        """Stop delivering to ``send`` (a no-op when a newer stream took over)."""
        if self._live.get(session_id) is send:
            del self._live[session_id]

    async def publish(self, session_id: str, notification: PendingNotification) -> None:
        """Keep ``notification`` and send it to the session's live stream, if any."""
        self._held.setdefault(session_id, {})[notification.notification_id] = notification
        if self.memory is not None:
            await self.memory.save_notification(session_id, notification.notification_id,
                                                asdict(notification))
        send = self._live.get(session_id)
        log.info("notification", extra={"notification_id": notification.notification_id,
                                        "source": notification.source, "live": send is not None})
        if send is not None:
            send(notification.event())

    async def pending(self, session_id: str) -> list[PendingNotification]:
        """Undelivered notifications of ``session_id``, in delivery order."""
        held = dict(self._held.get(session_id, {}))
        if self.memory is not None:
            for data in await self.memory.load_notifications(session_id):
                stored = PendingNotification.from_dict(data)
                if stored is not None:
                    held.setdefault(stored.notification_id, stored)
        return sorted(held.values(), key=delivery_order)

    async def take(self, session_id: str, notification_id: str) -> PendingNotification | None:
        """Mark a notification delivered; returns it, or None when it is unknown."""
        found = self._held.get(session_id, {}).pop(notification_id, None)
        if found is None:
            found = next((n for n in await self.pending(session_id)
                          if n.notification_id == notification_id), None)
        if self.memory is not None and found is not None:
            await self.memory.delete_notification(session_id, notification_id)
        if not self._held.get(session_id):
            self._held.pop(session_id, None)
        return found
