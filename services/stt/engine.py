"""faster-whisper behind a small synchronous interface: 16 kHz float32 in, text and words out.

Every method here blocks; callers run them in a thread (see ``scheduler.py``).

Batching: faster-whisper 1.2.1's ``BatchedInferencePipeline.forward`` encodes and
decodes a stack of 30 s feature windows in one CTranslate2 call (word timings
included, aligned in one batched call too). Each utterance is one window, so
several streams' utterances become one batch; audio longer than 30 s goes
through the sequential path, which slides over it.

Window length: Whisper was trained on 30 s windows and faster-whisper pads
every clip to one, but CTranslate2's encoder takes shorter inputs, and its cost
grows faster than linearly with the window (tiny.en on 2 cores: 244 ms for
30 s, 32 ms for 10 s). The window ends ``window_pad_s`` whole seconds after the
audio, filled with real silence (zero samples before the log-mel, as the
sequential path does; faster-whisper's batched path pads the features with
zeros, which is not what silence looks like to the model). ``bench/stt_window.py``
(27 espeak-ng clips cut like streamed finals, tiny.en greedy): 30 s, 17.0% WER and
394 ms per decode at the median; 3 s, 24.2% and 80 ms; 1 s, 30.2% and 71 ms.
The default buys the latency; ``window_pad_s=30`` buys the accuracy.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import (
    BatchedInferencePipeline,
    TranscriptionOptions,
    get_suppressed_tokens,
)

from services.stt import metrics
from voxmesh.config import SttSettings
from voxmesh.models import whisper_tiny_en_path

log = logging.getLogger(__name__)
# faster-whisper logs every decode at INFO; that is several lines per second per stream.
logging.getLogger("faster_whisper").setLevel(logging.WARNING)

SAMPLE_RATE = 16_000
# Whisper's decoder holds 448 positions; the prompt takes a few.
_MAX_NEW_TOKENS = 400
_WINDOW_SAMPLES = 30 * SAMPLE_RATE
_HOP_SAMPLES = 160  # Whisper's mel hop: 10 ms
_FRAMES_PER_SECOND = SAMPLE_RATE // _HOP_SAMPLES
_FULL_WINDOW_FRAMES = _WINDOW_SAMPLES // _HOP_SAMPLES
# A transcript ending this far past its audio was made up in the padding: on 234 decodes of
# the bench corpus segment ends overran by at most 0.26 s, and a repetition by 0.49 s.
_OVERRUN_S = 0.3
# faster-whisper's defaults: a window whose decode looks like this is silence, not words.
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
# A segment must start at least this long before the audio's end to hold any of its speech.
_LAST_SEGMENT_MIN_S = 0.1
_PREPEND_PUNCTUATIONS = "\"'“¿([{-"
_APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


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
        self.transcribe_batch([np.zeros(SAMPLE_RATE, dtype=np.float32)], "en", word_timestamps=True)
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
            max_new_tokens=_max_new_tokens(audio_s),
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

    def transcribe_batch(
        self, audios: list[np.ndarray], language: str, word_timestamps: bool
    ) -> list[DecodeResult]:
        """Decode several clips, those up to 30 s in one batched call; results in order."""
        results: list[DecodeResult | None] = [None] * len(audios)
        short = [i for i, audio in enumerate(audios) if len(audio) <= _WINDOW_SAMPLES]
        for i, audio in enumerate(audios):
            if len(audio) > _WINDOW_SAMPLES:
                results[i] = self.transcribe(audio, language, word_timestamps)
        if short:
            decoded = self._decode_windows([audios[i] for i in short], language, word_timestamps)
            for i, result in zip(short, decoded, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def _decode_windows(
        self, audios: list[np.ndarray], language: str, word_timestamps: bool
    ) -> list[DecodeResult]:
        """One batched encode + decode of clips of at most 30 s each.

        A clip whose transcript runs past its audio (Whisper "heard" words in the silence
        the short window adds: it repeats the utterance there) is decoded again with the
        full 30 s window.
        """
        frames = self._window_frames(max(len(a) for a in audios))
        results, overran = self._decode_at(audios, language, word_timestamps, frames)
        if overran and frames < _FULL_WINDOW_FRAMES:
            metrics.FULL_WINDOW_RETRIES.inc(len(overran))
            again, _ = self._decode_at([audios[i] for i in overran], language, word_timestamps,
                                       _FULL_WINDOW_FRAMES)
            for i, result in zip(overran, again, strict=True):
                results[i] = replace(result, decode_ms=result.decode_ms + results[i].decode_ms)
        return results

    def _decode_at(
        self, audios: list[np.ndarray], language: str, word_timestamps: bool, frames: int
    ) -> tuple[list[DecodeResult], list[int]]:
        """Decode in windows of ``frames``; also returns the indices of overrunning clips."""
        model = self.model
        started = time.perf_counter()
        window = frames * _HOP_SAMPLES
        features = np.stack([model.feature_extractor(np.pad(a, (0, window - len(a))))[..., :frames]
                             for a in audios])
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                              task="transcribe", language=language)
        longest_s = max(len(a) for a in audios) / SAMPLE_RATE
        options = TranscriptionOptions(
            beam_size=self._settings.beam_size, best_of=1, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0,
            log_prob_threshold=_LOG_PROB_THRESHOLD, no_speech_threshold=_NO_SPEECH_THRESHOLD,
            compression_ratio_threshold=None, condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5, temperatures=[0.0], initial_prompt=None,
            prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=not word_timestamps, max_initial_timestamp=1.0,
            word_timestamps=word_timestamps, prepend_punctuations=_PREPEND_PUNCTUATIONS,
            append_punctuations=_APPEND_PUNCTUATIONS, multilingual=False,
            max_new_tokens=_max_new_tokens(longest_s), clip_timestamps="0",
            hallucination_silence_threshold=None, hotwords=None,
        )
        metadata = [{"offset": 0.0, "duration": len(a) / SAMPLE_RATE, "segments": []}
                    for a in audios]
        # A fresh pipeline per batch: it keeps state (last_speech_timestamp) between calls.
        outputs = BatchedInferencePipeline(model).forward(features, tokenizer, metadata, options)
        decode_ms = round((time.perf_counter() - started) * 1000)
        results, overran = [], []
        for i, (audio, segments) in enumerate(zip(audios, outputs, strict=True)):
            audio_s = len(audio) / SAMPLE_RATE
            if runs_past_audio(segments, audio_s):
                overran.append(i)
            texts: list[str] = []
            words: list[Word] = []
            for segment in spoken_segments(segments, audio_s):
                texts.append(segment["text"])
                for w in segment.get("words") or ():
                    if w["word"].strip():
                        words.append(Word(w["word"].strip(), float(w["start"]), float(w["end"])))
            results.append(DecodeResult(
                text="".join(texts).strip(),
                words=tuple(words),
                decode_ms=decode_ms,
                audio_ms=round(len(audio) * 1000 / SAMPLE_RATE),
            ))
        return results, overran

    def _window_frames(self, longest_samples: int) -> int:
        """Mel frames of the window for a batch whose longest clip has ``longest_samples``."""
        seconds = math.ceil(longest_samples / SAMPLE_RATE) + self._settings.window_pad_s
        return min(seconds * _FRAMES_PER_SECOND, _FULL_WINDOW_FRAMES)


def runs_past_audio(segments: list[dict[str, Any]], audio_s: float) -> bool:
    """True when a decoded segment ends well after the audio: words made up in the padding."""
    return any(segment["end"] > audio_s + _OVERRUN_S for segment in segments)


def spoken_segments(segments: list[dict[str, Any]], audio_s: float) -> list[dict[str, Any]]:
    """The segments of one decoded window that hold speech of the audio.

    Dropped: what the sequential path skips as silence, and segments that start after
    the audio ended: nothing was said in the silence the window adds.
    """
    return [
        segment for segment in segments
        if not (segment["no_speech_prob"] > _NO_SPEECH_THRESHOLD
                and segment["avg_logprob"] < _LOG_PROB_THRESHOLD)
        and segment["start"] < audio_s - _LAST_SEGMENT_MIN_S
    ]


def _max_new_tokens(audio_s: float) -> int:
    """Bounds the cost of a repetition loop to what the audio could plausibly hold."""
    return min(_MAX_NEW_TOKENS, 24 + int(8 * min(audio_s, 30.0)))
