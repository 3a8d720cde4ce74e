"""faster-whisper behind a small synchronous interface: 16 kHz float32 in, text and words out.

Every method here blocks; callers run them in a thread (see ``scheduler.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from faster_whisper import WhisperModel

from voxmesh.config import SttSettings
from voxmesh.models import whisper_tiny_en_path

log = logging.getLogger(__name__)
# faster-whisper logs every decode at INFO; that is several lines per second per stream.
logging.getLogger("faster_whisper").setLevel(logging.WARNING)

SAMPLE_RATE = 16_000
# Whisper's decoder holds 448 positions; the prompt takes a few.
_MAX_NEW_TOKENS = 400


@dataclass(frozen=True)
class Word:
    """One recognised word, in seconds from the start of the decoded audio."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class DecodeResult:
    """What one decode produced and how long it took."""

    text: str
    words: tuple[Word, ...]
    decode_ms: int
    audio_ms: int


class WhisperEngine:
    """A loaded Whisper model and the decoding options the service uses."""

    def __init__(self, settings: SttSettings) -> None:
        self._settings = settings
        self._model: WhisperModel | None = None

    @property
    def model(self) -> WhisperModel:
        """The loaded model; raises if :meth:`load` has not run."""
        if self._model is None:
            raise RuntimeError("WhisperEngine.load() has not run")
        return self._model

    def load(self) -> None:
        """Load the configured model (or the bundled tiny.en) and run one warm-up decode."""
        s = self._settings
        source = s.model or str(whisper_tiny_en_path())
        started = time.perf_counter()
        self._model = WhisperModel(
            source,
            device=s.device,
            compute_type=s.compute_type,
            cpu_threads=s.cpu_threads,
            # CTranslate2 serialises calls beyond num_workers, so match the decode slots.
            num_workers=max(1, s.max_concurrent_decodes),
        )
        # The first decode allocates buffers and picks kernels; pay that before SERVING.
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), "en", word_timestamps=True)
        log.info("whisper loaded", extra={"model": source,
                                          "seconds": round(time.perf_counter() - started, 3)})

    def language_for(self, language_code: str) -> str:
        """Map a BCP-47 code ("en-US") to a Whisper language, or raise ValueError."""
        language = (language_code.split("-")[0].split("_")[0] or "en").lower()
        supported = self.model.supported_languages
        if language not in supported:
            if len(supported) == 1:
                raise ValueError(f"this model only recognises {supported[0]!r}")
            raise ValueError(f"language {language!r} is not supported by the model")
        return language

    def transcribe(self, audio: np.ndarray, language: str, word_timestamps: bool) -> DecodeResult:
        """Decode ``audio`` (float32 mono 16 kHz) in one go.

        Args:
            audio: The samples to decode.
            language: A Whisper language code from :meth:`language_for`.
            word_timestamps: True for finals (word timings); False for fast partials.
        """
        audio_s = len(audio) / SAMPLE_RATE
        started = time.perf_counter()
        segments, _info = self.model.transcribe(
            audio,
            language=language,
            beam_size=self._settings.beam_size,
            # One pass at temperature 0: fallback re-decodes would multiply the latency.
            temperature=0.0,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=not word_timestamps,
            word_timestamps=word_timestamps,
            # Bounds the cost of a repetition loop to what the audio could plausibly hold.
            max_new_tokens=min(_MAX_NEW_TOKENS, 24 + int(8 * min(audio_s, 30.0))),
        )
        texts: list[str] = []
        words: list[Word] = []
        for segment in segments:  # a generator: decoding happens while iterating
            texts.append(segment.text)
            for w in segment.words or ():
                if w.word.strip():
                    words.append(Word(w.word.strip(), float(w.start), float(w.end)))
        return DecodeResult(
            text="".join(texts).strip(),
            words=tuple(words),
            decode_ms=round((time.perf_counter() - started) * 1000),
            audio_ms=round(audio_s * 1000),
        )
