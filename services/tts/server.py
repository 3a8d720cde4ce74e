"""The voxmesh.v1.TextToSpeech servicer: a thin gRPC adapter over SynthesisStream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import NoReturn

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from services.tts import metrics, validation
from services.tts.cache import PhraseCache
from services.tts.catalog import VoiceCatalog
from services.tts.engines import TtsEngine, build_engines, build_fallback
from services.tts.errors import InvalidArgument, TtsError, Unavailable
from services.tts.stream import Fallback, SynthesisStream
from voxmesh.config import TtsSettings
from voxmesh.errors import abort, read_first
from voxmesh.logs import session_id_var
from voxmesh.telemetry import context_from_grpc_metadata
from voxmesh.v1 import tts_pb2, tts_pb2_grpc

log = logging.getLogger(__name__)
tracer = trace.get_tracer("voxmesh.tts")

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name
WARM_UP_TEXT = "Hello."


async def _abort(context: grpc.aio.ServicerContext, error: TtsError) -> NoReturn:
    await abort(context, error, metrics.REJECTED)


class TextToSpeechService(tts_pb2_grpc.TextToSpeechServicer):
    """StreamingSynthesize and ListVoices over the configured engines."""

    def __init__(self, settings: TtsSettings) -> None:
        """Create (not load) the configured engines.

        Raises:
            EngineUnavailable: An engine named in VOXMESH_TTS_ENGINES cannot run here.
        """
        self._settings = settings
        self._engines: list[TtsEngine] = build_engines(settings)
        fallback = build_fallback(settings, self._engines)
        self._fallback = (
            Fallback(fallback, settings.primary_timeout_ms / 1000) if fallback else None)
        self._cache = PhraseCache(round(settings.cache_mb * 1024 * 1024))
        self._catalog: VoiceCatalog | None = None

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add this servicer to ``server``; return the service name for health and reflection."""
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(self, server)
        return [SERVICE_NAME]

    async def load(self) -> None:
        """Load every engine and warm it up with one short word, off the event loop.

        The fallback engine loads first and must succeed. A voice engine that then fails
        is logged and counted, and its voices (those it could still list) are spoken by
        the fallback, so the service comes up rather than leaving callers silent.

        Raises:
            EngineUnavailable: The fallback failed, or an engine failed with no fallback.
        """
        fallback = self._fallback.engine if self._fallback else None
        if fallback is not None:
            await self._load_engine(fallback)
        for engine in self._engines:
            if engine is fallback:
                continue
            try:
                await self._load_engine(engine)
            except Exception as error:
                if fallback is None:
                    raise
                engine.load_error = f"{type(error).__name__}: {error}"
                metrics.ENGINE_LOAD_FAILURES.labels(engine=engine.name).inc()
                log.error("engine failed to load; the fallback speaks its voices", extra={
                    "engine": engine.name, "error": engine.load_error,
                    "voices": [v.id for v in engine.voices()], "fallback": fallback.name,
                })
        usable = [e for e in self._engines if e.voices()]
        if not usable and fallback is not None:
            usable = [fallback]
        self._catalog = VoiceCatalog(usable, self._settings.default_voice)

    @staticmethod
    async def _load_engine(engine: TtsEngine) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(engine.load)
        await asyncio.to_thread(engine.run, WARM_UP_TEXT, engine.default_voice, 1.0)
        log.info("engine loaded", extra={
            "engine": engine.name, "voices": [v.id for v in engine.voices()],
            "seconds": round(time.perf_counter() - started, 3),
        })

    async def _ready(self, context: grpc.aio.ServicerContext) -> VoiceCatalog:
        if self._catalog is None:
            await _abort(context, Unavailable("tts: the engines are still loading"))
        return self._catalog

    # -- StreamingSynthesize ---------------------------------------------------------------

    async def StreamingSynthesize(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[tts_pb2.StreamingSynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        """Config first, then text and control; yields segments, audio and done."""
        catalog = await self._ready(context)
        try:
            first, requests = await read_first(request_iterator, "config")
        except TtsError as error:
            await _abort(context, error)
        session_id_var.set(first.config.session_id)
        try:
            config = validation.stream_config(first.config, self._settings, catalog)
        except InvalidArgument as error:
            await _abort(context, error)

        parent = context_from_grpc_metadata(context.invocation_metadata())
        span = tracer.start_span("tts.stream", context=parent, attributes={
            "session_id": first.config.session_id,
            "voxmesh.engine": config.voice.engine.name,
            "voxmesh.voice": config.voice.id,
            "sample_rate_hertz": config.sample_rate,
        })
        stream = SynthesisStream(config, trace.set_span_in_context(span, parent),
                                 self._fallback, self._cache)
        metrics.ACTIVE_STREAMS.inc()
        log.info("stream started", extra={
            "voice": config.voice.id, "engine": stream.engine_name,
            "sample_rate_hertz": config.sample_rate,
        })
        reader = asyncio.create_task(self._read(requests, stream), name="tts-reader")
        try:
            async for event in stream.events():
                yield event
        except TtsError as error:
            span.set_status(Status(StatusCode.ERROR, error.message))
            await _abort(context, error)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.aclose()
            metrics.ACTIVE_STREAMS.dec()
            span.set_attribute("voxmesh.total_samples", stream.total_samples)
            span.end()
            log.info("stream ended", extra={"total_samples": stream.total_samples})

    @staticmethod
    async def _read(
        requests: AsyncIterator[tts_pb2.StreamingSynthesizeRequest], stream: SynthesisStream
    ) -> None:
        """Read the client side until cancel or half-close; report bad input to the stream."""
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "text":
                    stream.push_text(request.text)
                elif kind == "flush":
                    stream.flush()
                elif kind == "end_of_input":
                    stream.end_input()
                elif kind == "cancel":
                    stream.cancel()
                    return
                elif kind == "config":
                    raise InvalidArgument("config: only the first request may carry config")
                else:
                    raise InvalidArgument(
                        "request: set one of config, text, flush, end_of_input or cancel")
            stream.end_input()  # a half-close means no more text, like end_of_input
        except TtsError as error:
            stream.fail(error)
        except grpc.aio.AioRpcError as error:  # the client went away; nothing to answer
            log.info("stream read failed", extra={"code": error.code().name})
            stream.fail(TtsError("client stream failed"))

    # -- ListVoices ------------------------------------------------------------------------

    async def ListVoices(  # noqa: N802 - gRPC method name
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.ListVoicesResponse:
        """Installed voices, optionally only those of a BCP-47 language prefix."""
        catalog = await self._ready(context)
        prefix = request.language_code.lower()
        voices = [
            tts_pb2.Voice(
                id=voice.id, engine=voice.engine.name, language_code=voice.info.language_code,
                native_sample_rate_hertz=voice.engine.native_sample_rate,
                is_default=voice.id == catalog.default,
            )
            for voice in catalog.all()
            if not prefix or voice.info.language_code.lower() == prefix
            or voice.info.language_code.lower().startswith(prefix + "-")
        ]
        return tts_pb2.ListVoicesResponse(voices=voices)
