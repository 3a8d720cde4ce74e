"""The OpenAI-compatible upstream: streaming chat completions and precise error messages.

Any endpoint speaking the OpenAI chat-completions protocol works (the embedded
llama.cpp server, vLLM, a hosted API). Only connection errors are retried, by the
``openai`` client itself, and only before a response exists, so no retry can ever
repeat words the user has already been sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from voxmesh.config import LlmSettings

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """An upstream request failed.

    Attributes:
        kind: Bounded label for metrics: timeout, rate_limited, status, unavailable, api.
        message: What to tell the caller, e.g. "upstream rate limited (429)".
    """

    def __init__(self, kind: str, message: str) -> None:
        """Record the metric ``kind`` and the caller-facing ``message``."""
        super().__init__(message)
        self.kind = kind
        self.message = message


class _ConnectionRetryingOpenAI(AsyncOpenAI):
    """An AsyncOpenAI whose built-in retries never retry an HTTP status (429, 5xx, ...).

    Retrying a rate limit or a server error would hold a voice turn silent for
    seconds; the caller would rather hear "try again" at once. Connection errors,
    which happen before any response (so before any token), keep the SDK's retries.
    """

    def _should_retry(self, response: httpx2.Response) -> bool:
        return False


def make_client(settings: LlmSettings) -> AsyncOpenAI:
    """An AsyncOpenAI client for ``settings.base_url``."""
    return _ConnectionRetryingOpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key or "not-needed",
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
    )


def describe_error(exc: openai.APIError, timeout_s: float) -> UpstreamError:
    """Map an ``openai`` exception to a metric kind and a precise message."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError("timeout", f"upstream timeout after {timeout_s:g} s")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError("unavailable", f"upstream unavailable: {_connection_reason(exc)}")
    if isinstance(exc, openai.RateLimitError):
        return UpstreamError("rate_limited", "upstream rate limited (429)")
    if isinstance(exc, openai.APIStatusError):
        return UpstreamError(
            "status", f"upstream HTTP {exc.status_code}: {_body_message(exc) or exc.message}"
        )
    return UpstreamError("api", f"upstream error: {_body_message(exc) or exc.message}")


def _body_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if isinstance(message, str):
            return message
    return ""


def _connection_reason(exc: BaseException) -> str:
    """The root cause of a connection error in a few words ("connection refused")."""
    seen: BaseException | None = exc
    fallback = ""
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ConnectionResetError):
            return "connection reset"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        if isinstance(seen, httpx2.RemoteProtocolError):
            return f"connection closed by the server ({seen})"
        if not fallback and not isinstance(seen, openai.APIError) and str(seen):
            fallback = str(seen)
        seen = seen.__cause__ or seen.__context__
    return fallback or "connection error"


