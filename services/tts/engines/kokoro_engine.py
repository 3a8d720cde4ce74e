"""hexgrad Kokoro-82M in PyTorch (the ``kokoro`` package), from local weights only.

Untested against real weights: neither the package (it needs torch) nor the
weights are installable offline here. The package is imported inside
:meth:`KokoroEngine.load`, so nothing else in the service depends on it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from services.tts.engines.base import (
    EngineCapabilities,
    EngineUnavailable,
    Synthesis,
    TtsEngine,
    VoiceInfo,
    WordSpan,
)
from voxmesh.config import TtsSettings

# Kokoro voice ids start with a language letter (KPipeline's lang_code).
_LANGUAGES = {
    "a": "en-US", "b": "en-GB", "e": "es", "f": "fr", "h": "hi", "i": "it", "j": "ja",
    "p": "pt-BR", "z": "zh",
}


def weights_files(directory: str) -> tuple[Path, Path, Path]:
    """(model .pth, config.json, voices dir) in ``directory``.

    Raises:
        EngineUnavailable: Something is missing; the message names the setting and the file.
    """
    setting = "VOXMESH_TTS_KOKORO_WEIGHTS_PATH"
    if not directory:
        raise EngineUnavailable(
            f"engine 'kokoro' needs {setting}: a directory with the model .pth, config.json "
            "and voices/*.pt (weights are never downloaded)"
        )
    root = Path(directory)
    if not root.is_dir():
        raise EngineUnavailable(f"{setting}: {root} is not a directory")
    models = sorted(root.glob("*.pth"))
    if not models:
        raise EngineUnavailable(f"{setting}: no model .pth file in {root}")
    config, voices = root / "config.json", root / "voices"
    if not config.is_file():
        raise EngineUnavailable(f"{setting}: {config} is missing")
    if not any(voices.glob("*.pt")):
        raise EngineUnavailable(f"{setting}: no voice .pt files in {voices}")
    return models[0], config, voices


class KokoroEngine(TtsEngine):
    """KModel + one KPipeline per language, voices from ``<weights>/voices/*.pt``."""

    name = "kokoro"
    capabilities = EngineCapabilities(native_sample_rate=24000)

    def __init__(self, settings: TtsSettings) -> None:
        """Check the weights and the package at start-up, without importing it.

        Raises:
            EngineUnavailable: The weights or the ``kokoro`` package are missing.
        """
        super().__init__()
        self._model_path, self._config_path, voices = weights_files(
            settings.kokoro_weights_path)
        if importlib.util.find_spec("kokoro") is None:
            raise EngineUnavailable(
                "engine 'kokoro' needs the `kokoro` package installed (pip install kokoro; "
                "it pulls in torch); VOXMESH_TTS_KOKORO_WEIGHTS_PATH is set"
            )
        self._voice_files = {path.stem: path for path in sorted(voices.glob("*.pt"))}
        self._model: Any = None
        self._pipelines: dict[str, Any] = {}
        self._styles: dict[str, Any] = {}

    def load(self) -> None:
        """Load the model and every voice from local files (blocking)."""
        os.environ["HF_HUB_OFFLINE"] = "1"  # any attempt to reach the hub fails at once
        import torch
        from kokoro import KModel, KPipeline

        self._model = KModel(
            config=os.fspath(self._config_path), model=os.fspath(self._model_path)
        ).eval()
        for voice, path in self._voice_files.items():
            lang = voice[0]
            if lang not in self._pipelines:
                self._pipelines[lang] = KPipeline(lang_code=lang, model=self._model)
            self._styles[voice] = torch.load(path, weights_only=True)

    def voices(self) -> list[VoiceInfo]:
        """Every voice file, American English first."""
        names = sorted(self._voice_files, key=lambda v: (v != "af_heart", v[0] != "a", v))
        return [VoiceInfo(v, _LANGUAGES.get(v[0], "en-US")) for v in names]

    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Speak ``text`` at 24 kHz."""
        return self.synthesize_timed(text, voice, speed).audio

    def synthesize_timed(self, text: str, voice: str, speed: float) -> Synthesis:
        """Speak ``text``; English results carry the model's word timestamps."""
        parts: list[np.ndarray] = []
        words: list[WordSpan] = []
        offset = 0.0
        for result in self._pipelines[voice[0]](text, voice=self._styles[voice], speed=speed):
            if result.audio is None:
                continue
            audio = np.asarray(result.audio.detach().cpu().numpy(), dtype=np.float32)
            for token in result.tokens or []:
                if token.start_ts is not None and token.end_ts is not None and token.text.strip():
                    words.append(WordSpan(token.text, offset + token.start_ts,
                                          offset + token.end_ts))
            parts.append(audio)
            offset += len(audio) / self.native_sample_rate
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return Synthesis(audio, words or None)
