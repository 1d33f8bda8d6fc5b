"""The one exception hierarchy, grouped by what the agent does next.

    PlantsyncError
    ├── ConfigError            exit 2; carries one Problem per bad key (file, key path, reason)
    ├── LinkError              retry the link with backoff (the supervisor owns this)
    │   ├── HubUnavailable         the MQTT broker refused, dropped or never answered
    │   └── SourceUnavailable      an OPC UA server (or MES) is unreachable or went away
    │       └── Throttled              the peer said when to come back (Retry-After)
    ├── LinkMisconfigured      disable the link and report it; retrying cannot help
    │                          (unknown node id, credentials refused, certificate not trusted)
    ├── StoreError             exit non-zero: the durable store cannot be opened or written
    │   ├── StoreFull              partial write: telemetry was shed, business rows are refused
    │   │                          (back-pressure) until the outbox drains
    │   ├── StoreDiskFull          nothing committed: the disk under the store is full; shed
    │   │                          telemetry, refuse business writes, retry (never exit): the
    │   │                          store writes again once space returns
    │   └── CorruptStore           the file is not a sound database: at start-up the agent moves
    │                              it aside and starts fresh; elsewhere exit non-zero
    └── MessageRejected        dead-letter the message and answer with a rejection; carries a
                               reason code and whatever ids could be read from the message

Drivers translate their library's exceptions into these at one place and always
``raise ... from exc`` so the original OS or protocol error stays in the traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class PlantsyncError(Exception):
    """Base of every error plantsync raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One reason a config was refused: which file, which key, why."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        if not self.key:  # the file as a whole (missing, unreadable): no key to name
            return f"{self.file}: {self.reason}"
        return f"{self.file}: {self.key}: {self.reason}"


class ConfigError(PlantsyncError):
    """The configuration is invalid; the agent refuses to start and exits 2."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


class LinkError(PlantsyncError):
    """A link to a peer failed in a way that a later retry may fix."""


class HubUnavailable(LinkError):
    """The MQTT hub cannot be reached, refused the connection, or dropped it."""


class SourceUnavailable(LinkError):
    """A plant-side server (OPC UA, MES) cannot be reached or went away."""


class Throttled(SourceUnavailable):
    """The peer asked to be left alone for ``retry_after`` seconds (HTTP 429 or 503 with
    Retry-After): the supervisor waits at least that long before the next try."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LinkMisconfigured(PlantsyncError):
    """A link is configured in a way the peer rejects; retrying will not help."""


class StoreError(PlantsyncError):
    """The durable store cannot be opened or written."""


class StoreFull(StoreError):
    """The store is at its size cap and only business rows are left: back-pressure."""


class CorruptStore(StoreError):
    """The store file is not a database, is truncated, or fails ``PRAGMA quick_check``."""


class StoreDiskFull(StoreError):
    """The file system under the store is full (SQLITE_FULL, ENOSPC): nothing was committed.

    Unlike other store errors it passes by itself once space is freed, so the agent keeps
    running: links that hit it retry later, producers are refused with a clear reason.
    """


class MessageRejected(PlantsyncError):
    """An inbound message cannot be accepted: it goes to the dead letters, HQ gets a rejection.

    ``reason_code`` is one of :class:`plantsync.contracts.ReasonCode`'s values; ``detail`` is one
    short line, safe to log and to send back (it never echoes the input at length).
    ``message_id`` and ``correlation_id`` are the original's, when they could be read;
    ``seq`` and ``seq_epoch`` too, when the message is on this site's down stream, so that a
    refused message still counts as received for gap detection.
    """

    def __init__(
        self,
        reason_code: str,
        detail: str,
        message_id: str | None = None,
        correlation_id: str | None = None,
        *,
        message_type: str | None = None,
        seq: int | None = None,
        seq_epoch: int = 0,
    ) -> None:
        self.reason_code = reason_code
        self.detail = detail
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.message_type = message_type
        self.seq = seq
        self.seq_epoch = seq_epoch
        super().__init__(f"{reason_code}: {detail}")
