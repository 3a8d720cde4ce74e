"""Errors that end an RPC with a specific gRPC status, shared by every service."""

from __future__ import annotations

import grpc


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
