"""TTS engines behind one interface, and the registry that builds them from settings."""

from __future__ import annotations

from collections.abc import Callable

from services.tts.engines.base import (
    EngineCapabilities,
    EngineUnavailable,
    Synthesis,
    TtsEngine,
    VoiceInfo,
    WordSpan,
)
from voxmesh.config import TtsSettings

__all__ = [
    "EngineCapabilities", "EngineUnavailable", "Synthesis", "TtsEngine", "VoiceInfo", "WordSpan",
    "build_engines", "build_fallback",
]


def _hibari(settings: TtsSettings) -> TtsEngine:
    from services.tts.engines.hibari_engine import HibariEngine

    return HibariEngine()


def _kokoro_onnx(settings: TtsSettings) -> TtsEngine:
    from services.tts.engines.kokoro_onnx_engine import KokoroOnnxEngine

    return KokoroOnnxEngine(settings)


def _kokoro(settings: TtsSettings) -> TtsEngine:
    from services.tts.engines.kokoro_engine import KokoroEngine

    return KokoroEngine(settings)


def _espeak(settings: TtsSettings) -> TtsEngine:
    from services.tts.engines.espeak_engine import EspeakEngine

    return EspeakEngine()


_FACTORIES: dict[str, Callable[[TtsSettings], TtsEngine]] = {
    "hibari": _hibari,
    "kokoro-onnx": _kokoro_onnx,
    "kokoro": _kokoro,
    "espeak": _espeak,
}


def build_engines(settings: TtsSettings) -> list[TtsEngine]:
    """Create (not load) the engines ``VOXMESH_TTS_ENGINES`` names, in order.

    Raises:
        EngineUnavailable: An engine cannot run in this installation.
    """
    return [_FACTORIES[name](settings) for name in settings.engine_names]


def build_fallback(settings: TtsSettings, engines: list[TtsEngine]) -> TtsEngine | None:
    """The ``VOXMESH_TTS_FALLBACK_ENGINE`` engine (shared if also listed), or None."""
    name = settings.fallback_engine
    if not name:
        return None
    for engine in engines:
        if engine.name == name:
            return engine
    return _FACTORIES[name](settings)
