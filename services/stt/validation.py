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
# The turn model needs at least one VAD window of silence to be asked at a pause.
MIN_TURN_SILENCE_MS = 32
# Past a minute of silence the user has left; a bound keeps offsets and buffers sane.
MAX_TURN_SILENCE_MS = 60_000
_MAX_VAD_START_MS = 5_000
_MAX_VAD_STOP_MS = 10_000


@dataclass(frozen=True)
class InputFormat:
    """Validated input audio format."""

    sample_rate: int
    channels: int


@dataclass(frozen=True)
class TurnParams:
    """How a stream decides that the user's turn is over."""

    semantic: bool
    """Ask the Smart Turn model (requested and loaded); False = every utterance ends its turn."""
    threshold: float
    turn_silence_ms: int
    max_silence_ms: int


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
    turn: TurnParams


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
    params = VadParams(
        threshold=threshold,
        start_ms=vad.start_ms or settings.vad_start_ms,
        stop_ms=vad.stop_ms or settings.vad_stop_ms,
        min_speech_ms=vad.min_speech_ms or settings.vad_min_speech_ms,
    )
    for name, value, high in (("start_ms", params.start_ms, _MAX_VAD_START_MS),
                              ("stop_ms", params.stop_ms, _MAX_VAD_STOP_MS),
                              ("min_speech_ms", params.min_speech_ms, MAX_TURN_SILENCE_MS)):
        if value > high:
            raise InvalidArgument(f"config.vad.{name}: {value} is above the maximum {high} ms")
    return params


def _turn_params(
    config: stt_pb2.RecognitionConfig, vad: VadParams, settings: SttSettings, model_loaded: bool
) -> TurnParams:
    turn = config.turn
    field = "config.turn"
    threshold = turn.completion_threshold or settings.turn_completion_threshold
    if math.isnan(threshold) or not 0.0 < threshold <= 1.0:
        raise InvalidArgument(
            f"{field}.completion_threshold: {turn.completion_threshold} is not between 0 and 1"
        )
    max_silence = turn.max_silence_ms or max(settings.turn_max_silence_ms, vad.stop_ms)
    if not vad.stop_ms <= max_silence <= MAX_TURN_SILENCE_MS:
        raise InvalidArgument(
            f"{field}.max_silence_ms: {max_silence} is outside {vad.stop_ms}..{MAX_TURN_SILENCE_MS}"
            " (at least config.vad.stop_ms)"
        )
    turn_silence = turn.turn_silence_ms or min(settings.turn_silence_ms, max_silence)
    if not MIN_TURN_SILENCE_MS <= turn_silence <= max_silence:
        raise InvalidArgument(
            f"{field}.turn_silence_ms: {turn_silence} is outside {MIN_TURN_SILENCE_MS}.."
            f"{max_silence} (at most max_silence_ms)"
        )
    requested = (
        turn.enable_semantic_turn if turn.HasField("enable_semantic_turn")
        else settings.enable_semantic_turn
    )
    return TurnParams(
        semantic=requested and model_loaded,
        threshold=threshold,
        turn_silence_ms=turn_silence,
        max_silence_ms=max_silence,
    )


def stream_config(
    config: stt_pb2.RecognitionConfig,
    settings: SttSettings,
    engine: WhisperEngine,
    turn_model_loaded: bool = False,
) -> StreamConfig:
    """Validate a StreamingRecognize config; zero fields take the server defaults.

    ``turn_model_loaded`` says whether semantic end of turn can be honoured;
    without the model a stream silently gets silence-only turn ends.
    """
    interval = config.partial_interval_ms or settings.partial_interval_ms
    if interval < MIN_PARTIAL_INTERVAL_MS:
        raise InvalidArgument(
            f"config.partial_interval_ms: {interval} is below the minimum "
            f"{MIN_PARTIAL_INTERVAL_MS} ms"
        )
    vad = _vad_params(config.vad, settings)
    return StreamConfig(
        audio=input_format(config.audio_format),
        language=language(config, engine),
        enable_partials=config.enable_partial_results,
        partial_interval_ms=interval,
        vad=vad,
        final_pad_ms=settings.final_pad_ms,
        speculative_final=settings.speculative_final,
        turn=_turn_params(config, vad, settings, turn_model_loaded),
    )
