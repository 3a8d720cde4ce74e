"""Semantic end of turn: the Smart Turn v3 ONNX model asks "is the user done?".

The model (from the pipecat-ai wheel, see scripts/fetch_smart_turn.py) reads
the last 8 s of 16 kHz audio as 80 Whisper log-mel bands x 800 frames and
returns the probability that the turn is complete. Features come from
faster-whisper's numpy feature extractor, on the waveform normalised to zero
mean and unit variance first, as the model was trained.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import onnxruntime as ort
from faster_whisper.feature_extractor import FeatureExtractor

from services.stt import metrics
from voxmesh.config import SttSettings
from voxmesh.models import smart_turn_path

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
"""The model sees this much audio: older audio is cut, shorter audio zero-padded in front."""
_N_MELS = 80
_N_FRAMES = 800
_NORM_EPS = 1e-7


class SmartTurnModel:
    """A loaded Smart Turn v3 session; :meth:`predict` is thread-safe and blocks."""

    def __init__(self, path: str, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(path, sess_options=options,
                                             providers=["CPUExecutionProvider"])
        shape = self._session.get_inputs()[0].shape
        if list(shape[1:]) != [_N_MELS, _N_FRAMES]:
            raise ValueError(f"{path}: expected input [batch, {_N_MELS}, {_N_FRAMES}], got {shape}")
        self._input = self._session.get_inputs()[0].name
        self._features = FeatureExtractor(feature_size=_N_MELS, chunk_length=WINDOW_S)

    @classmethod
    def load(cls, settings: SttSettings) -> SmartTurnModel | None:
        """Load the configured model, or return None (logging why, once) when it is missing.

        A file that is there but not the model fails loudly instead: that is a
        configuration mistake, not an install without the optional model.
        """
        if not settings.enable_semantic_turn:
            metrics.TURN_MODEL_AVAILABLE.set(0)
            return None
        try:
            path = smart_turn_path(settings.turn_model)
        except FileNotFoundError as error:
            log.warning("semantic end of turn disabled: %s", error)
            metrics.TURN_MODEL_AVAILABLE.set(0)
            return None
        model = cls(str(path), settings.turn_model_threads)
        model.predict(np.zeros(SAMPLE_RATE, dtype=np.float32))  # warm-up: kernels, arenas
        log.info("smart turn loaded", extra={"model": str(path)})
        metrics.TURN_MODEL_AVAILABLE.set(1)
        return model

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The model input for ``audio`` (float32 mono 16 kHz): shape (80, 800)."""
        window = audio[-WINDOW_SAMPLES:].astype(np.float32, copy=False)
        window = np.pad(window, (WINDOW_SAMPLES - len(window), 0))
        window = (window - window.mean()) / np.sqrt(window.var() + _NORM_EPS)
        return np.asarray(self._features(window, padding=0), dtype=np.float32)

    def predict(self, audio: np.ndarray) -> float:
        """Probability that the speech in ``audio`` is a complete turn."""
        started = time.perf_counter()
        features = self.features(audio)[np.newaxis]
        (output,) = self._session.run(None, {self._input: features})
        metrics.TURN_MODEL_SECONDS.observe(time.perf_counter() - started)
        return float(np.asarray(output).reshape(-1)[0])
