"""PCM16 audio helpers: validation, conversion, downmixing and streaming resampling."""

from __future__ import annotations

import numpy as np

#: Input rates every service accepts (telephony to studio).
SUPPORTED_SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 24000, 44100, 48000)
BYTES_PER_SAMPLE = 2


class AudioFormatError(ValueError):
    """Audio that does not match its declared format; the message names the field."""


def validate_sample_rate(rate: int, field: str) -> int:
    """Return ``rate`` if supported, else raise naming ``field``."""
    if rate not in SUPPORTED_SAMPLE_RATES:
        raise AudioFormatError(
            f"{field}: unsupported sample rate {rate} Hz "
            f"(supported: {', '.join(map(str, SUPPORTED_SAMPLE_RATES))})"
        )
    return rate


def pcm16_to_float(data: bytes, channels: int = 1, field: str = "audio") -> np.ndarray:
    """Decode PCM16 LE to mono float32 in [-1, 1], averaging channels."""
    frame_bytes = BYTES_PER_SAMPLE * channels
    if len(data) % frame_bytes:
        raise AudioFormatError(
            f"{field}: {len(data)} bytes is not a whole number of {channels}-channel PCM16 frames"
        )
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Encode float audio in [-1, 1] as PCM16 LE, clipping out-of-range values."""
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def duration_ms(num_samples: int, rate: int) -> int:
    """Duration of ``num_samples`` at ``rate`` Hz, in whole milliseconds."""
    return int(num_samples * 1000 // rate)


class StreamResampler:
    """Resamples a float32 mono stream chunk by chunk with soxr (no edge clicks)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None
        if in_rate != out_rate:
            import soxr  # only services that resample install soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next chunk; pass ``last=True`` to flush the filter tail."""
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples.astype(np.float32), last=last)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole clip."""
    return StreamResampler(in_rate, out_rate).process(samples, last=True)
