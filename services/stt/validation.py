"""Checks a RecognitionConfig and resolves it against the server defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.stt.engine import WhisperEngine
from services.stt.errors import InvalidArgument
from services.stt.vad import VadParams
from voxmesh.audio import AudioFormatError, validate_sample_rate
from voxmesh.config import SttSettings
from voxmesh.v1 import audio_pb2, stt_pb2

_ENCODINGS = (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, audio_pb2.AUDIO_ENCODING_LINEAR16)
# Re-decoding more often than this only burns CPU: partial decodes take a few hundred ms.
MIN_PARTIAL_INTERVAL_MS = 100


@dataclass(frozen=True)
class InputFormat:
    """Validated input audio format."""

    sample_rate: int
    channels: int


@dataclass(frozen=True)
class StreamConfig:
    """A stream's configuration with every default filled in."""

    audio: InputFormat
    language: str
    enable_partials: bool
    partial_interval_ms: int
    vad: VadParams
    final_pad_ms: int
    speculative_final: bool


def input_format(fmt: audio_pb2.AudioFormat) -> InputFormat:
    """Validate ``config.audio_format``; LINEAR16 is assumed when the encoding is unset."""
    field = "config.audio_format"
    if fmt.encoding not in _ENCODINGS:
        raise InvalidArgument(
            f"{field}.encoding: unsupported encoding {fmt.encoding} "
            "(supported: AUDIO_ENCODING_LINEAR16)"
        )
    try:
        rate = validate_sample_rate(fmt.sample_rate_hertz, f"{field}.sample_rate_hertz")
    except AudioFormatError as error:
        raise InvalidArgument(str(error)) from None
    if fmt.channel_count not in (0, 1, 2):
        raise InvalidArgument(
            f"{field}.channel_count: unsupported channel count {fmt.channel_count} "
            "(supported: 1 or 2; 0 means 1)"
        )
    return InputFormat(rate, fmt.channel_count or 1)


def language(config: stt_pb2.RecognitionConfig, engine: WhisperEngine) -> str:
    """Whisper language for ``config.language_code`` (empty means English)."""
    try:
        return engine.language_for(config.language_code)
    except ValueError as error:
        raise InvalidArgument(f"config.language_code: {error}") from None


def _vad_params(vad: stt_pb2.VadConfig, settings: SttSettings) -> VadParams:
    threshold = vad.threshold or settings.vad_threshold
    if math.isnan(threshold) or not 0.0 < threshold < 1.0:
        raise InvalidArgument(f"config.vad.threshold: {vad.threshold} is not between 0 and 1")
    return VadParams(
        threshold=threshold,
        start_ms=vad.start_ms or settings.vad_start_ms,
        stop_ms=vad.stop_ms or settings.vad_stop_ms,
        min_speech_ms=vad.min_speech_ms or settings.vad_min_speech_ms,
    )


def stream_config(
    config: stt_pb2.RecognitionConfig, settings: SttSettings, engine: WhisperEngine
) -> StreamConfig:
    """Validate a StreamingRecognize config; zero fields take the server defaults."""
    interval = config.partial_interval_ms or settings.partial_interval_ms
    if interval < MIN_PARTIAL_INTERVAL_MS:
        raise InvalidArgument(
            f"config.partial_interval_ms: {interval} is below the minimum "
            f"{MIN_PARTIAL_INTERVAL_MS} ms"
        )
    return StreamConfig(
        audio=input_format(config.audio_format),
        language=language(config, engine),
        enable_partials=config.enable_partial_results,
        partial_interval_ms=interval,
        vad=_vad_params(config.vad, settings),
        final_pad_ms=settings.final_pad_ms,
        speculative_final=settings.speculative_final,
    )
