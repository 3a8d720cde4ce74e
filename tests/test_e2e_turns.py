"""Turn-taking with real speech: eager replies committed or withdrawn, backchannels that do
not interrupt, barge-in by words, and barge-in while an already-sent reply still plays.
Resilience: the dialogue service killed mid-reply (apology, reconnect, next turn works),
and a session resumed on another orchestrator instance (same conversation, one audit chain).

The orchestrator's Session stream is driven directly with paced 20 ms audio frames made by
espeak-ng; STT (faster-whisper tiny.en, Silero VAD, Smart Turn), TTS and the dialogue
service are real processes, the LLM is the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from services.orchestrator.audit_verify import verify
from services.orchestrator.session import APOLOGY
from services.orchestrator.speech import same_words
from tests.fake_openai import FakeOpenAI
from tests.support import speak
from tests.test_e2e import STORY, audit_entries, wait_for_audit
from voxmesh.launcher import Stack
from voxmesh.v1 import orchestrator_pb2 as pb
from voxmesh.v1 import orchestrator_pb2_grpc

pytestmark = pytest.mark.e2e

FRAME_BYTES = 640  # 20 ms of 16 kHz PCM16
# About nine seconds of speech: still playing when the user talks over it, even on a
# loaded machine where recognising their words takes a second or two.
ANSWER = ("Sure, we can do Monday morning at eight. Please bring your service booklet, and "
          "plan to stay about an hour, or take our free shuttle into town while you wait.")


def reply(messages: list[dict[str, Any]]) -> str:
    last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return STORY if "story" in last_user.lower() else ANSWER


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=reply, first_token_delay_s=0.1, token_delay_s=0.05) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(stack_factory: Any, fake_llm: FakeOpenAI) -> Stack:
    return stack_factory(services=("stt", "tts", "llm", "orchestrator"),
                         llm_base_url=fake_llm.base_url)


@pytest.fixture(scope="module")
def hesitant_stack(stack_factory: Any, stack: Stack) -> Stack:
    """An STT whose turn model never judges a turn complete: each utterance's final comes
    at the VAD stop, and the turn ends only after 1.5 s of silence."""
    return stack_factory(services=("stt", "orchestrator"), redis_url=stack.redis_url,
                         extra_env={
                             "VOXMESH_STT_TURN_COMPLETION_THRESHOLD": "0.999",
                             "VOXMESH_STT_TURN_MAX_SILENCE_MS": "1500",
                             "VOXMESH_ORCHESTRATOR_LLM_ADDR": stack.addr("llm"),
                             "VOXMESH_ORCHESTRATOR_TTS_ADDR": stack.addr("tts")})


@pytest.fixture(scope="module")
def patient_stack(stack_factory: Any, stack: Stack) -> Stack:
    """An STT that ends utterances only after 1.5 s of silence and never judges a turn
    complete: the speculative final is done long before, as a partial covering the speech
    end, and a pause of 0.7 s does not split the utterance."""
    return stack_factory(services=("stt", "orchestrator"), redis_url=stack.redis_url,
                         extra_env={
                             "VOXMESH_STT_VAD_STOP_MS": "1500",
                             "VOXMESH_STT_TURN_COMPLETION_THRESHOLD": "0.999",
                             "VOXMESH_STT_TURN_MAX_SILENCE_MS": "1800",
                             "VOXMESH_ORCHESTRATOR_LLM_ADDR": stack.addr("llm"),
                             "VOXMESH_ORCHESTRATOR_TTS_ADDR": stack.addr("tts")})


class Session:
    """An Orchestrator.Session stream with a background reader."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.events: list[pb.SessionResponse] = []
        self.session_id = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for event in self.call:
                if event.WhichOneof("event") == "started":
                    self.session_id = event.started.session_id
                self.events.append(event)

    async def send(self, **request: Any) -> None:
        await self.call.write(pb.SessionRequest(**request))

    async def stream(self, pcm: bytes) -> None:
        """Send audio at real-time pace, as a microphone would."""
        for i in range(0, len(pcm), FRAME_BYTES):
            await self.send(audio=pcm[i:i + FRAME_BYTES])
            await asyncio.sleep(0.02)

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    async def wait_for(self, kind: str, predicate: Any = lambda e: True,
                       timeout_s: float = 60.0) -> Any:
        for _ in range(int(timeout_s / 0.05)):
            found = [e for e in self.of(kind) if predicate(e)]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} event; got {[e.WhichOneof('event') for e in self.events]}")


