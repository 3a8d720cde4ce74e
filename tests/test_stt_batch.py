"""Batched decoding: finals of concurrent streams share one Whisper call."""

from __future__ import annotations

import asyncio

from tests.conftest import StackFactory
from tests.support import speak, word_error_rate
from tests.test_stt import collect, of_kind, requests_for, scrape

QUESTIONS = (
    "What time does the service department open on Saturday?",
    "Please book an oil change for next Tuesday.",
    "How much does a new set of tires cost?",
    "Can I pick up my car after six tonight?",
)


def histogram_counts(text: str, name: str, kind: str) -> tuple[float, float]:
    """(observations <= 1, all observations) of a ``kind``-labelled histogram."""
    values = {}
    for line in text.splitlines():
        if line.startswith(name) and f'kind="{kind}"' in line:
            values[line.split()[0]] = float(line.split()[-1])
    return (values[f'{name}_bucket{{kind="{kind}",le="1.0"}}'],
            values[f'{name}_count{{kind="{kind}"}}'])


async def test_concurrent_streams_are_decoded_in_batches(stack_factory: StackFactory) -> None:
    """Four streams at once all get correct finals, and some final batches hold several."""
    # A wider batching window than the default 10 ms, so that the four finals meet
    # even when this shared machine schedules the streams unevenly.
    stack = stack_factory(services=("stt",), extra_env={"VOXMESH_STT_BATCH_WAIT_MS": "150"})
    addr = stack.addr("stt")
    clips = [speak(q, 16000) for q in QUESTIONS]
    results = await asyncio.gather(*(collect(addr, requests_for(pcm, 16000)) for pcm in clips))
    for question, events in zip(QUESTIONS, results, strict=True):
        finals = of_kind(events, "final")
        assert len(finals) == 1, events
        assert word_error_rate(question, finals[0].final.text) <= 0.25, finals[0].final.text
    text = await asyncio.to_thread(scrape, stack.metrics_ports["stt"])
    singles, batches = histogram_counts(text, "voxmesh_stt_batch_size", "final")
    assert batches >= 1 and singles < batches, text
