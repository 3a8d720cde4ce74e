"""Notifications the agent speaks unprompted, held until a safe moment to speak."""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace

from services.orchestrator.state import State
from services.orchestrator.turn import Turn
from services.orchestrator.turn_taking import TurnTaking
from voxmesh.telemetry import grpc_metadata_with_context
from voxmesh.v1 import audio_pb2, dialogue_pb2, tts_pb2
from voxmesh.v1 import orchestrator_pb2 as pb

tracer = trace.get_tracer("voxmesh.orchestrator")


class Notifications(TurnTaking):
    """Queues notifications by priority and speaks each when neither side is talking."""

    def _safe_to_speak(self) -> bool:
        """Neither side is talking and no reply is under way."""
        return (self.state.state is State.LISTENING and not self.user_speaking
                and not self.pending_user_text and self.eager is None
                and (self.turn is None or self.turn.finished))

    def _queue_notification(self, note: dialogue_pb2.Notification) -> None:
        if any(n.notification_id == note.notification_id for n in self.notifications):
            return  # sent again by a new Converse stream
        self.notifications.append(note)
        # Stable sort: within a priority, arrival order stays.
        self.notifications.sort(key=lambda n: -n.priority)
        self.record("notification.received", note.notification_id, component="llm",
                    text=note.text, source=note.source,
                    priority=dialogue_pb2.NotificationPriority.Name(note.priority))

    async def _maybe_notify(self) -> None:
        """Speak the most urgent waiting notification, if now is a safe moment."""
        if not self.notifications or not self._safe_to_speak():
            return
        note = self.notifications.pop(0)
        turn_id = note.notification_id
        priority = "high" if note.priority == dialogue_pb2.NOTIFICATION_PRIORITY_HIGH else (
            "normal")
        span = tracer.start_span("notification", context=otel_context.Context(), attributes={
            "voxmesh.session_id": self.session_id, "voxmesh.turn_id": turn_id,
            "voxmesh.source": note.source, "voxmesh.priority": priority})
        turn = Turn(turn_id, "", self.output_rate, span, proactive=True, llm_done=True,
                    reply_parts=[note.text])
        self.turn = self.turns[turn_id] = turn
        self.send(notification=pb.NotificationStarted(
            notification_id=turn_id, text=note.text, priority=priority, source=note.source))
        self.record("notification.spoken", turn_id, text=note.text, priority=priority)
        self.state.to(State.THINKING, turn_id)
        assert self.llm is not None
        # Told first, so a heard report after a barge-in finds it in the dialogue's history.
        await self.llm.write(dialogue_pb2.ConverseRequest(
            delivered=dialogue_pb2.NotificationDelivered(notification_id=turn_id)))
        with trace.use_span(span, end_on_exit=False):
            turn.tts_metadata = grpc_metadata_with_context()
        await self._open_tts(turn)
        self.send(response_text=pb.ResponseText(turn_id=turn_id, delta=note.text))
        assert turn.tts is not None
        await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(text=note.text))
        await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(
            end_of_input=audio_pb2.EndOfInput()))