@contextlib.asynccontextmanager
async def session(stack: Stack, agent: str = "assistant",
                  session_id: str = "", resume_token: str = "") -> AsyncIterator[Session]:
    async with grpc.aio.insecure_channel(stack.addr("orchestrator")) as channel:
        call = orchestrator_pb2_grpc.OrchestratorStub(channel).Session()
        await call.write(pb.SessionRequest(start=pb.SessionStart(
            session_id=session_id, resume_token=resume_token, agent=agent,
            input_sample_rate_hertz=16000,
            output_sample_rate_hertz=24000)))
        s = Session(call)
        await s.wait_for("started", timeout_s=30)
        try:
            yield s
        finally:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call.write(pb.SessionRequest(end=pb.EndSession()))
                await call.done_writing()
            await asyncio.wait_for(s._reader, 10)


async def test_an_eager_reply_is_withdrawn_when_the_user_goes_on_and_committed_at_the_end(
        hesitant_stack: Stack, stack: Stack, fake_llm: FakeOpenAI) -> None:
    first = speak("I would like to book an oil change for", 16000, tail_silence_ms=800)
    second = speak("Monday morning please.", 16000, lead_silence_ms=0, tail_silence_ms=2500)
    async with session(hesitant_stack) as s:
        await s.stream(first + second)
        done = await s.wait_for("response_done")

    entries = await wait_for_audit(stack, s.session_id, "session.end")
    types = [e["type"] for e in entries]
    discarded = [e for e in entries if e["type"] == "turn.eager_discarded"]
    started = next(e for e in entries if e["type"] == "turn.start")
    assert discarded and discarded[0]["data"]["reason"] == "speech_resumed"
    assert "book" in discarded[0]["data"]["text"].lower()
    # The turn that was answered is the whole utterance, started eagerly and committed.
    assert started["data"]["eager"] is True and "monday" in started["data"]["text"].lower()
    assert started["turn_id"] == done.turn_id and done.status == "completed"
    assert types.index("turn.eager_discarded") < types.index("turn.start")
    # Nothing of the withdrawn reply reached the client, and the dialogue forgot it.
    withdrawn = {e["turn_id"] for e in discarded}
    sent = {e.turn_id for e in s.of("response_text")} | {e.turn_id for e in s.of("audio")}
    assert sent == {done.turn_id} and not sent & withdrawn
    users = [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "user"]
    assert len(users) == 1 and "monday" in users[0].lower()


async def test_an_eager_reply_starts_on_the_speculative_final_before_the_utterance_stops(
        patient_stack: Stack, stack: Stack) -> None:
    pcm = speak("Can I book an oil change for Monday morning?", 16000, tail_silence_ms=2500)
    async with session(patient_stack) as s:
        await s.stream(pcm)
        done = await s.wait_for("response_done")

    entries = await wait_for_audit(stack, s.session_id, "session.end")
    types = [e["type"] for e in entries]
    eager = next(e for e in entries if e["type"] == "turn.eager_start")
    # The reply was under way while VAD still waited for 1.5 s of silence.
    assert types.index("transcript.partial") < types.index("turn.eager_start")
    assert types.index("turn.eager_start") < types.index("speech_stopped")
    assert "turn.eager_discarded" not in types
    started = next(e for e in entries if e["type"] == "turn.start")
    assert started["turn_id"] == eager["turn_id"] == done.turn_id and done.status == "completed"
    assert started["data"]["eager"] is True and started["data"]["head_start_ms"] > 0
    final = next(e for e in entries if e["type"] == "transcript.final")
    assert same_words(eager["data"]["text"], final["data"]["text"])


async def test_an_eager_reply_is_withdrawn_when_speech_resumes_within_the_utterance(
        patient_stack: Stack, stack: Stack, fake_llm: FakeOpenAI) -> None:
    first = speak("I would like to book an oil change for", 16000, tail_silence_ms=700)
    second = speak("Monday morning please.", 16000, lead_silence_ms=0, tail_silence_ms=2500)
    async with session(patient_stack) as s:
        await s.stream(first + second)
        done = await s.wait_for("response_done")

    entries = await wait_for_audit(stack, s.session_id, "session.end")
    types = [e["type"] for e in entries]
    assert types.count("speech_started") == 1, types  # one utterance, paused in the middle
    discarded = [e for e in entries if e["type"] == "turn.eager_discarded"]
    assert discarded and discarded[0]["data"]["reason"] == "speech_resumed"
    assert "book" in discarded[0]["data"]["text"].lower()
    assert "monday" not in discarded[0]["data"]["text"].lower()
    started = next(e for e in entries if e["type"] == "turn.start")
    assert started["turn_id"] == done.turn_id and "monday" in started["data"]["text"].lower()
    sent = {e.turn_id for e in s.of("response_text")} | {e.turn_id for e in s.of("audio")}
    assert sent == {done.turn_id}
    users = [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "user"]
    assert "monday" in users[-1].lower() and "book" in users[-1].lower()


