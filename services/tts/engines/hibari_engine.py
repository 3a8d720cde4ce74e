"""hibari: a 7.9 MB ONNX voice distilled from Kokoro-82M ``af_heart``, native English, 24 kHz."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.tts.engines.base import EngineCapabilities, EngineUnavailable, TtsEngine, VoiceInfo


class HibariEngine(TtsEngine):
    """Every hibari voice present on disk ("heart" ships in the wheel); never downloads others."""

    name = "hibari"
    capabilities = EngineCapabilities(native_sample_rate=24000)

    def __init__(self) -> None:
        super().__init__()
        self._models: dict[str, Any] = {}
        self._voices: list[VoiceInfo] = []

    def load(self) -> None:
        """Load one ONNX session per locally present voice, and the G2P, off the loop."""
        try:
            from hibari import Hibari
            from hibari.voices import DEFAULT, VOICES, voice_path
        except ImportError as error:
            raise EngineUnavailable(
                "engine 'hibari' needs hibari-tts (pip install 'voxmesh[tts]')"
            ) from error
        for name in sorted(VOICES, key=lambda n: (n != DEFAULT, n)):
            try:
                # download_missing=False: a voice not on disk is simply not offered.
                path = voice_path(name, download_missing=False)
            except FileNotFoundError:
                continue
            self._models[name] = Hibari(voice=name, model=path)
            self._voices.append(VoiceInfo(name, VOICES[name]["language"]))
        if not self._voices:
            raise EngineUnavailable("engine 'hibari': no voice found on disk; reinstall hibari-tts")

    def voices(self) -> list[VoiceInfo]:
        """Locally present voices, "heart" first."""
        return list(self._voices)

    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Speak ``text`` with a hibari voice at 24 kHz."""
        audio = self._models[voice](text, speed=speed)
        return np.asarray(audio, dtype=np.float32)
