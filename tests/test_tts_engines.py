"""Engine pieces without a service: espeak-ng's WAV, kokoro's start-up checks, word placement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.tts.engines import EngineUnavailable, WordSpan
from services.tts.engines.espeak_engine import EspeakEngine, wav_samples
from services.tts.engines.kokoro_engine import weights_files
from services.tts.engines.kokoro_onnx_engine import phoneme_words
from services.tts.word_timings import place_words

ROOT = Path(__file__).parent.parent


def test_espeak_speaks_at_22khz_and_slower_is_longer() -> None:
    """espeak-ng audio is parsed from its pipe WAV; speed scales its duration."""
    engine = EspeakEngine()
    engine.load()
    normal = engine.run("-v Hello there, how are you?", "espeak-en-us", 1.0)
    slow = engine.run("-v Hello there, how are you?", "espeak-en-us", 0.5)
    assert 0.8 < len(normal) / 22050 < 3.0 and normal.dtype.name == "float32"
    assert len(slow) > 1.5 * len(normal)
    assert 0.05 < float(abs(normal).max()) <= 1.0
    with pytest.raises(ValueError, match="WAV"):
        wav_samples(b"not a wav at all")


def test_model_word_spans_are_used_and_shifted_by_the_trim() -> None:
    """Model spans replace the estimate when they match the words, minus the trimmed lead."""
    spans = [WordSpan("hˈɛlO", 0.30, 0.60), WordSpan("wˈɜɹld", 0.65, 1.00)]
    words, source = place_words("Hello world.", 0.9, spans, shift=0.2)
    assert source == "model"
    assert [(w.word, round(w.start, 2), round(w.end, 2)) for w in words] == [
        ("Hello", 0.1, 0.4), ("world", 0.45, 0.8)]
    words, source = place_words("Hello big world.", 0.9, spans, shift=0.2)
    assert source == "estimated" and [w.word for w in words] == ["Hello", "big", "world"]
    assert words[0].start < words[1].start < words[2].start < words[2].end <= 0.9


def test_kokoro_onnx_phoneme_timings_group_into_words() -> None:
    """Timed phonemes (as kokoro-onnx reports them) become words at the spaces."""
    from kokoro_onnx.sliding import Timing

    phonemes = "hə lˈO, wˈɜɹld."
    step = 0.05
    timed = [Timing(p, i * step, (i + 1) * step) for i, p in enumerate(phonemes)]
    words = phoneme_words(timed)
    assert words is not None
    assert [w.word for w in words] == ["hə", "lˈO,", "wˈɜɹld."]
    assert [(round(w.start, 2), round(w.end, 2)) for w in words] == [
        (0.0, 0.1), (0.15, 0.3), (0.4, 0.7)]
    assert phoneme_words([]) is None


def test_kokoro_weights_are_checked_before_anything_loads(tmp_path: Path) -> None:
    """Each missing piece is named; with the weights in place the missing package is."""
    with pytest.raises(EngineUnavailable, match="needs VOXMESH_TTS_KOKORO_WEIGHTS_PATH"):
        weights_files("")
    with pytest.raises(EngineUnavailable, match="no model .pth file"):
        weights_files(str(tmp_path))
    (tmp_path / "kokoro-v1_0.pth").write_bytes(b"x")
    with pytest.raises(EngineUnavailable, match="config.json is missing"):
        weights_files(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EngineUnavailable, match="no voice .pt files"):
        weights_files(str(tmp_path))
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "af_heart.pt").write_bytes(b"x")
    assert weights_files(str(tmp_path))[0].name == "kokoro-v1_0.pth"
    env = {**os.environ, "VOXMESH_TTS_ENGINES": "kokoro", "VOXMESH_TTS_PORT": "0",
           "VOXMESH_TTS_KOKORO_WEIGHTS_PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "services.tts"], env=env, timeout=60,
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "engine 'kokoro' needs the `kokoro` package installed" in result.stderr, result.stderr


def test_unknown_fallback_engine_fails_at_start_up() -> None:
    """VOXMESH_TTS_FALLBACK_ENGINE is checked like VOXMESH_TTS_ENGINES."""
    env = {**os.environ, "VOXMESH_TTS_FALLBACK_ENGINE": "festival", "VOXMESH_TTS_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "services.tts"], env=env, timeout=60,
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "VOXMESH_TTS_FALLBACK_ENGINE: unknown engine 'festival'" in result.stderr
