"""Errors that end an RPC with a specific gRPC status, shared by every service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, NoReturn

import grpc
from prometheus_client import Counter

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error the client should see; ``code`` is the gRPC status to end the call with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request is malformed; the message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhausted(ServiceError):
    """Too much work is waiting; the client may retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """The service cannot take the call now (for example its model is still loading)."""

    code = grpc.StatusCode.UNAVAILABLE


class Internal(ServiceError):
    """The service failed while serving the call (for example an engine raised)."""

    code = grpc.StatusCode.INTERNAL


async def read_first(requests: AsyncIterable[Any], expected: str) -> tuple[Any, AsyncIterator[Any]]:
    """Read the first message of a config-first stream and return it with the rest.

    Raises InvalidArgument naming ``expected`` when the stream is empty or starts with
    another field of the ``request`` oneof.
    """
    rest = aiter(requests)
    first = await anext(rest, None)
    kind = first.WhichOneof("request") if first is not None else None
    if kind != expected:
        raise InvalidArgument(
            f"{expected}: the first request must carry {expected} (got {kind or 'nothing'})")
    return first, rest


async def abort(context: grpc.aio.ServicerContext, error: ServiceError,
                rejected: Counter) -> NoReturn:
    """End the RPC with ``error``'s status, counting it in ``rejected{reason}``."""
    rejected.labels(reason=error.code.name.lower()).inc()
    log.info("rejected", extra={"code": error.code.name, "reason": error.message})
    await context.abort(error.code, error.message)
    raise AssertionError("unreachable: context.abort raises")
