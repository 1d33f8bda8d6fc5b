"""The config of plant-side links: OPC UA servers (tags, deadbands, security), ISA-95 Job
Control, the MES REST endpoint schedules go to, and the MES endpoints polled for what the MES
reports (``[[mes_poll]]``). ``model.py`` assembles them into the agent's config.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    ByteSize,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from plantsync.config.types import Duration, Section, Tls
from plantsync.contracts.envelope import SITE_PATTERN
from plantsync.contracts.mes import MES_MESSAGES, MesMessageType

_NODE_ID = re.compile(r"(ns=\d+;|nsu=[^;]+;)?[isgb]=.+")
"""The string form of a NodeId (OPC UA Part 6, 5.3.1.10)."""


class SecurityMode(StrEnum):
    """OPC UA MessageSecurityMode."""

    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class SecurityPolicy(StrEnum):
    """OPC UA security policies plantsync accepts (none of the deprecated SHA-1 ones)."""

    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"
    AES256_SHA256_RSAPSS = "Aes256_Sha256_RsaPss"


class Deadband(Section):
    """OPC UA DataChangeFilter deadband, evaluated by the server."""

    kind: Literal["absolute", "percent"]
    value: float = Field(ge=0)


class TagConfig(Section):
    """One OPC UA node read as one named tag of a machine."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    node_id: str | None = Field(default=None, description="e.g. 'ns=2;s=Press1.Speed'")
    browse_path: str | None = Field(
        default=None, description="from Objects, e.g. '2:Press1/2:Speed'"
    )
    sampling_interval: Duration | None = Field(
        default=None, description="default: the server's publishing_interval"
    )
    queue_size: int = Field(default=10, ge=1, le=10000)
    deadband: Deadband | None = None

    @model_validator(mode="after")
    def _exactly_one_address(self) -> Self:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of node_id or browse_path")
        return self


class MachineConfig(Section):
    """A machine: a stream of machine.state messages made of its tags."""

    id: str = Field(pattern=SITE_PATTERN)
    tags: list[TagConfig] = Field(min_length=1)

    @field_validator("tags")
    @classmethod
    def _unique_tag_names(cls, tags: list[TagConfig]) -> list[TagConfig]:
        names = [tag.name for tag in tags]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tag names must be unique within a machine: {duplicates}")
        return tags


class OpcUaClientConfig(Section):
    """How plantsync connects to one OPC UA server: endpoint, security, identity.

    Shared by the servers machine state is read from and the Job Control server schedules go to.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    endpoint: str = Field(description="opc.tcp://host:port/path")
    security_mode: SecurityMode = SecurityMode.NONE
    security_policy: SecurityPolicy = SecurityPolicy.BASIC256SHA256
    certificate: Path | None = Field(default=None, description="client certificate (DER or PEM)")
    private_key: Path | None = None
    server_certificate: Path | None = Field(
        default=None, description="trusted server certificate; required when security is on"
    )
    username: str | None = None
    password: SecretStr | None = None
    request_timeout: Duration = timedelta(seconds=10)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_opc_tcp(cls, endpoint: str) -> str:
        if not endpoint.startswith("opc.tcp://"):
            raise ValueError(f"{endpoint!r} must start with opc.tcp://")
        return endpoint

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        if self.security_mode is not SecurityMode.NONE and (
            self.certificate is None or self.private_key is None
        ):
            raise ValueError(
                f"security_mode {self.security_mode.value} needs certificate and private_key"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together")
        return self


class OpcUaServerConfig(OpcUaClientConfig):
    """One OPC UA server and the machines read from it."""

    publishing_interval: Duration = timedelta(milliseconds=100)
    keepalive_count: int = Field(default=10, ge=1)
    lifetime_count: int = Field(
        default=300, ge=3, description="at least 3 x keepalive_count (OPC UA Part 4)"
    )
    monitored_item_batch: int = Field(
        default=500, ge=1, description="monitored items created per CreateMonitoredItems call"
    )
    stall_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="no notification or keep-alive for this long: re-create the session",
    )
    max_publish_requests: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Publish requests kept in flight at most; more are added only while the"
        " server caps its notifications per message and holds more (MoreNotifications)",
    )
    machines: list[MachineConfig] = Field(min_length=1)
    backfill: Literal["off", "history"] = Field(
        default="off",
        description="after a gap, read what was missed from the server's history (HistoryRead)",
    )
    backfill_rate: int = Field(
        default=5000,
        ge=1,
        description="history values read per second at most, to spare the server",
    )
    event_notifiers: list[str] = Field(
        default_factory=list,
        description="node ids whose Alarms & Conditions events are sent up as alarm messages,"
        " e.g. ['i=2253'] (the Server object); default none",
    )
    acknowledge_from_hq: Literal["refuse", "approval", "apply"] = Field(
        default="approval",
        description="HQ's alarm.ack for this server's alarms: wait for a plant approval on the"
        " status page (as a schedule change in the frozen horizon does), apply at once, or"
        " refuse",
    )
    acknowledge_expiry: Duration = Field(
        default=timedelta(hours=1),
        gt=timedelta(0),
        description="an alarm.ack not applied this long after it arrived is rejected as"
        " expired when its turn comes (the server reachable again, a planner's approval)",
    )

    @field_validator("event_notifiers")
    @classmethod
    def _notifiers_are_node_ids(cls, notifiers: list[str]) -> list[str]:
        for notifier in notifiers:
            if not _NODE_ID.fullmatch(notifier):
                raise ValueError(f"{notifier!r} is not a node id like 'i=2253' or 'ns=2;s=Line1'")
        if len(set(notifiers)) != len(notifiers):
            raise ValueError("event_notifiers must not repeat a node id")
        return notifiers

    @model_validator(mode="after")
    def _lifetime_covers_keepalives(self) -> Self:
        if self.lifetime_count < 3 * self.keepalive_count:
            raise ValueError("lifetime_count must be at least 3 x keepalive_count")
        return self


class MesConfig(Section):
    """The plant's MES REST endpoint that schedule changes are delivered to."""

    url: str = Field(description="base URL, e.g. https://mes.plant.local/api/plantsync")
    token: SecretStr | None = Field(default=None, description="sent as 'Authorization: Bearer'")
    tls: Tls | None = None
    request_timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str) -> str:
        return check_http_url(url, credentials_in="token")


