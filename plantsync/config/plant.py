"""The config of plant-side links: OPC UA servers (tags, deadbands, security), ISA-95 Job
Control and the MES REST endpoint. ``model.py`` assembles them into the agent's config.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from plantsync.config.types import Duration, Section, Tls
from plantsync.contracts.envelope import SITE_PATTERN

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
        default=10,
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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.password is not None:
            raise ValueError("put credentials in token, not in the url")
        return url


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
