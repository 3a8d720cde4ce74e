"""The voxmesh.v1.SpeechToText servicer: a thin gRPC adapter over StreamRecognizer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

import grpc
import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from services.stt import metrics, validation
from services.stt.engine import SAMPLE_RATE, WhisperEngine
from services.stt.errors import InvalidArgument, SttError, Unavailable
from services.stt.scheduler import DecodeKind, DecodeScheduler
from services.stt.stream import StreamRecognizer
from services.stt.turn import SmartTurnModel
from services.stt.vad import WINDOW_SAMPLES, VadPool, WindowedVad
from voxmesh.audio import AudioFormatError, duration_ms, pcm16_to_float, resample
from voxmesh.config import SttSettings
from voxmesh.errors import abort, read_first
from voxmesh.logs import session_id_var
from voxmesh.telemetry import context_from_grpc_metadata
from voxmesh.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer("voxmesh.stt")

SERVICE_NAME = stt_pb2.DESCRIPTOR.services_by_name["SpeechToText"].full_name


@dataclass(frozen=True)
class _Runtime:
    """Everything :meth:`SpeechToTextService.load` prepares."""

    engine: WhisperEngine
    vads: VadPool
    scheduler: DecodeScheduler
    turn_model: SmartTurnModel | None
    """None when semantic end of turn is off or its model is not installed."""


async def _abort(context: grpc.aio.ServicerContext, error: SttError) -> NoReturn:
    await abort(context, error, metrics.REJECTED)


class SpeechToTextService(stt_pb2_grpc.SpeechToTextServicer):
    """StreamingRecognize and Recognize over one shared Whisper model."""

    def __init__(self, settings: SttSettings) -> None:
        self._settings = settings
        self._runtime: _Runtime | None = None

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add this servicer to ``server``; return the service name for health and reflection."""
        stt_pb2_grpc.add_SpeechToTextServicer_to_server(self, server)
        return [SERVICE_NAME]

    async def load(self) -> None:
        """Load Whisper (with a warm-up decode), one Silero VAD and Smart Turn, off the loop."""
        engine = WhisperEngine(self._settings)
        vads = VadPool()
        await asyncio.to_thread(engine.load)

        def warm_vad() -> None:
            vad = vads.acquire()
            WindowedVad(vad).process(np.zeros(WINDOW_SAMPLES, dtype=np.float32))
            vads.release(vad)

        await asyncio.to_thread(warm_vad)
        turn_model = await asyncio.to_thread(SmartTurnModel.load, self._settings)
        self._runtime = _Runtime(engine, vads, DecodeScheduler(engine, self._settings), turn_model)

    async def _ready(self, context: grpc.aio.ServicerContext) -> _Runtime:
        if self._runtime is None:
            await _abort(context, Unavailable("stt: the model is still loading"))
        return self._runtime

    # -- StreamingRecognize ----------------------------------------------------------------

    async def StreamingRecognize(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        """Config first, then audio; yields VAD, transcript and end-of-turn events."""
        runtime = await self._ready(context)
        try:
            first, requests = await read_first(request_iterator, "config")
        except SttError as error:
            await _abort(context, error)
        session_id_var.set(first.config.session_id)
        try:
            config = validation.stream_config(first.config, self._settings, runtime.engine,
                                              turn_model_loaded=runtime.turn_model is not None)
        except InvalidArgument as error:
            await _abort(context, error)

        parent = context_from_grpc_metadata(context.invocation_metadata())
        span = tracer.start_span("stt.stream", context=parent, attributes={
            "session_id": first.config.session_id,
            "sample_rate_hertz": config.audio.sample_rate,
            "enable_partial_results": config.enable_partials,
            "semantic_turn": config.turn.semantic,
        })
        vad = await asyncio.to_thread(runtime.vads.acquire)
        recognizer = StreamRecognizer(
            config, runtime.scheduler, WindowedVad(vad), trace.set_span_in_context(span, parent),
            runtime.turn_model,
        )
        metrics.ACTIVE_STREAMS.inc()
        log.info("stream started", extra={"sample_rate_hertz": config.audio.sample_rate})
        feeder = asyncio.create_task(self._feed(requests, recognizer))
        try:
            async for event in recognizer.events:
                yield event
        except SttError as error:
            span.set_status(Status(StatusCode.ERROR, error.message))
            await _abort(context, error)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            await recognizer.aclose()  # waits for its VAD to be idle
            runtime.vads.release(vad)
            metrics.ACTIVE_STREAMS.dec()
            span.end()
            log.info("stream ended")

    @staticmethod
    async def _feed(
        requests: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        recognizer: StreamRecognizer,
    ) -> None:
        """Read the client side until end_of_input or half-close; report bad input."""
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "audio":
                    await recognizer.push_audio(request.audio)
                elif kind == "end_of_input":
                    break
                elif kind == "config":
                    raise InvalidArgument("config: only the first request may carry config")
                else:
                    raise InvalidArgument("request: set one of config, audio or end_of_input")
            await recognizer.end_input()
        except SttError as error:
            recognizer.fail(error)
        except grpc.aio.AioRpcError as error:  # the client went away; nothing to answer
            log.info("stream read failed", extra={"code": error.code().name})
            recognizer.fail(SttError("client stream failed"))

    # -- Recognize -------------------------------------------------------------------------

    async def Recognize(  # noqa: N802 - gRPC method name
        self, request: stt_pb2.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.RecognizeResponse:
        """Transcribe one whole clip, with word timings."""
        runtime = await self._ready(context)
        session_id_var.set(request.config.session_id)
        try:
            fmt = validation.input_format(request.config.audio_format)
            language = validation.language(request.config, runtime.engine)
            samples = await asyncio.to_thread(pcm16_to_float, request.audio, fmt.channels)
        except AudioFormatError as error:
            await _abort(context, InvalidArgument(str(error)))
        except InvalidArgument as error:
            await _abort(context, error)
        clip_ms = duration_ms(len(samples), fmt.sample_rate)
        if not len(samples):
            return stt_pb2.RecognizeResponse(transcript=stt_pb2.Transcript(), audio_duration_ms=0)
        audio = await asyncio.to_thread(resample, samples, fmt.sample_rate, SAMPLE_RATE)

        parent = context_from_grpc_metadata(context.invocation_metadata())
        with tracer.start_as_current_span("stt.decode", context=parent, attributes={
            "utterance_id": 0, "audio_ms": clip_ms,
        }) as span:
            try:
                result = await runtime.scheduler.decode(audio, DecodeKind.FINAL, language)
            except SttError as error:
                await _abort(context, error)
            assert result is not None  # finals always run
            span.set_attribute("decode_ms", result.decode_ms)
        words = [
            audio_pb2.WordTiming(
                word=w.text,
                start_ms=min(round(w.start_s * 1000), clip_ms),
                end_ms=min(round(w.end_s * 1000), clip_ms),
            )
            for w in result.words
        ]
        return stt_pb2.RecognizeResponse(
            transcript=stt_pb2.Transcript(
                text=result.text, start_offset_ms=0, end_offset_ms=clip_ms,
                is_stable=True, words=words, decode_ms=result.decode_ms,
            ),
            audio_duration_ms=clip_ms,
        )
