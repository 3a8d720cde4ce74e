"""Turn a SynthesisConfig into a checked StreamConfig, or InvalidArgument naming the field."""

from __future__ import annotations

from dataclasses import dataclass

from services.tts.catalog import Voice, VoiceCatalog
from services.tts.errors import InvalidArgument
from voxmesh.config import TtsSettings
from voxmesh.v1 import tts_pb2

#: Output rates a client may ask for.
OUTPUT_SAMPLE_RATES: tuple[int, ...] = (16000, 24000, 48000)
DEFAULT_SAMPLE_RATE = 24000
MIN_CHUNK_MS, MAX_CHUNK_MS = 10, 1000


@dataclass(frozen=True)
class StreamConfig:
    """A validated stream configuration, defaults applied."""

    voice: Voice
    speed: float
    sample_rate: int
    chunk_ms: int

    @property
    def chunk_samples(self) -> int:
        """Samples per audio chunk at the output rate."""
        return self.sample_rate * self.chunk_ms // 1000


def stream_config(
    config: tts_pb2.SynthesisConfig, settings: TtsSettings, catalog: VoiceCatalog
) -> StreamConfig:
    """Check ``config`` and fill in defaults; never falls back silently.

    Raises:
        InvalidArgument: A field is out of range; the message names it.
    """
    voice_id = config.voice or catalog.default
    voice = catalog.get(voice_id)
    if voice is None:
        raise InvalidArgument(
            f"config.voice: unknown voice {voice_id!r} (installed: {catalog.installed()})"
        )
    language = config.language_code.lower()
    spoken = voice.info.language_code.lower()
    if language and not (spoken == language or spoken.startswith(language + "-")):
        raise InvalidArgument(
            f"config.language_code: voice {voice_id!r} speaks {voice.info.language_code}, "
            f"not {config.language_code}"
        )
    speed = config.speed or 1.0
    caps = voice.engine.capabilities
    if not caps.min_speed <= speed <= caps.max_speed:
        raise InvalidArgument(
            f"config.speed: {config.speed:g} is outside {caps.min_speed:g}..{caps.max_speed:g}"
        )
    rate = config.sample_rate_hertz or DEFAULT_SAMPLE_RATE
    if rate not in OUTPUT_SAMPLE_RATES:
        raise InvalidArgument(
            f"config.sample_rate_hertz: unsupported rate {rate} Hz "
            f"(supported: {', '.join(map(str, OUTPUT_SAMPLE_RATES))})"
        )
    chunk_ms = config.chunk_duration_ms or settings.chunk_ms
    if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
        raise InvalidArgument(
            f"config.chunk_duration_ms: {chunk_ms} is outside {MIN_CHUNK_MS}..{MAX_CHUNK_MS}"
        )
    return StreamConfig(voice, speed, rate, chunk_ms)
