"""The phrase cache and the word timings of a real TTS process (hibari)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import StackFactory
from tests.test_tts import Request, config, end, synthesize
from tests.test_tts_fallback import metric_values
from voxmesh.launcher import Stack

GREETING = "Your car is ready for pickup at the front desk today."


@pytest.fixture(scope="module")
def hibari(stack_factory: StackFactory) -> Stack:
    """hibari alone, with the default 64 MB phrase cache."""
    return stack_factory(services=("tts",), extra_env={"VOXMESH_TTS_ENGINES": "hibari"})


async def test_same_phrase_twice_is_a_cache_hit(hibari: Stack) -> None:
    """The second time the audio is the same bytes, synthesis_ms 0, and the hit is counted."""
    addr = hibari.addr("tts")
    before = metric_values(hibari)
    first = await synthesize(addr, config(), Request(text=GREETING), end())
    second = await synthesize(addr, config(), Request(text=GREETING), end())
    after = metric_values(hibari)
    [one], [two] = first.of("segment"), second.of("segment")
    assert not one.cache_hit and two.cache_hit
    assert one.engine == two.engine == "hibari" and not one.is_fallback and not two.is_fallback
    assert two.synthesis_ms == 0 and second.pcm == first.pcm
    assert [w.start_ms for w in two.words] == [w.start_ms for w in one.words]
    assert after["voxmesh_tts_cache_hits_total"] == before["voxmesh_tts_cache_hits_total"] + 1
    assert after["voxmesh_tts_cache_misses_total"] >= before["voxmesh_tts_cache_misses_total"] + 1
    assert after["voxmesh_tts_cache_saved_seconds_total"] > (
        before["voxmesh_tts_cache_saved_seconds_total"])
    assert after["voxmesh_tts_cache_bytes"] >= len(first.pcm)
    # Another rate is another entry: a miss, not the 24 kHz audio.
    other = await synthesize(addr, config(rate=16000), Request(text=GREETING), end())
    assert not other.of("segment")[0].cache_hit


async def test_word_timings_cover_every_word_in_order(hibari: Stack) -> None:
    """Estimated timings: monotonic, inside their segment, one per word, segments in order."""
    spoken = await synthesize(hibari.addr("tts"), config(),
                              Request(text="Your order has shipped. It arrives on Tuesday."), end())
    segments = spoken.of("segment")
    assert [s.text for s in segments] == ["Your order has shipped.", "It arrives on Tuesday."]
    for segment in segments:
        assert segment.timing_source == "estimated"  # hibari exposes no durations
        assert [w.word for w in segment.words] == re.findall(r"[\w']+", segment.text)
        start_ms = segment.sample_offset * 1000 / 24000
        end_ms = (segment.sample_offset + segment.sample_count) * 1000 / 24000
        previous = start_ms
        for word in segment.words:
            assert previous - 1 <= word.start_ms < word.end_ms <= end_ms + 1, word
            previous = word.end_ms
    assert segments[1].words[0].start_ms > segments[0].words[-1].end_ms
    # Each chunk names the words it overlaps; together the chunks name every word.
    named = []
    for chunk in spoken.of("audio"):
        begin = chunk.sample_offset * 1000 / 24000
        finish = begin + len(chunk.audio) / 2 * 1000 / 24000
        assert all(w.start_ms < finish and w.end_ms > begin for w in chunk.words)
        named += [(chunk.segment_index, w.word, w.start_ms) for w in chunk.words]
    every = [(s.segment_index, w.word, w.start_ms) for s in segments for w in s.words]
    assert sorted(set(named), key=named.index) == every
