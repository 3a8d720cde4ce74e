"""Turn-taking on the user's speech: the recognizer's events, eager replies committed or
withdrawn at the end of the turn, and barge-in (interrupt, or ignore a backchannel).
"""

from __future__ import annotations

import bisect

from services.orchestrator import metrics
from services.orchestrator.replies import Replies
from services.orchestrator.session_core import new_turn_id
from services.orchestrator.speech import is_backchannel, same_words
from services.orchestrator.state import State
from services.orchestrator.turn import Turn, now_ms
from voxmesh.v1 import dialogue_pb2, stt_pb2, tts_pb2
from voxmesh.v1 import orchestrator_pb2 as pb

PLAYBACK_SLACK_MS = 500.0
"""How long after its audio was all sent a reply may still be playing at the client
(network and jitter buffer), when the client does not report playback."""


class TurnTaking(Replies):
    """Decides from the user's speech when to reply, and when the user cuts the agent off."""

    async def _on_stt_event(self, event: stt_pb2.StreamingRecognizeResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "speech_started":
            self.user_speaking = True
            self.send(voice_activity=pb.VoiceActivity(
                is_speaking=True, offset_ms=event.speech_started.offset_ms))
            self.record("speech_started", self.next_turn_id, component="stt",
                        offset_ms=event.speech_started.offset_ms)
            if self.eager is not None:  # the user goes on: that reply was premature
                await self._discard(self.eager, "speech_resumed")
            audible = self._audible_turn()
            if audible is not None:
                await self._on_speech_over(audible,
                                           event.speech_started.offset_ms + self.stt_base_ms)
        elif kind == "speech_stopped":
            offset = event.speech_stopped.offset_ms
            self.speech_end_ms = self._wall_ms_at(offset)
            if self.talked_over is not None:  # short speech: its words decide, at the final
                self.talked_over_since_ms = float("inf")
            self.send(voice_activity=pb.VoiceActivity(is_speaking=False, offset_ms=offset))
            self.record("speech_stopped", self.next_turn_id, component="stt", offset_ms=offset)
            # A partial that two decodes agreed on; unstable ones were measured to differ
            # from the final about half the time (bench/voice_to_voice.py).
            if self.partial_stable and self.partial_text:
                await self._maybe_start_eager([*self.pending_user_text, self.partial_text])
        elif kind in ("partial", "final"):
            transcript = getattr(event, kind)
            is_final = kind == "final"
            text = transcript.text.strip()
            if self.talked_over is not None and not is_backchannel(text):
                await self._barge_in(self.talked_over, "barge_in_words")
            if is_final:
                self.partial_text, self.partial_stable = "", False
                if self.talked_over is not None:  # only feedback or noise: keep talking
                    self._ignore_barge_in(self.talked_over, text)
                    return
                self.pending_user_text.append(text)
                self.final_at_ms = now_ms()
                await self._maybe_start_eager(self.pending_user_text)
            else:
                self.partial_text, self.partial_stable = text, transcript.is_stable
                if self.eager is not None and not transcript.covers_speech_end:
                    # Partials are decoded only while speech goes on: the pause the eager
                    # reply started in was not the end of the utterance.
                    await self._discard(self.eager, "speech_resumed")
            self.send(transcript=pb.TranscriptEvent(
                role=pb.ROLE_USER, text=transcript.text, is_final=is_final,
                turn_id=self.next_turn_id))
            self.record(f"transcript.{kind}", self.next_turn_id, component="stt",
                        text=transcript.text, start_ms=transcript.start_offset_ms,
                        end_ms=transcript.end_offset_ms, decode_ms=transcript.decode_ms)
            if transcript.covers_speech_end and self.talked_over is None:
                # The speculative final, sent while the end of turn is still being decided:
                # it becomes the final unless the user speaks again (then it is discarded).
                self.speech_end_ms = self._wall_ms_at(transcript.end_offset_ms)
                await self._maybe_start_eager([*self.pending_user_text, text])
        elif kind == "end_of_turn":
            text = " ".join(t for t in self.pending_user_text if t)
            self.pending_user_text.clear()
            speech_end = self.speech_end_ms
            stt_ms = (self.final_at_ms - speech_end) if (speech_end and self.final_at_ms) else 0.0
            self.user_speaking = False
            self.record("end_of_turn", self.next_turn_id, component="stt",
                        offset_ms=event.end_of_turn.offset_ms)
            eager, self.eager = self.eager, None
            if eager is not None:
                if text and same_words(eager.user_text, text):
                    await self._commit(eager, stt_ms)
                    return
                await self._discard(eager, "text_changed")
            if text:
                await self._on_user_text(text, speech_end, stt_ms)
            else:
                await self._maybe_notify()

    def _wall_ms_at(self, stt_offset_ms: float) -> float:
        """When the audio at ``stt_offset_ms`` of the current STT stream reached us."""
        i = bisect.bisect_left(self._arrival_audio_ms, stt_offset_ms + self.stt_base_ms)
        if i >= len(self._arrival_wall_ms):
            return now_ms()
        return self._arrival_wall_ms[i]

    def _audible_turn(self) -> Turn | None:
        """The reply the user may be hearing now: one under way, or one whose audio was all
        sent (synthesis runs faster than real time) and is probably still playing."""
        if self.turn is None:
            return None
        turn = self.turn
        if not turn.finished:
            return turn
        if turn.cancelled or turn.playback_done or turn.first_audio_ms is None:
            return None
        audio_ms = turn.samples_sent * 1000 / self.output_rate
        playing_until = turn.first_audio_ms + audio_ms + PLAYBACK_SLACK_MS
        return turn if now_ms() < playing_until else None

    async def _on_speech_over(self, turn: Turn, offset_ms: float) -> None:
        """The user speaks while a reply is under way: interrupt, or wait to know why."""
        thinking = not turn.finished and self.state.state is State.THINKING
        if thinking or self.policy.barge_in_min_speech_ms == 0:
            # Nothing heard yet (the user is still finishing their turn), or no filter.
            metrics.BARGE_INS.labels("interrupted").inc()
            await self._interrupt(turn, reason="barge_in")
            return
        self.talked_over = turn
        self.talked_over_since_ms = offset_ms
        self.record("barge_in.pending", turn.turn_id, offset_ms=offset_ms)

    async def _check_long_speech(self) -> None:
        """Speech over the reply that lasts, even without recognised words, interrupts it.

        Measured in input audio, not wall time, so a loaded machine decides the same."""
        turn = self.talked_over
        if turn is not None and (self.audio_ms_in - self.talked_over_since_ms
                                 >= self.policy.barge_in_min_speech_ms):
            await self._barge_in(turn, "barge_in_long_speech")

    async def _barge_in(self, turn: Turn, reason: str) -> None:
        """The user interrupts ``turn``, whether it is still being sent or only playing."""
        self.talked_over = None
        metrics.BARGE_INS.labels("interrupted").inc()
        if turn.finished:
            await self._cut_playback(turn, reason)
        else:
            await self._interrupt(turn, reason)

    async def _cut_playback(self, turn: Turn, reason: str) -> None:
        """Stop a reply that was all sent but is still playing; keep only what was heard."""
        turn.cancelled = True
        self.send(playback_stop=pb.PlaybackStop(turn_id=turn.turn_id))
        metrics.INTERRUPTIONS.inc()
        await self._keep_heard(turn, reason, after_done=True)

    def _ignore_barge_in(self, turn: Turn, text: str) -> None:
        self.talked_over = None
        metrics.BARGE_INS.labels("ignored").inc()
        self.record("barge_in.ignored", turn.turn_id, text=text,
                    reason="noise" if not text else "backchannel")

    async def _maybe_start_eager(self, parts: list[str]) -> None:
        """Start replying to ``parts`` now, unconfirmed, unless a reply is under way."""
        text = " ".join(p for p in parts if p)
        if (not self.policy.eager_turns or not text or not self.llm_up
                or self.talked_over is not None
                or (self.turn is not None and not self.turn.finished)):
            return
        if self.eager is not None:
            if same_words(self.eager.user_text, text):
                return
            await self._discard(self.eager, "text_changed")
        self.eager = await self._on_user_text(text, self.speech_end_ms, 0.0, speculative=True)

    async def _commit(self, turn: Turn, stt_ms: float) -> None:
        """The turn ended with the eager reply's words: send what it held, then go live."""
        turn.speculative = False
        turn.committed_ms = now_ms()
        turn.stt_ms = stt_ms
        self._trace_stt(turn)
        self.next_turn_id = new_turn_id()
        self.turn = turn
        metrics.EAGER_TURNS.labels("committed").inc()
        self.record("turn.start", turn.turn_id, text=turn.user_text, typed=False, eager=True,
                    head_start_ms=round(turn.committed_ms - turn.llm_sent_ms, 1))
        self.state.to(State.THINKING, turn.turn_id)
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(
            commit=dialogue_pb2.CommitTurn(turn_id=turn.turn_id)))
        held, turn.held = turn.held, []
        for event in held:
            if "audio" in event and turn.first_audio_ms is None:
                self._on_first_audio(turn)
            self.send(**event)
        if turn.held_end:
            self._end_turn(turn, turn.held_end, turn.reply_text)

    async def _discard(self, turn: Turn, reason: str) -> None:
        """Withdraw an eager reply nobody heard; the dialogue forgets the turn."""
        if self.eager is turn:
            self.eager = None
        turn.cancelled = turn.finished = True
        self.turns.pop(turn.turn_id, None)
        # Late events of the withdrawn generation carry its id: the next attempt needs another.
        self.next_turn_id = new_turn_id()
        if turn.tts is not None:
            await turn.tts.write(tts_pb2.StreamingSynthesizeRequest(cancel=tts_pb2.Cancel()))
            turn.tts.call.cancel()
        assert self.llm is not None
        await self.llm.write(dialogue_pb2.ConverseRequest(
            cancel=dialogue_pb2.CancelTurn(turn_id=turn.turn_id, discard=True)))
        metrics.EAGER_TURNS.labels("discarded").inc()
        self.record("turn.eager_discarded", turn.turn_id, text=turn.user_text, reason=reason,
                    generated_text=turn.reply_text)
        for span in (turn.llm_span, turn.tts_span, turn.span):
            if span is not None and span.is_recording():
                span.set_attribute("voxmesh.status", "discarded")
                span.end()
