"""Errors that end an RPC with a specific gRPC status."""

from __future__ import annotations

import grpc


class TtsError(Exception):
    """An error the client should see; ``code`` is the gRPC status to end the call with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TtsError):
    """The request is malformed; the message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Unavailable(TtsError):
    """The engines are not loaded yet."""

    code = grpc.StatusCode.UNAVAILABLE


class SynthesisFailed(TtsError):
    """An engine raised while speaking a segment."""

    code = grpc.StatusCode.INTERNAL