class JobControlConfig(OpcUaClientConfig):
    """An OPC UA server implementing ISA-95 Job Control (OPC 10031-4): orders go to its
    JobOrderReceiver, its job responses come back as order status and confirmations."""

    name: str = Field(default="jobcontrol", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    job_order_receiver: str | None = Field(
        default=None,
        description="node id of the ISA95JobOrderReceiverObjectType instance; "
        "unset: found by browsing for the one instance of that type",
    )
    job_response_provider: str | None = Field(
        default=None,
        description="node id of the ISA95JobResponseProviderObjectType instance; "
        "unset: found by browsing for an instance of that type",
    )
    release_method: Literal["Store", "StoreAndStart"] = Field(
        default="Store",
        description="how a released order is delivered: Store then Start, or StoreAndStart "
        "(Store then Start when the receiver does not offer it)",
    )
    publishing_interval: Duration = Field(
        default=timedelta(milliseconds=500),
        description="how often the server reports job order states and results",
    )
    stall_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="no notification or keep-alive for this long: re-create the session",
    )


class CursorKind(StrEnum):
    """How a polled endpoint is asked for what is new (``[mes_poll.cursor]``)."""

    NONE = "none"  # the whole answer every time (a snapshot: capacity, a shift report)
    LAST_ID = "last-id"  # ?<param>=<the id of the last record read>; ids only grow
    LAST_TIMESTAMP = "last-timestamp"  # ?<param>=<the MES's time of the last record read>
    PAGE_TOKEN = "page-token"  # ?<param>=<the token the last answer gave>  # noqa: S105