async def speaking_story(s: Session) -> str:
    """Ask for the long story and wait until its audio flows; returns its turn id."""
    await s.send(input_text=pb.InputText(text="Tell me the story of the dealership."))
    state = await s.wait_for("state", lambda e: e.state == pb.SESSION_STATE_SPEAKING)
    return str(state.turn_id)


async def test_a_backchannel_does_not_interrupt(stack: Stack) -> None:
    async with session(stack) as s:
        turn_id = await speaking_story(s)
        await s.stream(speak("Okay.", 16000, tail_silence_ms=1000))
        # The decision waits for the recognizer's final, which a loaded machine delays.
        entries = await wait_for_audit(stack, s.session_id, "barge_in.ignored", timeout_s=30)
        done = await s.wait_for("response_done", lambda e: e.turn_id == turn_id)

    assert done.status == "completed"
    assert s.of("playback_stop") == []
    ignored = [e for e in entries if e["type"] == "barge_in.ignored"]
    assert ignored and ignored[0]["turn_id"] == turn_id
    assert not any(e["type"] == "turn.start" and e["turn_id"] != turn_id for e in entries)


async def test_words_over_the_agent_interrupt_it(stack: Stack) -> None:
    async with session(stack) as s:
        turn_id = await speaking_story(s)
        await s.stream(speak("Wait, can you book me for Tuesday instead?", 16000,
                             tail_silence_ms=1500))
        done = await s.wait_for("response_done", lambda e: e.turn_id == turn_id)
        await s.wait_for("response_done", lambda e: e.turn_id != turn_id)

    assert done.status == "interrupted"
    assert [p.turn_id for p in s.of("playback_stop")][:1] == [turn_id]
    entries = audit_entries(stack, s.session_id)
    interrupted = next(e for e in entries if e["type"] == "turn.interrupted")
    assert interrupted["data"]["reason"] in ("barge_in_words", "barge_in_long_speech")
    assert STORY.startswith(interrupted["data"]["heard_text"])
    assert len(interrupted["data"]["heard_text"]) < len(STORY)


async def test_speaking_over_a_reply_still_playing_stops_it_at_what_was_heard(
        stack: Stack, fake_llm: FakeOpenAI) -> None:
    async with session(stack) as s:
        await s.send(input_text=pb.InputText(text="Can I come in on Monday?"))
        first_audio = await s.wait_for("audio")
        done = await s.wait_for("response_done")
        assert done.status == "completed"  # every byte was sent; the user still listens
        await asyncio.sleep(0.3)
        await s.stream(speak("No no, I meant Tuesday afternoon.", 16000, tail_silence_ms=1500))
        stop = await s.wait_for("playback_stop")
        await s.wait_for("response_done", lambda e: e.turn_id != done.turn_id)

    assert stop.turn_id == first_audio.turn_id == done.turn_id
    entries = audit_entries(stack, s.session_id)
    cut = next(e for e in entries if e["type"] == "turn.interrupted")
    assert cut["data"]["after_done"] is True
    heard = cut["data"]["heard_text"]
    assert ANSWER.startswith(heard) and len(heard) < len(ANSWER)
    # The dialogue was told: its history holds only what was heard.
    assistant = [m["content"] for m in fake_llm.requests[-1]["messages"]
                 if m["role"] == "assistant"]
    assert assistant[-1] == heard


