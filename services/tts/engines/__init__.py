"""TTS engines behind one interface, and the registry that builds them from settings."""

from __future__ import annotations

from collections.abc import Callable

from services.tts.engines.base import EngineCapabilities, EngineUnavailable, TtsEngine, VoiceInfo
from voxmesh.config import TtsSettings

__all__ = [
    "EngineCapabilities", "EngineUnavailable", "TtsEngine", "VoiceInfo", "build_engines",
]


def _hibari(settings: TtsSettings) -> TtsEngine:
    from services.tts.engines.hibari_engine import HibariEngine

    return HibariEngine()


def _kokoro_onnx(settings: TtsSettings) -> TtsEngine:
    from services.tts.engines.kokoro_onnx_engine import KokoroOnnxEngine

    return KokoroOnnxEngine(settings)


def _kokoro(settings: TtsSettings) -> TtsEngine:
    # The hexgrad PyTorch engine is not part of this build: its weights are not on PyPI,
    # so it could never be exercised offline.
    raise EngineUnavailable(
        "VOXMESH_TTS_ENGINES: engine 'kokoro' (hexgrad Kokoro, PyTorch) is not available in "
        "this build; it needs the `kokoro` package installed and VOXMESH_TTS_KOKORO_WEIGHTS_PATH "
        "pointing at its weights. Use hibari or kokoro-onnx."
    )


_FACTORIES: dict[str, Callable[[TtsSettings], TtsEngine]] = {
    "hibari": _hibari,
    "kokoro-onnx": _kokoro_onnx,
    "kokoro": _kokoro,
}


def build_engines(settings: TtsSettings) -> list[TtsEngine]:
    """Create (not load) the engines ``VOXMESH_TTS_ENGINES`` names, in order.

    Raises:
        EngineUnavailable: An engine cannot run in this installation.
    """
    return [_FACTORIES[name](settings) for name in settings.engine_names]
