"""Structured JSON logging with the current session id on every record."""

from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

#: Session id of the work the current task is doing; set it at the start of each stream.
session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="")


class _SessionIdFilter(logging.Filter):
    """Stamps every record with the session id of the task that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.session_id = session_id_var.get()
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    """Send JSON lines to stderr: time, level, service, logger, session_id, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_SessionIdFilter())
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{session_id}{message}",
            style="{",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