class Upstream:
    """Streams replies from the configured endpoint with one shared connection pool."""

    def __init__(self, settings: LlmSettings, client: AsyncOpenAI | None = None) -> None:
        """Use ``client``, or build one from ``settings``."""
        self.settings = settings
        self.client = client or make_client(settings)

    async def wait_until_ready(self) -> list[str]:
        """Wait until the endpoint answers ``GET /models``; return the model ids it lists.

        Raises:
            RuntimeError: the endpoint rejected the key or did not answer in
                ``settings.startup_wait_seconds``.
        """
        probe = self.client.with_options(max_retries=0, timeout=5.0)
        deadline = time.monotonic() + self.settings.startup_wait_seconds
        while True:
            try:
                page = await probe.models.list()
                return [model.id for model in page.data]
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise RuntimeError(
                    f"LLM endpoint {self.settings.base_url} rejected VOXMESH_LLM_API_KEY "
                    f"(HTTP {exc.status_code})"
                ) from exc
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code != 429:
                    # It answers but has no model list (some proxies): good enough.
                    log.warning("GET /models failed; assuming the endpoint serves",
                                extra={"status": exc.status_code})
                    return []
                error: openai.APIError = exc
            except openai.APIError as exc:
                error = exc
            if time.monotonic() >= deadline:
                reason = describe_error(error, 5.0).message
                raise RuntimeError(
                    f"LLM endpoint {self.settings.base_url} did not answer GET /models within "
                    f"{self.settings.startup_wait_seconds:g} s: {reason}"
                )
            await asyncio.sleep(0.5)

    async def warm_up(self, system_prompt: str) -> float:
        """Ask for one token under ``system_prompt``; returns the seconds it took.

        Endpoints that cache prompt prefixes (llama.cpp) then answer the first real
        turn without evaluating the system prompt again: on the embedded SmolLM2 on
        two cores that is ~0.3 s to the first token instead of ~4 s.

        Raises:
            UpstreamError: the request failed.
        """
        started = time.perf_counter()
        try:
            await self.client.chat.completions.create(
                model=self.settings.model,
                messages=[{"role": "system", "content": system_prompt},
                          {"role": "user", "content": "Hello."}],
                max_tokens=1,
                temperature=0.0,
            )
        except openai.APIError as exc:
            raise describe_error(exc, self.settings.timeout_seconds) from exc
        return time.perf_counter() - started

    async def complete(self, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """One non-streamed chat completion at temperature 0; returns its text.

        Raises:
            UpstreamError: the request failed.
        """
        try:
            response = await self.client.chat.completions.create(
                model=self.settings.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                max_tokens=max_tokens,
                temperature=0.0,
            )
        except openai.APIError as exc:
            raise describe_error(exc, self.settings.timeout_seconds) from exc
        if not response.choices:
            return ""
        return response.choices[0].message.content or ""

    @asynccontextmanager
    async def reply(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> AsyncIterator[ReplyStream]:
        """Open a streaming chat completion; yields an iterator of text pieces.

        With ``tools``, the model may answer with tool calls instead: once the
        iterator is exhausted, :attr:`ReplyStream.tool_calls` holds them, assembled
        from the streamed fragments. Leaving the block (also by cancellation) closes
        the HTTP response, which aborts the request upstream so the model stops.

        Raises:
            UpstreamError: the request failed or the stream broke.
        """
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        try:
            stream = await self.client.chat.completions.create(
                model=self.settings.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                stream=True,
                # Asks for a last chunk with token usage; endpoints without it ignore this.
                stream_options={"include_usage": True},
                max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature,
                **extra,
            )
        except openai.APIError as exc:
            raise describe_error(exc, self.settings.timeout_seconds) from exc
        try:
            yield ReplyStream(stream, self.settings.timeout_seconds)
        finally:
            await stream.close()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.close()


@dataclass
class ToolCall:
    """One tool call of the model, assembled from streamed fragments."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def message(self) -> dict[str, Any]:
        """The entry of an assistant message's ``tool_calls``."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ReplyStream:
    """Text pieces of a streamed reply; its tool calls and usage once iterated to the end.

    OpenAI streams a tool call as fragments keyed by ``index``: the first carries
    the id and the function name, the following ones pieces of the JSON arguments.
    """

    stream: AsyncStream[ChatCompletionChunk]
    timeout_s: float
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: CompletionUsage | None = None
    content_chunks: int = 0

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        calls: dict[int, ToolCall] = {}
        try:
            async for chunk in self.stream:
                if chunk.usage is not None:  # the last chunk, with include_usage
                    self.usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    self.finish_reason = choice.finish_reason
                for frag in choice.delta.tool_calls or ():
                    call = calls.setdefault(frag.index, ToolCall())
                    call.id = frag.id or call.id
                    if frag.function is not None:
                        call.name += frag.function.name or ""
                        call.arguments += frag.function.arguments or ""
                if choice.delta.content:
                    self.content_chunks += 1
                    yield choice.delta.content
        except openai.APIError as exc:
            raise describe_error(exc, self.timeout_s) from exc
        for i, call in calls.items():
            call.id = call.id or f"call_{i}"  # some servers omit ids; results need one
        self.tool_calls = [calls[i] for i in sorted(calls)]
