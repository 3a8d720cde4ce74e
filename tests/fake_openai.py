"""A scripted OpenAI-compatible HTTP server for tests and bench scripts.

It speaks the real wire protocol (``GET /v1/models``, ``POST /v1/chat/completions`` with
and without ``stream``, Server-Sent Events, OpenAI-style error bodies), so the real
``openai`` client talks to it over a real socket. Replies are scripted; latency, failures
and client disconnects are explicit knobs and counters::

    with FakeOpenAI(reply="Hello there.", first_token_delay_s=0.2) as fake:
        client = AsyncOpenAI(base_url=fake.base_url, api_key="x")
        ...
        assert fake.requests[-1]["messages"][-1]["content"] == "hi"

A scripted reply may also ask for tools: ``reply`` returns ``ToolCallReply([{"name":
"book_appointment", "arguments": {...}}])`` and the fake streams the calls exactly as
OpenAI does (``delta.tool_calls`` fragments, finish_reason ``tool_calls``).

Manual use: ``python -m tests.fake_openai --port 8081 --reply "Hello there."``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class ToolCallReply:
    """A scripted reply that calls tools instead of answering with text.

    Attributes:
        calls: ``{"name": ..., "arguments": dict or raw JSON str}`` per call; an
            ``"id"`` key overrides the generated call id.
        call_ids: Ids sent for the calls, filled as they are streamed.
    """

    calls: list[dict[str, Any]]
    call_ids: list[str] = field(default_factory=list)


Reply = str | ToolCallReply | Callable[[list[dict[str, Any]]], "str | ToolCallReply"]
"""The scripted reply: fixed text or tool calls, or a function of the request's messages."""

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


