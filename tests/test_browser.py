"""The web page in a real browser: Debian's Chromium, driven by Playwright, with a fake mic.

Chromium's fake capture device plays a WAV (espeak-ng speaking a question) into
``getUserMedia``; the page sends it through its mic AudioWorklet to the real gateway
and stack (real STT, TTS, orchestrator; the LLM upstream is the scripted fake), shows
the transcript and the reply, plays the reply through its player AudioWorklet, and
stops playing when the Interrupt button is pressed. Screenshots go to a temp dir.
Never ``playwright install``: the browser is /usr/bin/chromium (apt package chromium).
"""

from __future__ import annotations

import asyncio
import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import FakeOpenAI
from tests.support import speak
from voxmesh.launcher import Stack

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt install chromium)"),
]

QUESTION = "What time does the service department open on Saturday?"
# Long enough to be still playing when the test presses Interrupt.
ANSWER = (
    "Our service department opens at eight in the morning on Saturday. "
    "We close at four in the afternoon, and you can book an appointment online or by phone. "
    "Walk-in customers are welcome too, although the wait can be longer before noon. "
    "Please bring your service booklet so that we can record the work in it."
)
RATE = 48000  # what a real microphone delivers; the page resamples it to 16 kHz


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=ANSWER, first_token_delay_s=0.1, token_delay_s=0.01) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(stack_factory: Any, fake_llm: FakeOpenAI) -> Stack:
    return stack_factory(llm_base_url=fake_llm.base_url, extra_env={
        "VOXMESH_GATEWAY_PAGE_KEY_ENABLED": "true",  # as `voxmesh up` sets it on loopback
    })


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16-bit PCM mono WAV: 2 s of silence (the page connects), the question, 4 s of silence."""
    pcm = bytes(RATE * 2 * 2) + speak(QUESTION, RATE) + bytes(RATE * 2 * 4)
    path = tmp_path_factory.mktemp("browser") / "question.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return path


async def played_ms(page: Any) -> int:
    return int(await page.get_attribute("#app", "data-played-ms") or 0)


async def test_speak_see_hear_and_interrupt_in_chromium(
        stack: Stack, question_wav: Path, tmp_path_factory: pytest.TempPathFactory,
        record_property: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from playwright.async_api import async_playwright, expect

    shots = tmp_path_factory.mktemp("screenshots")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={question_wav}%noloop",
                  "--autoplay-policy=no-user-gesture-required"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
            await page.goto(stack.gateway_url)
            picker = page.locator("#agent")
            await expect(picker.locator("option")).to_have_count(4)  # from GET /v1/agents
            await picker.select_option("assistant")

            await page.click("#start")
            await expect(page.locator("#agent-now")).to_have_text("assistant", timeout=20_000)
            user = page.locator(".bubble.user:not(.partial)")
            await expect(user.first).to_contain_text("Saturday", ignore_case=True,
                                                     timeout=60_000)
            reply = page.locator(".bubble.assistant").first
            await expect(reply).to_contain_text("Our service department opens at eight",
                                                timeout=30_000)

            # The player worklet reports what it played; 700 ms means audio is really flowing.
            for _ in range(300):
                if await played_ms(page) >= 700:
                    break
                await asyncio.sleep(0.1)
            assert await played_ms(page) >= 700, f"no reply audio played; console: {console}"
            await expect(page.locator("#app")).to_have_attribute("data-playing", "true")
            await page.screenshot(path=str(shots / "desktop-1280x800.png"))

            await page.click("#interrupt")
            await expect(page.locator("#app")).to_have_attribute("data-playing", "false",
                                                                 timeout=5_000)
            stopped_at = await played_ms(page)
            await asyncio.sleep(1.5)
            assert await played_ms(page) == stopped_at, "playback went on after Interrupt"
            assert stopped_at < 8_000, stopped_at  # the answer is ~20 s: most was never played
            await expect(page.locator("#state")).not_to_have_text("speaking")

            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(path=str(shots / "mobile-390x844.png"))
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth")
            assert not overflow, "the page scrolls sideways on a phone"

            # The gateway restarts under the page: it reconnects and resumes its session.
            session_id = await page.get_attribute("#app", "data-session-id")
            assert session_id
            await asyncio.to_thread(stack.restart, "gateway")
            await expect(page.locator("#app")).to_have_attribute(
                "data-reconnects", re.compile(r"^[1-9]\d*$"), timeout=30_000)
            await expect(page.locator("#state")).to_have_text("listening", ignore_case=True,
                                                              timeout=30_000)
            assert await page.get_attribute("#app", "data-session-id") == session_id
        finally:
            await browser.close()

    paths = sorted(str(p) for p in shots.glob("*.png"))
    assert len(paths) == 2 and all(Path(p).stat().st_size > 10_000 for p in paths)
    record_property("screenshots", json.dumps(paths))
    with capsys.disabled():
        print("\nscreenshots: " + ", ".join(paths))