async def test_a_dead_dialogue_service_gets_an_apology_and_the_session_recovers(
        stack: Stack, stack_factory: Any, fake_llm: FakeOpenAI) -> None:
    llm = stack_factory(services=("llm",), llm_base_url=fake_llm.base_url,
                        redis_url=stack.redis_url)
    orchestrator = stack_factory(services=("orchestrator",), redis_url=stack.redis_url,
                                 extra_env={"VOXMESH_ORCHESTRATOR_LLM_ADDR": llm.addr("llm"),
                                            "VOXMESH_ORCHESTRATOR_STT_ADDR": stack.addr("stt"),
                                            "VOXMESH_ORCHESTRATOR_TTS_ADDR": stack.addr("tts")})
    async with session(orchestrator) as s:
        turn_id = await speaking_story(s)
        # Dies mid-reply, no goodbye, and comes back on the same address; the session
        # reconnects by itself.
        restart = asyncio.create_task(asyncio.to_thread(llm.restart, "llm", kill=True))
        error = await s.wait_for("error", lambda e: e.code == "llm_unavailable")
        done = await s.wait_for("response_done", lambda e: e.turn_id == turn_id)
        await restart
        await wait_for_audit(stack, s.session_id, "llm.reconnected", timeout_s=30)
        mark = len(s.events)
        await s.send(input_text=pb.InputText(text="Can I come in on Monday?"))
        second = await s.wait_for("response_done", lambda e: e.turn_id != turn_id)

    text = "".join(e.response_text.delta for e in s.events
                   if e.WhichOneof("event") == "response_text"
                   and e.response_text.turn_id == turn_id)
    assert "dialogue service lost" in error.message
    assert done.status == "failed" and text.endswith(APOLOGY)
    assert STORY.startswith(text[: -len(APOLOGY)].rstrip())  # the story so far, then sorry
    apology_audio = [e for e in s.events[:mark] if e.WhichOneof("event") == "audio"
                     and e.audio.turn_id == turn_id]
    assert apology_audio, "the apology was not spoken"
    assert second.status == "completed"
    assert ANSWER in "".join(e.response_text.delta for e in s.events[mark:]
                                   if e.WhichOneof("event") == "response_text")


async def test_a_session_resumes_on_another_orchestrator(
        stack: Stack, stack_factory: Any, fake_llm: FakeOpenAI) -> None:
    async with session(stack) as first:
        await first.send(input_text=pb.InputText(text="My name is Ada Lovelace."))
        await first.wait_for("response_done")
    other = stack_factory(services=("orchestrator",), redis_url=stack.redis_url, extra_env={
        "VOXMESH_ORCHESTRATOR_LLM_ADDR": stack.addr("llm"),
        "VOXMESH_ORCHESTRATOR_STT_ADDR": stack.addr("stt"),
        "VOXMESH_ORCHESTRATOR_TTS_ADDR": stack.addr("tts")})
    async with session(other, session_id=first.session_id,
                       resume_token=first.of("started")[0].resume_token) as resumed:
        await resumed.send(input_text=pb.InputText(text="Can I come in on Monday?"))
        done = await resumed.wait_for("response_done")

    started = resumed.of("started")[0]
    assert started.session_id == first.session_id and started.is_resumed
    assert done.status == "completed"
    users = [m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "user"]
    assert users[-2:] == ["My name is Ada Lovelace.", "Can I come in on Monday?"]
    # Both orchestrators wrote one unbroken hash chain.
    await wait_for_audit(stack, first.session_id, "session.end")
    client = aioredis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        report = await verify(client, first.session_id)
    finally:
        await client.aclose()
    assert report.ok, report.problems
    entries = audit_entries(stack, first.session_id)
    assert [e["type"] for e in entries].count("session.start") == 2


async def test_a_dead_recognizer_is_reported_and_the_next_question_is_heard(
        stack: Stack, stack_factory: Any) -> None:
    stt = stack_factory(services=("stt",))
    orchestrator = stack_factory(services=("orchestrator",), redis_url=stack.redis_url,
                                 extra_env={"VOXMESH_ORCHESTRATOR_STT_ADDR": stt.addr("stt"),
                                            "VOXMESH_ORCHESTRATOR_LLM_ADDR": stack.addr("llm"),
                                            "VOXMESH_ORCHESTRATOR_TTS_ADDR": stack.addr("tts")})
    question = speak("Can I come in on Monday?", 16000, tail_silence_ms=1500)
    async with session(orchestrator) as s:
        await s.stream(question[: len(question) // 3])
        restart = asyncio.create_task(asyncio.to_thread(stt.restart, "stt", kill=True))
        error = await s.wait_for("error", lambda e: e.code == "stt_unavailable")
        await restart
        await wait_for_audit(stack, s.session_id, "stt.reconnected", timeout_s=30)
        await s.stream(question)
        done = await s.wait_for("response_done")

    assert "speech recognition lost" in error.message
    assert done.status == "completed"
    finals = [t.text for t in s.of("transcript") if t.is_final and t.role == pb.ROLE_USER]
    assert finals and "monday" in finals[-1].lower()
