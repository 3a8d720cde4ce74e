"""espeak-ng: a formant synthesiser with no model files, so the voice of last resort."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from services.tts.engines.base import EngineCapabilities, EngineUnavailable, TtsEngine, VoiceInfo

#: Voice id -> (BCP-47 code, espeak-ng voice name); American first (the default).
VOICES: dict[str, tuple[str, str]] = {
    "espeak-en-us": ("en-US", "en-us"),
    "espeak-en-gb": ("en-GB", "en-gb"),
}
#: espeak-ng's speaking rate at speed 1.0, in words per minute.
BASE_WPM = 175
NATIVE_RATE = 22050
# A segment is at most a few hundred characters; espeak-ng speaks that in milliseconds.
TIMEOUT_S = 30.0


def wav_samples(wav: bytes) -> np.ndarray:
    """Float32 samples of espeak-ng's PCM16 WAV output.

    espeak-ng writing to a pipe cannot seek back to fill in the RIFF sizes, so
    they are not trusted: everything after the ``data`` chunk header is audio.

    Raises:
        ValueError: ``wav`` is not a PCM16 mono RIFF/WAVE file.
    """
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV file")
    position = 12
    while position + 8 <= len(wav):
        chunk, size = wav[position : position + 4], int.from_bytes(wav[position + 4 : position + 8],
                                                                   "little")
        body = position + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(wav[body + 2 : body + 4], "little")
            bits = int.from_bytes(wav[body + 14 : body + 16], "little")
            if (channels, bits) != (1, 16):
                raise ValueError(f"espeak-ng wrote {channels} channels of {bits} bits")
        elif chunk == b"data":
            data = wav[body : body + (len(wav) - body) // 2 * 2]
            return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        position = body + size + (size & 1)
    raise ValueError("espeak-ng's WAV has no data chunk")


class EspeakEngine(TtsEngine):
    """espeak-ng run as a subprocess per segment (Debian package ``espeak-ng``)."""

    name = "espeak"
    capabilities = EngineCapabilities(native_sample_rate=NATIVE_RATE)

    def __init__(self) -> None:
        super().__init__()
        self._binary: str | None = None

    def load(self) -> None:
        """Find the espeak-ng binary (blocking, instant)."""
        self._binary = shutil.which("espeak-ng")
        if self._binary is None:
            raise EngineUnavailable("engine 'espeak' needs espeak-ng (apt-get install espeak-ng)")

    def voices(self) -> list[VoiceInfo]:
        """The English espeak-ng voices, American first."""
        return [VoiceInfo(voice, language) for voice, (language, _) in VOICES.items()]

    def voice_for(self, language_code: str) -> str:
        """The espeak voice closest to a BCP-47 language (British or else American)."""
        return "espeak-en-gb" if language_code.lower().startswith("en-gb") else "espeak-en-us"

    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Speak ``text`` at 22.05 kHz; the text goes in on stdin, never as an argument."""
        if self._binary is None:
            raise EngineUnavailable("engine 'espeak' is not loaded")
        wpm = str(round(BASE_WPM * speed))
        result = subprocess.run(
            [self._binary, "-v", VOICES[voice][1], "-s", wpm, "--stdout", "--stdin"],
            input=text.encode(), capture_output=True, timeout=TIMEOUT_S, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"espeak-ng exited with {result.returncode}: {result.stderr.decode()[-200:]}")
        return wav_samples(result.stdout)
