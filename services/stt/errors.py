"""Errors that end an RPC with a specific gRPC status."""

from __future__ import annotations

import grpc


class SttError(Exception):
    """An error the client should see; ``code`` is the gRPC status to end the call with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SttError):
    """The request is malformed; the message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhausted(SttError):
    """Too many decodes are waiting; the client may retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SttError):
    """The model is not loaded yet."""

    code = grpc.StatusCode.UNAVAILABLE