class PollCursor(Section):
    """Where the next poll of an endpoint starts; persisted in the store with each page."""

    kind: CursorKind = CursorKind.NONE
    param: str | None = Field(default=None, description="the query parameter that carries it")
    field: str | None = Field(
        default=None,
        description="last-id, last-timestamp: JSON pointer to the cursor value in a record",
    )
    next: str | None = Field(
        default=None, description="page-token: JSON pointer to the next token in the answer"
    )
    initial: str | None = Field(
        default=None, description="the first value sent; unset: the parameter is left out"
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind is CursorKind.NONE:
            return self
        if self.param is None:
            raise ValueError(f"a {self.kind.value} cursor needs param (the query parameter)")
        needed = "next" if self.kind is CursorKind.PAGE_TOKEN else "field"
        if getattr(self, needed) is None:
            raise ValueError(f"a {self.kind.value} cursor needs {needed} (a JSON pointer)")
        for pointer in (self.field, self.next):
            if pointer is not None:
                check_pointer(pointer)
        return self


class PollAuth(Section):
    """How a polled endpoint authenticates plantsync; mutual TLS goes in ``tls`` instead."""

    kind: Literal["bearer", "basic"]
    token: SecretStr | None = Field(default=None, description="bearer: sent as Authorization")
    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == "bearer" and self.token is None:
            raise ValueError("bearer auth needs token")
        if self.kind == "basic" and (self.username is None or self.password is None):
            raise ValueError("basic auth needs username and password")
        return self


MappedValue = str | int | float | bool


class PollEndpointConfig(Section):
    """One MES REST endpoint read on a schedule; its records become one MES message type."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(description="http:// or https:// URL of the endpoint")
    method: Literal["GET", "POST"] = "GET"
    query: dict[str, str] = Field(default_factory=dict, description="fixed query parameters")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: PollAuth | None = None
    tls: Tls | None = Field(default=None, description="CA, and client cert/key for mutual TLS")
    interval: Duration | None = Field(default=None, description="poll this often (monotonic)")
    cron: str | None = Field(
        default=None, description="or at these wall-clock times, site.timezone: '0 6,14,22 * * *'"
    )
    timeout: Duration = Field(default=timedelta(seconds=10), description="per request")
    max_response_size: ByteSize = Field(
        default=ByteSize(4 * 1024**2), description="a larger answer is dead-lettered unread"
    )
    max_pages: int = Field(default=100, ge=1, le=100_000, description="pages read per poll")
    min_request_interval: Duration = Field(
        default=timedelta(0), description="rate limit: at least this long between two requests"
    )
    cursor: PollCursor = PollCursor()
    message: MesMessageType = Field(description="what each record becomes: 'equipment.downtime'")
    records: str = Field(
        default="", description="JSON pointer to the array of records; '' when the answer is one"
    )
    more: str | None = Field(
        default=None,
        description="JSON pointer to a 'has more pages' boolean; unset: read until a page is empty",
    )
    fields: dict[str, str] = Field(
        description="payload field (a.b for nested) → JSON pointer in a record"
    )
    constants: dict[str, MappedValue] = Field(
        default_factory=dict, description="payload field → a fixed value"
    )
    values: dict[str, dict[str, MappedValue]] = Field(
        default_factory=dict,
        description="payload field → {the MES's value: the contract's}, e.g. state RUN → Running",
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str) -> str:
        return check_http_url(url, credentials_in="auth")

    @field_validator("cron")
    @classmethod
    def _cron_is_crontab(cls, cron: str | None) -> str | None:
        return None if cron is None else check_crontab(cron)

    @field_validator("records", "more")
    @classmethod
    def _pointers(cls, pointer: str | None) -> str | None:
        return None if pointer is None else check_pointer(pointer)

    @model_validator(mode="after")
    def _schedule_and_mapping(self) -> Self:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of interval or cron")
        if self.interval is not None and self.interval.total_seconds() <= 0:
            raise ValueError("interval must be longer than 0s")
        payload = MES_MESSAGES[self.message].payload
        for pointer in self.fields.values():
            check_pointer(pointer)
        named = [*self.fields, *self.constants, *self.values]
        unknown = sorted({key for key in named if key.split(".")[0] not in payload.model_fields})
        if unknown:
            raise ValueError(
                f"{unknown} are not fields of {self.message}; it has {sorted(payload.model_fields)}"
            )
        covered = {key.split(".")[0] for key in [*self.fields, *self.constants]}
        missing = sorted(
            name
            for name, info in payload.model_fields.items()
            if info.is_required() and name not in covered and name != "yield_percent"
        )
        if missing:
            raise ValueError(f"{self.message} needs {missing}: map them in fields or constants")
        return self


def check_pointer(pointer: str) -> str:
    """A JSON pointer (RFC 6901): '' (the whole document) or '/a/0/b'."""
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer: write '' or '/items', '/a/b'")
    return pointer


def check_http_url(url: str, *, credentials_in: str) -> str:
    """An http(s) URL with a host and no password in it (credentials go in ``credentials_in``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.password is not None:
        raise ValueError(f"put credentials in {credentials_in}, not in the url")
    return url


def check_crontab(schedule: str) -> str:
    """A 5-field crontab with weekdays by name (APScheduler 3 numbers them from Monday)."""
    fields = schedule.split()
    if len(fields) == 5 and any(char.isdigit() for char in fields[4]):
        raise ValueError(
            f"{schedule!r}: write weekdays by name (sun, mon-fri), not by number:"
            " crontab counts 0 as Sunday, the scheduler as Monday"
        )
    try:
        trigger = CronTrigger.from_crontab(schedule, timezone=UTC)
    except ValueError as exc:
        raise ValueError(
            f"{schedule!r} is not a cron expression 'minute hour day month weekday'"
            f" such as '30 3 * * *': {exc}"
        ) from exc
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"{schedule!r} never fires (no such date)")
    return schedule