class FakeOpenAI:
    """An OpenAI-compatible server on a random loopback port, run from a background thread.

    Attributes:
        reply: Text of every reply, or a callable taking the request's messages.
        first_token_delay_s: Delay before the first content chunk of a streamed reply.
        token_delay_s: Delay between the following chunks (one word each).
        completion_delay_s: Delay before a non-streamed reply (e.g. an intent classifier).
        fail_with_status: When set, chat completions answer this HTTP status with an
            OpenAI-style error body instead of a reply.
        model: Model id listed by ``GET /v1/models``.
        requests: Bodies of the chat completion requests received, in order.
        closed_early: Streamed replies whose client disconnected before the end.
        completed: Streamed replies sent to the end.
    """

    def __init__(
        self,
        reply: Reply = "Hello from the fake model.",
        *,
        first_token_delay_s: float = 0.1,
        token_delay_s: float = 0.01,
        completion_delay_s: float = 0.0,
        fail_with_status: int | None = None,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure the server; :meth:`start` (or ``with``) runs it."""
        self.reply = reply
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self.completion_delay_s = completion_delay_s
        self.fail_with_status = fail_with_status
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.closed_early = 0
        self.completed = 0
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The endpoint to give an OpenAI client, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://{self._host}:{self._port}/v1"

    def start(self, timeout_s: float = 10.0) -> FakeOpenAI:
        """Start serving in a daemon thread; returns once the port accepts connections."""
        config = uvicorn.Config(
            self._app(), host=self._host, port=self._port, log_level="warning",
            lifespan="off", timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"FakeOpenAI could not listen on {self._host}:{self._port}")
            time.sleep(0.01)
        self._port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ------------------------------------------------------------------------

    def reply_for(self, messages: list[dict[str, Any]]) -> str | ToolCallReply:
        """The scripted reply to ``messages``."""
        return self.reply(messages) if callable(self.reply) else self.reply

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}]}

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            if self.fail_with_status is not None:
                return _error_response(self.fail_with_status)
            text = self.reply_for(body.get("messages", []))
            model = body.get("model") or self.model
            if isinstance(text, ToolCallReply):
                if body.get("stream"):
                    return StreamingResponse(self._counted(self._sse_tools(request, model, text)),
                                             media_type="text/event-stream")
                return JSONResponse(_tool_completion(model, text))
            if body.get("stream"):
                return StreamingResponse(self._counted(self._sse(request, model, text)),
                                         media_type="text/event-stream")
            await asyncio.sleep(self.completion_delay_s)
            return JSONResponse(_completion(model, text))

        return app

    async def _counted(self, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """Pass a streamed reply through, counting it as completed or closed early."""
        finished = False
        try:
            async for event in events:
                yield event
                finished = event == _DONE
        finally:
            # Runs on a normal end, on a detected disconnect and when Starlette cancels
            # the stream because the client went away.
            if finished:
                self.completed += 1
            else:
                self.closed_early += 1

    async def _sse(self, request: Request, model: str, text: str) -> AsyncIterator[str]:
        """Stream ``text`` word by word as chat.completion.chunk events, then ``[DONE]``."""
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        yield _event(_chunk(chunk_id, model, {"role": "assistant", "content": ""}))
        for i, word in enumerate(text.split(" ")):
            await asyncio.sleep(self.first_token_delay_s if i == 0 else self.token_delay_s)
            if await request.is_disconnected():
                return
            piece = word if i == 0 else " " + word
            yield _event(_chunk(chunk_id, model, {"content": piece}))
        yield _event(_chunk(chunk_id, model, {}, finish_reason="stop"))
        yield _DONE

    async def _sse_tools(self, request: Request, model: str,
                         reply: ToolCallReply) -> AsyncIterator[str]:
        """Stream tool calls as OpenAI does: id and name first, then argument fragments."""
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        for index, call in enumerate(reply.calls):
            call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
            reply.call_ids.append(call_id)
            await asyncio.sleep(self.first_token_delay_s if index == 0 else self.token_delay_s)
            if await request.is_disconnected():
                return
            head: dict[str, Any] = {"index": index, "id": call_id, "type": "function",
                                    "function": {"name": call["name"], "arguments": ""}}
            delta: dict[str, Any] = {"tool_calls": [head]}
            if index == 0:
                delta = {"role": "assistant", "content": None, **delta}
            yield _event(_chunk(chunk_id, model, delta))
            for piece in _fragments(_arguments(call)):
                await asyncio.sleep(self.token_delay_s)
                if await request.is_disconnected():
                    return
                yield _event(_chunk(chunk_id, model, {"tool_calls": [
                    {"index": index, "function": {"arguments": piece}}]}))
        yield _event(_chunk(chunk_id, model, {}, finish_reason="tool_calls"))
        yield _DONE


_DONE = "data: [DONE]\n\n"
"""The last event of every streamed reply."""


def _arguments(call: dict[str, Any]) -> str:
    args = call.get("arguments", {})
    return args if isinstance(args, str) else json.dumps(args)


def _fragments(text: str, size: int = 7) -> list[str]:
    """``text`` in small pieces, as models stream JSON arguments."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _tool_completion(model: str, reply: ToolCallReply) -> dict[str, Any]:
    calls = []
    for call in reply.calls:
        call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
        reply.call_ids.append(call_id)
        calls.append({"id": call_id, "type": "function",
                      "function": {"name": call["name"], "arguments": _arguments(call)}})
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                             "tool_calls": calls},
                     "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _chunk(chunk_id: str, model: str, delta: dict[str, Any],
           finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}],
    }


def _completion(model: str, text: str) -> dict[str, Any]:
    words = len(text.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words},
    }


def _error_response(status: int) -> JSONResponse:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": f"scripted failure: HTTP {status}", "type": kind,
                   "param": None, "code": kind}},
        status_code=status,
    )


def main() -> None:
    """Serve a fixed reply until interrupted (manual testing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--reply", default="Hello from the fake model.")
    parser.add_argument("--first-token-delay", type=float, default=0.1)
    parser.add_argument("--token-delay", type=float, default=0.01)
    opts = parser.parse_args()
    fake = FakeOpenAI(opts.reply, first_token_delay_s=opts.first_token_delay,
                      token_delay_s=opts.token_delay, host=opts.host, port=opts.port)
    print(f"serving http://{opts.host}:{opts.port}/v1; Ctrl-C stops", flush=True)
    uvicorn.run(fake._app(), host=opts.host, port=opts.port, log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
