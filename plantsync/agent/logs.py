"""Structured logs: plain lines for a terminal, one JSON object per line for journald/collectors.

Every record carries the correlation id in effect when it was logged (``correlation``: the
downlink sets it while it handles a schedule, the API while it takes a confirmation), so one
id follows a schedule through its acks to its confirmations. Every configured secret is replaced
by ``**********`` in the message and the exception text before any handler formats it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Literal

from pydantic import SecretStr

if TYPE_CHECKING:
    from plantsync.config.model import AgentConfig

_QUIET_LIBRARIES = ("asyncua", "apscheduler")
"""Chatty at INFO; their state changes reach our logs through the link health records."""

MASK = "**********"

CORRELATION_ID: ContextVar[str | None] = ContextVar("plantsync_correlation_id", default=None)
"""The correlation id of the schedule (or confirmation) being handled in this context."""


@contextlib.contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Log with ``correlation_id`` inside the block (the outer id again after it)."""
    token = CORRELATION_ID.set(correlation_id)
    try:
        yield
    finally:
        CORRELATION_ID.reset(token)


class CorrelationFilter(logging.Filter):
    """Stamps ``record.correlation_id`` (None when no schedule is being handled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = CORRELATION_ID.get()
        return True


class SecretFilter(logging.Filter):
    """Replaces every configured secret in the message and the exception text of a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg, record.args = self.scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


class PlainFormatter(logging.Formatter):
    """``time level logger: message [correlation_id=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        correlation_id = getattr(record, "correlation_id", None)
        if correlation_id is None:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [correlation_id={correlation_id}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = getattr(record, "correlation_id", None)
        if correlation_id is not None:
            entry["correlation_id"] = correlation_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def config_secrets(config: AgentConfig) -> list[str]:
    """Every SecretStr value in ``config`` (hub, API, MES, OPC UA, TLS key passwords …)."""
    return [secret.get_secret_value() for secret in _secrets(config.model_dump())]


def _secrets(value: object) -> list[SecretStr]:
    if isinstance(value, SecretStr):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _secrets(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _secrets(item)]
    return []


def setup_logging(
    level: Literal["debug", "info", "warning", "error"],
    format: Literal["plain", "json"],
    *,
    config: AgentConfig | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Configure the root logger once, writing to stderr (journald captures it); with
    ``config``, its secrets are scrubbed from every line. Returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else PlainFormatter())
    handler.addFilter(CorrelationFilter())
    handler.addFilter(SecretFilter(config_secrets(config) if config is not None else []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
